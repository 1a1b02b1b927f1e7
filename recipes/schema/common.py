"""Pieces every schema section shares."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer


class Section(BaseModel):
    """Base for every recipe section: unknown keys are errors, values are immutable."""

    # .inf and .nan are YAML numbers; no count, duration or bound of a recipe takes them.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> int:
    """'24h' / '90m' / '3600s' / '2d' / 3600 -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '24h', '90m' or seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError("expected a duration such as '24h', '90m', '3600s' or '2d'")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not math.isfinite(seconds):
        raise ValueError("a duration must be a finite number of seconds, minutes, hours or days")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return int(seconds)


# Stored as seconds; written back as seconds in recipe.json and plans.
Duration = Annotated[int, BeforeValidator(parse_duration), PlainSerializer(int)]


def _tag_value(value: object) -> object:
    # YAML turns `cost_center: 4711` into an int; a tag value is text either way.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


TagValue = Annotated[str, BeforeValidator(_tag_value)]
