"""`deploy:` — how the fine-tuned model is served and promoted.

One block for every backend: the endpoint's name, its hardware (abstract, resolved
per cloud through the same hardware catalog as training), its replicas and the
serving engine's limits. `recipe endpoint plan RUN_ID` shows what each cloud gets.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from recipes.schema.common import Duration, Section
from recipes.schema.compute import ACCELERATORS

# One Literal (not a union with "auto"), so a typo gives one message listing every value.
DeployAccelerator = Literal[("auto", *ACCELERATORS)]  # type: ignore[misc]

EndpointProvider = Literal["aws", "azure", "gcp"]


class CanaryGates(Section):
    """What the candidate must show before it takes all the traffic.

    error_rate_max and p95_ms_max are measured on the candidate's own live traffic during
    the bake; the quality gates on its answers to the recipe's golden set (eval.golden),
    sent to the candidate alone before it takes any traffic. Every gate needs its
    minimum sample: too little data is inconclusive and holds the release."""

    error_rate_max: float | None = Field(
        default=None, ge=0, le=1, description="Roll back if the canary's error rate exceeds this."
    )
    p95_ms_max: float | None = Field(
        default=None, gt=0, description="Roll back if the canary's p95 latency exceeds this (ms)."
    )
    macro_f1_min: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Roll back if the candidate's golden-set macro-F1 is below this.",
    )
    exact_match_min: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Roll back if the candidate's golden-set exact match is below this.",
    )
    max_regression: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Roll back if the candidate's golden-set score is worse than the stable "
        "version's by more than this (absolute, e.g. 0.02).",
    )


class CanarySpec(Section):
    percent: int = Field(default=10, ge=1, le=100, description="Traffic share for the canary.")
    steps: list[int] | None = Field(
        default=None,
        description="Traffic shares to go through before 100, e.g. [10, 50] (default: [percent]).",
    )
    gates: CanaryGates = Field(default_factory=CanaryGates, description="Promotion gates.")
    min_requests: int = Field(
        default=100,
        ge=1,
        description="Live requests the candidate must have served at a step before its error "
        "rate and latency decide anything.",
    )
    min_golden: int = Field(
        default=20,
        ge=1,
        description="Golden examples the candidate must have answered before a quality gate "
        "decides anything.",
    )
    bake: Duration = Field(
        default=600,
        description="How long to watch each step before deciding ('10m'); without enough "
        "requests by then the release is held (inconclusive), never promoted.",
    )
    termination_wait: Duration = Field(
        default=300,
        description="How long the old version stays deployed, without traffic, after a "
        "promotion before it is removed ('5m').",
    )

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: list[int] | None) -> list[int] | None:
        if steps is None:
            return None
        if not steps or any(not 1 <= s <= 99 for s in steps) or steps != sorted(set(steps)):
            raise ValueError("steps must be increasing percentages between 1 and 99, e.g. [10, 50]")
        return steps

    def shares(self) -> list[int]:
        """The traffic shares the candidate goes through before 100."""
        return list(self.steps) if self.steps else ([self.percent] if self.percent < 100 else [])


class DeploySpec(Section):
    endpoint: str = Field(
        pattern=r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$",
        description="Endpoint name: 3-32 lowercase letters, digits and dashes, starting with a "
        "letter and ending with a letter or digit (Azure ML's rule, the strictest of the three "
        "clouds: learn.microsoft.com, 'Endpoint name' in How to deploy online endpoints).",
    )
    min_replicas: int = Field(
        default=1,
        ge=0,
        description="Fewest serving replicas, billed around the clock (the clouds' real-time "
        "endpoints need at least 1; 0 only locally).",
    )
    max_replicas: int = Field(default=1, ge=1, description="Most serving replicas (autoscaling).")
    accelerator: DeployAccelerator = Field(  # type: ignore[valid-type]
        default="auto",
        description="GPU per replica; auto = the cheapest single-GPU offer whose memory holds "
        "the model (bf16 weights plus room for the KV cache).",
    )
    gpus: int = Field(default=1, ge=1, le=8, description="GPUs per replica (tensor parallel).")
    instance_type: dict[EndpointProvider, str] = Field(
        default_factory=dict,
        description="Per-cloud instance type overriding the catalog's choice, e.g. "
        "{aws: ml.g5.2xlarge}.",
    )
    merge: bool = Field(
        default=False,
        description="Serve the adapter merged into the base weights (one model, no LoRA at "
        "serving time) instead of the base model plus the adapter.",
    )
    max_model_len: int | None = Field(
        default=None,
        ge=64,
        description="Longest prompt plus answer in tokens (default: data.max_seq_len).",
    )
    canary: CanarySpec | None = Field(default=None, description="Canary release settings.")
