"""`training:` — the optimisation loop's hyperparameters."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from recipes.schema.common import Section


class TrainingSpec(Section):
    epochs: float = Field(default=1, gt=0, le=1000, description="Passes over the training data.")
    max_steps: int | None = Field(
        default=None, ge=1, description="Stop after this many optimizer steps (caps `epochs`)."
    )
    learning_rate: float = Field(default=2e-4, gt=0, lt=1, description="Peak learning rate.")
    batch_size: int = Field(
        default=16, ge=1, description="Global batch size in examples per optimizer step."
    )
    micro_batch_size: int = Field(
        default=4,
        ge=1,
        description=(
            "Examples per forward pass on one process; gradients accumulate up to batch_size."
        ),
    )
    lr_scheduler: Literal["cosine", "linear", "constant"] = Field(
        default="cosine", description="Learning-rate schedule after warmup."
    )
    warmup_ratio: float | None = Field(
        default=None, ge=0, lt=1, description="Warmup as a fraction of all steps (default 0.03)."
    )
    warmup_steps: int | None = Field(
        default=None, ge=0, description="Warmup in steps; give this or warmup_ratio, not both."
    )
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(default=1.0, gt=0, description="Gradient clipping norm.")
    seed: int = Field(default=42, ge=0, description="Seed for shuffling, splits and init.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        default="auto", description="auto: bf16 on GPUs that support it, fp32 on CPU."
    )
    gradient_checkpointing: bool = Field(
        default=False, description="Recompute activations in the backward pass to save memory."
    )
    log_every_steps: int = Field(default=10, ge=1, description="Steps between metric records.")
    eval_every_steps: int | None = Field(
        default=None,
        ge=1,
        description="Steps between validation-loss checks on a sample (the full set is scored at epoch ends).",
    )
    eval_sample_size: int = Field(
        default=64,
        ge=1,
        description="Validation examples scored every eval_every_steps (all of them at epoch ends).",
    )
    early_stopping_patience: int | None = Field(
        default=None,
        ge=1,
        description="Stop after this many validations without a lower validation loss.",
    )
    save_every_steps: int | None = Field(
        default=None, ge=1, description="Steps between checkpoints (default: only at the end)."
    )
    resume: Literal["auto", "never"] = Field(
        default="auto", description="auto: continue from the newest complete checkpoint if any."
    )
