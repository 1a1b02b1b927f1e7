"""`data:` — what to train on and how examples become tokens."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, PlainValidator

from recipes.schema.common import Section


def _fraction_or_location(value: object) -> float | str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("expected a fraction such as 0.1 or a file path")
    if isinstance(value, int | float):
        if not math.isfinite(value) or not 0 < float(value) < 1:
            raise ValueError("a validation fraction must be between 0 and 1 (exclusive)")
        return float(value)
    if isinstance(value, str) and value.strip():
        return value
    raise ValueError("expected a fraction such as 0.1 or a file path")


FractionOrLocation = Annotated[
    float | str | None,
    PlainValidator(_fraction_or_location, json_schema_input_type=float | str | None),
]


class DataSpec(Section):
    train: str = Field(
        min_length=1,
        description=(
            "Training data: a local JSONL path (relative to the recipe file), or an "
            "s3://, gs:// or azureml:// URI."
        ),
    )
    validation: FractionOrLocation = Field(
        default=0.1,
        description=(
            "Validation data: a file like `train`, or a fraction of `train` split off "
            "deterministically with the training seed; null for none."
        ),
    )
    format: Literal["chat", "prompt_completion", "alpaca"] = Field(
        default="chat",
        description=(
            'Row format: chat (OpenAI chat JSONL, {"messages": [...]}), prompt_completion '
            '({"prompt", "completion"}) or alpaca ({"instruction", "input", "output"}).'
        ),
    )
    pii: Literal["fail", "redact", "drop", "allow"] = Field(
        default="fail",
        description=(
            "Rows with emails, phone numbers, card numbers (Luhn) or IBANs: fail the check, "
            "redact them to placeholders, drop the rows, or allow them."
        ),
    )
    max_seq_len: int = Field(
        default=512,
        ge=16,
        le=131072,
        description="Longest example in tokens; longer rows are dropped.",
    )
    packing: Literal["auto"] | bool = Field(
        default="auto",
        description=(
            "Pack several examples into one sequence (attention stays within each example). "
            "auto packs where attention takes packed rows without a mask (flash-attention on "
            "a GPU) and otherwise groups examples of similar length into micro-batches, "
            "as fast on CPUs with less memory (benchmarks/packing.py)."
        ),
    )
    train_on: Literal["assistant", "all", "last_assistant"] = Field(
        default="assistant",
        description=(
            "Which tokens carry loss: every assistant message, every token, or only the last "
            "assistant message."
        ),
    )
