"""`deploy:` — how the fine-tuned model is served and promoted."""

from __future__ import annotations

from pydantic import Field

from recipes.schema.common import Section


class CanaryGates(Section):
    error_rate_max: float | None = Field(
        default=None, ge=0, le=1, description="Roll back if the canary's error rate exceeds this."
    )
    p95_ms_max: float | None = Field(
        default=None, gt=0, description="Roll back if the canary's p95 latency exceeds this (ms)."
    )


class CanarySpec(Section):
    percent: int = Field(default=10, ge=1, le=100, description="Traffic share for the canary.")
    gates: CanaryGates = Field(default_factory=CanaryGates, description="Promotion gates.")


class DeploySpec(Section):
    endpoint: str = Field(min_length=1, description="Endpoint name.")
    min_replicas: int = Field(default=1, ge=0, description="Fewest serving replicas.")
    max_replicas: int = Field(default=1, ge=1, description="Most serving replicas.")
    canary: CanarySpec | None = Field(default=None, description="Canary release settings.")
