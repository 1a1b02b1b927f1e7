"""`eval:` — how the result is judged, and the gates a run must pass."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from recipes.schema.common import Section


class EvalGates(Section):
    macro_f1_min: float | None = Field(
        default=None, ge=0, le=1, description="Fail the run if golden macro-F1 ends below this."
    )
    exact_match_min: float | None = Field(
        default=None, ge=0, le=1, description="Fail the run if golden exact match ends below this."
    )
    json_valid_min: float | None = Field(
        default=None, ge=0, le=1, description="Fail the run if fewer golden answers are valid JSON."
    )
    valid_loss_max: float | None = Field(
        default=None, gt=0, description="Fail the run if validation loss ends above this."
    )


class EvalSpec(Section):
    golden: str | None = Field(
        default=None,
        description="Golden set (chat JSONL; the last assistant message is the expected answer).",
    )
    task: Literal["auto", "classification", "exact_match", "json"] = Field(
        default="auto",
        description=(
            "classification: macro-F1 over the label set; exact_match: normalised string "
            "equality; json: answers must parse (and match json_schema), compared as JSON; "
            "auto picks classification when answers come from a small label set."
        ),
    )
    json_schema: str | None = Field(
        default=None,
        description="JSON Schema file (relative to the recipe) golden answers must match (task json).",
    )
    max_new_tokens: int = Field(
        default=32, ge=1, le=4096, description="Generation budget per golden example."
    )
    gates: EvalGates = Field(default_factory=EvalGates, description="Thresholds the run must meet.")
