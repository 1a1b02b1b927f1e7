"""`model:` — which base model to fine-tune."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from recipes.schema.common import Section


class ModelSpec(Section):
    base: str = Field(
        description=(
            "Base model: 'builtin:tiny-chat' (ships with the project, offline), a Hugging Face "
            "hub id such as 'meta-llama/Llama-3.1-8B-Instruct', or a local directory."
        ),
        min_length=1,
    )
    revision: str | None = Field(
        default=None, description="Hub revision (branch, tag or commit) to pin the weights to."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="Weights dtype: auto picks bfloat16 on GPUs that support it, float32 on CPU.",
    )
    trust_remote_code: bool = Field(
        default=False,
        description="Allow model code from the hub repository to run. Off by default.",
    )
