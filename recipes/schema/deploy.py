"""`deploy:` — how the fine-tuned model is served and promoted.

One block for every backend: the endpoint's name, its hardware (abstract, resolved
per cloud through the same hardware catalog as training), its replicas and the
serving engine's limits. `recipe endpoint plan RUN_ID` shows what each cloud gets.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from recipes.schema.common import Section
from recipes.schema.compute import Accelerator

EndpointProvider = Literal["aws", "azure", "gcp"]


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
    accelerator: Accelerator | Literal["auto"] = Field(
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
