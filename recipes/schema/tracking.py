"""`tracking:` — experiment tracking. Keys come from the environment, never the recipe."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from recipes.schema.common import Section


class WandbSpec(Section):
    project: str = Field(min_length=1, description="W&B project name.")
    entity: str | None = Field(default=None, description="W&B team or user; default: yours.")
    mode: Literal["online", "offline", "disabled"] = Field(
        default="online",
        description=(
            "online needs WANDB_API_KEY in the environment (or the cloud's secret store); "
            "offline writes run files to sync later."
        ),
    )
    group: str | None = Field(default=None, description="Group runs together in the W&B UI.")


class TrackingSpec(Section):
    wandb: WandbSpec | None = Field(default=None, description="Log to Weights & Biases.")
