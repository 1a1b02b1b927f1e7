"""The seam between the orchestrator and the backends.

A provider is stateless and turns a validated recipe into a `Plan` (pure data:
the exact requests it will send, resolved compute, tags, estimate) without
touching the network; `submit` then sends exactly those requests. Providers
implement the `Provider` Protocol; there is no base class to inherit from.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from recipes.errors import Problem, RecipeInputError
from recipes.schema import Recipe


class State(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (State.SUCCEEDED, State.FAILED, State.CANCELLED)


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, as data, so gaps are reported before anything is created."""

    methods: tuple[str, ...] = ("lora", "qlora", "full")
    accelerators: tuple[str, ...] = ()  # abstract accelerators it can provide
    spot: bool = False
    multi_node: bool = False
    max_processes_per_node: int = 1
    endpoints: bool = False
    traffic_split: bool = False
    hyperpod: bool = False
    remote_data: tuple[str, ...] = ()  # URI schemes the job can read, e.g. "s3://"
    idempotent: bool = False  # deterministic job names: a second run finds the first job


@dataclass(frozen=True)
class RunIdentity:
    """Who a run is: names jobs, run directories and tags."""

    run_id: str
    recipe_name: str
    recipe_hash: str
    attempt: int = 1


@dataclass(frozen=True)
class Request:
    """One call submit() will make, with its exact body."""

    api: str  # e.g. "local:spawn", "sagemaker:CreateTrainingJob"
    body: dict[str, Any]


@dataclass(frozen=True)
class Estimate:
    hours: float | None
    on_demand_usd: float
    spot_usd: float | None = None
    currency: str = "USD"
    basis: str = ""
    training_tokens: int | None = None  # one epoch, when the data was readable at plan time
    worst_case_usd: float | None = None  # the whole max_runtime on demand


@dataclass(frozen=True)
class Plan:
    provider: str
    identity: RunIdentity
    requests: tuple[Request, ...]
    compute: dict[str, Any]
    tags: dict[str, str]
    estimate: Estimate
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "run_id": self.identity.run_id,
            "recipe": {"name": self.identity.recipe_name, "hash": self.identity.recipe_hash},
            "requests": [asdict(r) for r in self.requests],
            "compute": self.compute,
            "tags": self.tags,
            "estimate": asdict(self.estimate),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class RunRef:
    """Enough to find a run again from another shell (stored in the ledger)."""

    provider: str
    run_id: str
    ids: dict[str, str] = field(default_factory=dict)


@dataclass
class RunStatus:
    run_id: str
    provider: str
    state: State
    message: str = ""
    step: int | None = None
    total_steps: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    log_tail: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        return data


@runtime_checkable
class Provider(Protocol):
    name: str
    capabilities: Capabilities

    def plan(self, recipe: Recipe, identity: RunIdentity) -> Plan:
        """Pure: no network, no credentials, no files written."""
        ...

    def submit(self, plan: Plan) -> RunRef: ...

    def status(self, ref: RunRef) -> RunStatus: ...

    def logs(self, ref: RunRef, follow: bool = False) -> Iterator[str]: ...

    def cancel(self, ref: RunRef) -> RunStatus: ...


class ProviderError(Exception):
    """The backend failed or refused (credentials, quota, API error). Exit code 3."""

    exit_code = 3


def check_capabilities(provider: str, caps: Capabilities, recipe: Recipe) -> None:
    """Raise one error listing everything the recipe asks that the backend cannot do."""
    gaps: list[Problem] = []

    def gap(field_path: str, message: str) -> None:
        gaps.append(Problem(f"{provider} cannot {message}", field=field_path))

    compute = recipe.compute
    if recipe.method.kind not in caps.methods:
        gap("method.kind", f"train with method {recipe.method.kind}")
    if caps.accelerators and compute.accelerator not in caps.accelerators:
        gap("compute.accelerator", f"provide {compute.accelerator}")
    if compute.spot and not caps.spot:
        gap("compute.spot", "run on spot capacity")
    if compute.nodes > 1 and not caps.multi_node:
        gap("compute.nodes", f"run on {compute.nodes} nodes")
    for field_path, location in (
        ("data.train", recipe.data.train),
        ("data.validation", recipe.data.validation),
        ("eval.golden", recipe.eval.golden),
    ):
        remote = isinstance(location, str) and "://" in location
        if remote and not location.startswith(caps.remote_data):  # type: ignore[union-attr]
            gap(field_path, f"read {location.split('://')[0]}:// data")
    if gaps:
        raise RecipeInputError(gaps)
