"""`key=value` overrides from the command line, applied to the raw recipe before validation."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import yaml

from recipes.errors import Problem, RecipeInputError

_KEY_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_.-")


@dataclass(frozen=True)
class Override:
    text: str  # as typed, for error messages
    path: tuple[str, ...]
    value: Any


def parse_overrides(items: list[str]) -> list[Override]:
    """Parse `training.epochs=1`-style arguments; values are read as YAML scalars."""
    out: list[Override] = []
    problems: list[Problem] = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not set(key.lower()) <= _KEY_CHARS or ".." in key:
            problems.append(
                Problem(
                    f"expected key=value with a dotted key (e.g. training.epochs=1), got '{item}'",
                    file="command line",
                )
            )
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw  # not YAML: keep the text, validation judges it
        out.append(Override(text=item, path=tuple(key.split(".")), value=value))
    if problems:
        raise RecipeInputError(problems)
    return out


def apply_overrides(data: dict[str, Any], overrides: list[Override]) -> dict[str, Any]:
    """A copy of `data` with each override set, creating intermediate sections."""
    result = copy.deepcopy(data)
    for override in overrides:
        node = result
        for part in override.path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[override.path[-1]] = override.value
    return result
