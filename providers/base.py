"""The seams between the orchestrator and the backends: types and Protocols, no logic.

A backend is stateless and turns a validated recipe into a `Plan` (pure data:
the exact requests it will send, resolved compute, tags, estimate) without
touching the network; `submit` then sends exactly those requests. Backends
implement these Protocols; there is no base class to inherit from.

- `JobBackend`: one kind of training job (a local process, a SageMaker training
  job, a HyperPod job, an Azure ML command job, a Vertex AI custom job).
- `ClusterBackend`: a long-lived cluster that jobs run on (HyperPod).
- `EndpointBackend`: an OpenAI-compatible endpoint serving a run's artifact (a local
  server, a SageMaker endpoint, an Azure ML online endpoint, a Vertex AI endpoint).

What a backend can do is data (`Capabilities`), so gaps are reported, with their
reasons, before anything is created.

- `BillingBackend`: a cloud's billing exports (in its storage) and cost API, read for
  `recipe cost report`.
- `InfraBackend`: an account's bootstrap (bucket, identity, key, budget, billing
  export) as a template to plan, apply and check (`recipe infra`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from recipes.cost.estimate import Estimate
from recipes.cost.serving import EndpointEstimate
from recipes.errors import ErrorKind, ProviderError
from recipes.schema import Recipe

__all__ = [
    "Capabilities",
    "Artifact",
    "BillingBackend",
    "BillingQuery",
    "BillingRows",
    "Finding",
    "InfraBackend",
    "InfraParams",
    "InfraPlan",
    "ClusterBackend",
    "Deployed",
    "EndpointBackend",
    "EndpointEstimate",
    "EndpointPlan",
    "EndpointRef",
    "EndpointState",
    "EndpointStatus",
    "ErrorKind",
    "Estimate",
    "JobBackend",
    "Plan",
    "ProviderError",
    "ReleaseBackend",
    "Request",
    "RunIdentity",
    "RunRef",
    "RunStatus",
    "ServingSpec",
    "State",
    "TrafficSample",
]


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
    """What a provider can do, as data; `why_not` gives the reason for each gap.

    Every field is checked before planning (providers.capabilities.check), and
    `recipe providers` and registry.supports() answer from it.
    """

    methods: tuple[str, ...] = ("lora", "qlora", "full")
    accelerators: tuple[str, ...] = ()  # abstract accelerators it can provide; () = any
    spot: bool = False
    multi_node: bool = False
    max_processes_per_node: int = 1
    targets: tuple[str, ...] = ()  # kinds of job, the first is the default
    clusters: bool = False  # long-lived clusters managed by `recipe cluster` (HyperPod)
    remote_data: tuple[str, ...] = ()  # URI schemes the job can read, e.g. "s3://"
    idempotent: bool = False  # deterministic job names: a second run finds the first job
    why_not: Mapping[str, str] = field(default_factory=dict)  # feature -> reason it is missing

    def features(self) -> dict[str, bool]:
        """The yes/no features, by name (what registry.supports answers)."""
        return {
            "spot": self.spot,
            "multi_node": self.multi_node,
            "clusters": self.clusters,
            "idempotent": self.idempotent,
            **{f"method:{m}": True for m in self.methods},
            **{f"target:{t}": True for t in self.targets},
            **{f"data:{s}": True for s in self.remote_data},
        }


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
    """Enough to find a run again from another shell (stored in the ledger).

    `ids` holds the backend's own identifiers; ids["target"] names the kind of
    job when it is not the provider's default (ledgers written before targets
    existed stay readable).
    """

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


@dataclass(frozen=True)
class Submitted:
    """What submit() did: the run, and whether it was already there (nothing launched)."""

    ref: RunRef
    existing: bool = False


@runtime_checkable
class JobBackend(Protocol):
    """One kind of training job on one provider."""

    name: str  # the provider: local, aws, azure, gcp
    target: str  # the kind of job: process, training-job, hyperpod, command-job, custom-job
    capabilities: Capabilities

    def plan(self, recipe: Recipe, identity: RunIdentity) -> Plan:
        """Pure: no network, no credentials, no files written."""
        ...

    def submit(self, plan: Plan) -> Submitted:
        """Send exactly the plan's requests; a job already there is reported, not relaunched."""
        ...

    def latest_attempt(self, plan: Plan) -> int:
        """Highest attempt already launched for the plan's recipe content (0 if none)."""
        ...

    def status(self, ref: RunRef) -> RunStatus: ...

    def logs(self, ref: RunRef, follow: bool = False) -> Iterator[str]: ...

    def cancel(self, ref: RunRef) -> RunStatus:
        """Stop the run unless it already ended; the state it is in afterwards."""
        ...


@dataclass(frozen=True)
class ClusterInfo:
    name: str
    arn: str
    status: str
    failure: str = ""
    instance_groups: tuple[dict[str, Any], ...] = ()
    nodes: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {**data, "instance_groups": list(self.instance_groups), "nodes": list(self.nodes)}


@dataclass(frozen=True)
class ClusterPlan:
    """The cluster a recipe implies: where, its name, and the exact create request."""

    region: str
    name: str
    request: Request


@runtime_checkable
class ClusterBackend(Protocol):
    """A long-lived cluster that a recipe's jobs run on."""

    name: str

    def plan_cluster(self, recipe: Recipe, identity: RunIdentity) -> ClusterPlan:
        """Pure: the create request the recipe implies."""
        ...

    def create_cluster(self, plan: ClusterPlan) -> str:
        """Create it; returns its id (ARN)."""
        ...

    def cluster_status(self, plan: ClusterPlan) -> ClusterInfo: ...

    def delete_cluster(self, plan: ClusterPlan) -> None: ...


# --- endpoints -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Artifact:
    """What a finished run left to serve, and where (found from its run record)."""

    run_id: str
    provider: str  # where it was trained; an endpoint serves it from the same cloud
    uri: str  # the run's output root: a local directory, s3://.../model.tar.gz, gs://..., azureml://jobs/...
    kind: str  # "adapter" (base + LoRA), "merged" (adapter merged into the base), "full"
    base_model: str  # recipe.model.base
    name: str  # what clients pass as `model` for the fine-tune (the recipe name)
    lora_rank: int | None = None


@dataclass(frozen=True)
class ServingSpec:
    """What every backend's server is told, in neutral terms (parity compares these).

    Clouds run vLLM's OpenAI-compatible server (each in its own container form); the
    local backend runs `recipe serve`. Paths are relative to the artifact root.
    """

    engine: str  # "vllm" or "recipe-serve"
    image: str  # the serving container (catalog: providers/images.yaml), "" locally
    base_model: str  # what the server loads: a hub id, or a path in the artifact (merged/full)
    served_name: str  # the name the fine-tune answers to
    adapters: dict[str, str]  # LoRA name -> path in the artifact; {} when merged or full
    max_model_len: int
    max_lora_rank: int | None
    gpus: int


@dataclass(frozen=True)
class EndpointPlan:
    """An endpoint a recipe's deploy block implies for one artifact: exact bodies, no network.

    `endpoint` is the stable name clients call; `deployment` names this artifact and
    serving configuration (deterministic, so a second deploy finds the first).
    """

    provider: str
    endpoint: str
    deployment: str
    region: str
    artifact: Artifact
    serving: ServingSpec
    requests: tuple[Request, ...]
    compute: dict[str, Any]
    tags: dict[str, str]
    estimate: EndpointEstimate
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "endpoint": self.endpoint,
            "deployment": self.deployment,
            "region": self.region,
            "artifact": asdict(self.artifact),
            "serving": asdict(self.serving),
            "requests": [asdict(r) for r in self.requests],
            "compute": self.compute,
            "tags": self.tags,
            "estimate": asdict(self.estimate),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class EndpointRef:
    """Enough to find an endpoint again from another shell (stored in the ledger)."""

    provider: str
    endpoint: str
    deployment: str
    ids: dict[str, str] = field(default_factory=dict)


class EndpointState(str, enum.Enum):
    CREATING = "creating"
    UPDATING = "updating"
    READY = "ready"
    FAILED = "failed"
    DELETING = "deleting"
    ABSENT = "absent"


@dataclass
class EndpointStatus:
    endpoint: str
    provider: str
    state: EndpointState
    message: str = ""
    url: str = ""
    deployment: str = ""
    replicas: int | None = None
    traffic: dict[str, int] = field(default_factory=dict)  # deployment -> percent

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        return data


@dataclass(frozen=True)
class Deployed:
    """What deploy() did: the endpoint, whether all of it was already there, what it made."""

    ref: EndpointRef
    existing: bool = False
    created: tuple[str, ...] = ()  # "sagemaker:CreateModel my-model", ... in order


@runtime_checkable
class EndpointBackend(Protocol):
    """OpenAI-compatible endpoints on one provider."""

    name: str

    def plan_endpoint(self, recipe: Recipe, artifact: Artifact) -> EndpointPlan:
        """Pure: no network, no credentials, no files written."""
        ...

    def deploy(self, plan: EndpointPlan) -> Deployed:
        """Send exactly the plan's requests, skipping what is already there; on a failure
        half-way, remove what this call created and say what could not be removed."""
        ...

    def endpoint_status(self, ref: EndpointRef) -> EndpointStatus: ...

    def invoke(self, ref: EndpointRef, body: dict[str, Any]) -> dict[str, Any]:
        """Send one OpenAI chat-completions request body; the response body."""
        ...

    def delete_endpoint(self, ref: EndpointRef) -> None:
        """Remove the endpoint and what the deploy created for it; absent is fine."""
        ...


# --- releases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrafficSample:
    """One deployment's own live traffic since a moment: what the canary gates read."""

    deployment: str
    requests: int
    errors: int  # 5xx and failed connections; a client's own 4xx is not the server's error
    p95_ms: float | None
    since: float
    until: float

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


@runtime_checkable
class ReleaseBackend(Protocol):
    """What a canary release needs of an endpoint backend, beyond deploying.

    The candidate runs beside the stable version; traffic moves between them by weight;
    a probe reaches one deployment only; each deployment's own traffic is measured.
    """

    name: str

    def deploy_candidate(self, plan: EndpointPlan, stable: EndpointRef | None) -> EndpointRef:
        """Deploy the plan's version beside `stable` with no live traffic (idempotent); with
        no stable version the endpoint is created for it."""
        ...

    def set_traffic(self, ref: EndpointRef, weights: dict[str, int]) -> None:
        """Live traffic shares by deployment, in percent (summing to 100)."""
        ...

    def invoke_deployment(
        self, ref: EndpointRef, deployment: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """One chat request to that deployment alone (not counted as live traffic)."""
        ...

    def traffic(self, ref: EndpointRef, deployment: str, since: float) -> TrafficSample: ...

    def retire(self, ref: EndpointRef, deployment: str) -> None:
        """Remove a deployment that has no traffic (absent is fine)."""
        ...


# --- billing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BillingQuery:
    """What a cost report asks a billing API for: a period and the tag keys to group by."""

    start: date  # first day, inclusive
    end: date  # last day, exclusive
    tag_keys: tuple[str, ...]


@dataclass(frozen=True)
class BillingRows:
    """A billing API's answer as normalized rows (recipes.cost.billing.schema.NORMALIZED;
    `Tags` as a dict), aggregated as the API gives them (by day, service and tag)."""

    source: str  # the source as the user named it
    format: str  # e.g. "AWS Cost Explorer GetCostAndUsage (by TAG cost_center, daily)"
    rows: list[dict[str, Any]]
    notes: tuple[str, ...] = ()  # e.g. tag keys that are not activated for cost allocation


@runtime_checkable
class BillingBackend(Protocol):
    """A cloud's billing data: export files in its storage, and its cost API.

    `schemes` are the SOURCE prefixes it answers: storage URIs (`s3://`) are downloaded
    to files the report reads; API sources (`aws-ce:`) are queried through the SDK,
    paged, with throttling retried."""

    name: str
    schemes: tuple[str, ...]
    api_schemes: tuple[str, ...]

    def download(self, uri: str, directory: Path) -> list[Path]:
        """Every billing file under a storage URI (an object or a prefix), copied into
        `directory`; a URI that names nothing is a RecipeInputError naming it."""
        ...

    def query(self, source: str, query: BillingQuery) -> BillingRows:
        """The API's costs for the period, grouped by day and each requested tag key."""
        ...


# --- account bootstrap (infra) ---------------------------------------------------------------


@dataclass(frozen=True)
class InfraParams:
    """What an account's bootstrap is filled with: names, the recipe's tags and budget."""

    prefix: str  # resource name prefix: lower-case letters, digits and hyphens, 3-20 chars
    region: str
    tags: dict[str, str]  # the recipe's tags (cost_center among them), for every resource
    cost_center: str
    monthly_budget: float  # in `currency`: the budget alarm's limit
    currency: str = "USD"
    alert_emails: tuple[str, ...] = ()  # budget notifications (none: the budget alone)
    settings: dict[str, str] = field(default_factory=dict)  # per cloud: account, project...


@dataclass(frozen=True)
class InfraPlan:
    """A bootstrap ready to apply: the template, its filled parameters, and every step
    `apply` takes (exact bodies, or for Terraform the exact commands)."""

    provider: str
    engine: str  # cloudformation | arm | terraform
    template_path: str  # relative to the repository, e.g. infra/aws/account.yaml
    template: str  # the template's text as shipped
    parameters: dict[str, Any]  # its parameters, filled from the recipe
    steps: tuple[Request, ...]
    notes: tuple[str, ...] = ()
    region: str = ""  # where apply deploys (a CloudFormation stack's region, an ARM location)

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "engine": self.engine,
            "region": self.region,
            "template_path": self.template_path,
            "parameters": self.parameters,
            "steps": [asdict(s) for s in self.steps],
            "notes": list(self.notes),
            "template": self.template,
        }


@dataclass(frozen=True)
class Finding:
    """One item `recipe infra check` looked at in an account."""

    item: str  # e.g. "bucket encryption", "cost allocation tag cost_center", "budget"
    status: str  # ok | missing | weak
    detail: str  # what was found, naming the resource
    fix: str = ""  # what to do (for missing and weak)


@runtime_checkable
class InfraBackend(Protocol):
    """A cloud account's bootstrap: plan (no network), apply, check."""

    name: str

    def plan(self, params: InfraParams) -> InfraPlan: ...

    def apply(self, plan: InfraPlan) -> list[str]:
        """Take the plan's steps through the cloud's own engine; what was done, a line each.
        A refused step leaves nothing half-made that the engine would not roll back."""
        ...

    def check(self, params: InfraParams) -> list[Finding]:
        """Read the account and report each item: bucket encryption and public access, tag
        activation, budget, billing export, the role's permissions."""
        ...
