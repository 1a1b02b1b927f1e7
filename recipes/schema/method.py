"""`method:` — how the weights are adapted: LoRA, QLoRA or full fine-tuning."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from recipes.schema.common import Section

TargetModules = Literal["all-linear"] | list[str]


class LoraSpec(Section):
    kind: Literal["lora"] = Field(description="Low-rank adapters on a frozen base model.")
    r: int = Field(default=16, ge=1, le=1024, description="Adapter rank.")
    alpha: float = Field(default=32, gt=0, description="Scaling numerator: the update is alpha/r.")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: TargetModules = Field(
        default="all-linear",
        description="'all-linear' (every linear layer but the output head) or module names.",
    )
    modules_to_save: list[str] = Field(
        default_factory=list,
        description="Modules trained in full and saved with the adapter (e.g. embed_tokens).",
    )
    dora: bool = Field(default=False, description="Weight-decomposed LoRA (DoRA).")
    rslora: bool = Field(default=False, description="Rank-stabilised scaling alpha/sqrt(r).")


class QLoraSpec(LoraSpec):
    kind: Literal["qlora"] = Field(  # type: ignore[assignment]
        description="LoRA on a 4-bit quantised base model (bitsandbytes; needs a CUDA GPU)."
    )
    quant_type: Literal["nf4", "fp4"] = Field(default="nf4", description="4-bit data type.")
    double_quant: bool = Field(default=True, description="Quantise the quantisation constants.")
    compute_dtype: Literal["bfloat16", "float16"] = Field(
        default="bfloat16", description="Dtype matrix products run in."
    )


class FullSpec(Section):
    kind: Literal["full"] = Field(description="Train every weight of the model.")


Method = Annotated[LoraSpec | QLoraSpec | FullSpec, Field(discriminator="kind")]
