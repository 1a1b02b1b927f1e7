"""Provider names -> backends, imported only when asked for. Importing this imports no SDK.

A provider (local, aws, azure, gcp) offers one or more kinds of job (`targets`);
a recipe picks one with compute.<provider>.target, the first being the default.
Capabilities are declared once per provider, in its package's settings module,
so `recipe providers` and supports() answer without importing a cloud SDK.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers.base import (
    BillingBackend,
    Capabilities,
    ClusterBackend,
    EndpointBackend,
    InfraBackend,
    JobBackend,
    RunRef,
)
from recipes.errors import Problem, RecipeInputError, did_you_mean
from recipes.schema import Recipe


@dataclass(frozen=True)
class ProviderInfo:
    name: str
    description: str
    extra: str  # the pip extra that brings its SDKs
    probe: str  # a module that proves the extra is installed
    capabilities: str  # "module:NAME" of its Capabilities
    targets: dict[str, str]  # kind of job -> "module:Class"; the first is the default
    endpoint: str = ""  # "module:Class" of its EndpointBackend
    billing: str = ""  # "module:Class" of its BillingBackend (cost reports)
    infra: str = ""  # "module:Class" of its InfraBackend (account bootstrap)


PROVIDERS: dict[str, ProviderInfo] = {
    p.name: p
    for p in (
        ProviderInfo(
            "local",
            "this machine: a supervised process",
            "train",
            "torch",
            "providers.local.runs:CAPABILITIES",
            {"process": "providers.local.runs:LocalRuns"},
            endpoint="providers.local.endpoint:LocalEndpoints",
        ),
        ProviderInfo(
            "aws",
            "Amazon SageMaker training jobs and HyperPod clusters",
            "aws",
            "boto3",
            "providers.aws.settings:CAPABILITIES",
            {
                "training-job": "providers.aws.training_job:TrainingJobs",
                "hyperpod": "providers.aws.hyperpod:HyperPodJobs",
            },
            endpoint="providers.aws.endpoint:SageMakerEndpoints",
            billing="providers.aws.billing:AwsBilling",
            infra="providers.aws.infra:AwsInfra",
        ),
        ProviderInfo(
            "azure",
            "Azure ML command jobs",
            "azure",
            "azure.ai.ml",
            "providers.azure.settings:CAPABILITIES",
            {"command-job": "providers.azure.command_job:CommandJobs"},
            endpoint="providers.azure.endpoint:OnlineEndpoints",
            billing="providers.azure.billing:AzureBilling",
            infra="providers.azure.infra:AzureInfra",
        ),
        ProviderInfo(
            "gcp",
            "Vertex AI custom jobs",
            "gcp",
            "google.cloud.aiplatform",
            "providers.gcp.settings:CAPABILITIES",
            {"custom-job": "providers.gcp.custom_job:CustomJobs"},
            endpoint="providers.gcp.endpoint:VertexEndpoints",
            billing="providers.gcp.billing:GcpBilling",
            infra="providers.gcp.infra:GcpInfra",
        ),
    )
}

# SOURCE prefixes of `recipe cost report`: storage holding billing exports, and cost APIs.
BILLING_SCHEMES = {
    "s3://": "aws",
    "aws-ce:": "aws",
    "azureml://": "azure",
    "azure-cost:": "azure",
    "gs://": "gcp",
    "bq:": "gcp",
}

# URI scheme of a data file -> the storage module that reads it (recipe data check).
READERS = {
    "s3://": "providers.aws.storage",
    "gs://": "providers.gcp.storage",
    "azureml://": "providers.azure.storage",
}


def info(name: str) -> ProviderInfo:
    found = PROVIDERS.get(name)
    if found is None:
        hint = did_you_mean(name, PROVIDERS)
        raise RecipeInputError(
            f"--provider: unknown provider '{name}'; available: {', '.join(PROVIDERS)}"
            + (f" ({hint})" if hint else "")
        )
    return found


def capabilities(name: str) -> Capabilities:
    return _load(info(name).capabilities)


def target_of(name: str, recipe: Recipe) -> str:
    """The kind of job the recipe asks of this provider (compute.<provider>.target)."""
    block = getattr(recipe.compute, name, None)
    asked = getattr(block, "target", None)
    return asked or next(iter(info(name).targets))


def job_backend(name: str, target: str | None = None, **clients: Any) -> JobBackend:
    """The backend for one kind of job; clients are injected by tests."""
    provider = info(name)
    target = target or next(iter(provider.targets))
    if target not in provider.targets:
        raise RecipeInputError(
            Problem(
                f"{name} has no target '{target}'; available: {', '.join(provider.targets)}",
                field=f"compute.{name}.target",
            )
        )
    return _load(provider.targets[target])(**clients)


def for_recipe(name: str, recipe: Recipe, **clients: Any) -> JobBackend:
    return job_backend(name, target_of(name, recipe), **clients)


def for_run(ref: RunRef, **clients: Any) -> JobBackend:
    """The backend that launched a run (ledger rows without a target use the default)."""
    return job_backend(ref.provider, ref.ids.get("target"), **clients)


def endpoint_backend(name: str, **clients: Any) -> EndpointBackend:
    """The endpoint seam of a provider; clients are injected by tests."""
    return _load(info(name).endpoint)(**clients)


def billing_backend(name: str, **clients: Any) -> BillingBackend:
    """A provider's billing seam (cost report sources); clients are injected by tests."""
    return _load(info(name).billing)(**clients)


def infra_backend(name: str, **clients: Any) -> InfraBackend:
    """A provider's account bootstrap; clients are injected by tests."""
    target = info(name).infra
    if not target:
        raise RecipeInputError(
            Problem(
                f"{name} needs no account set-up",
                file="command line",
                field="--provider",
                hint="aws, azure or gcp",
            )
        )
    return _load(target)(**clients)


def billing_schemes() -> dict[str, str]:
    """SOURCE prefix -> provider, without importing any backend (for messages and help)."""
    return dict(BILLING_SCHEMES)


def local_server() -> Any:
    """The local OpenAI-compatible server (`recipe serve`); imports fastapi, torch."""
    return importlib.import_module("providers.local.server")


def cluster_backend(name: str, recipe: Recipe, **clients: Any) -> ClusterBackend:
    """The cluster seam of the recipe's target; an error, with the reason, when there is none."""
    support = supports(name, "clusters")
    if not support.supported:
        raise RecipeInputError(
            Problem(f"{name} has no clusters to manage", field="--provider", hint=support.reason)
        )
    backend = for_recipe(name, recipe, **clients)
    if not isinstance(backend, ClusterBackend):
        raise RecipeInputError(
            Problem(
                f"{name} target '{backend.target}' runs on no cluster of its own",
                field=f"compute.{name}.target",
                hint="`recipe cluster` is for compute.aws.target: hyperpod",
            )
        )
    return backend


@dataclass(frozen=True)
class Support:
    supported: bool
    reason: str  # why not, when not supported


def supports(name: str, feature: str) -> Support:
    """Does provider `name` support `feature` (spot, multi_node, clusters, idempotent,
    method:lora, target:hyperpod, data:s3://...)? With the reason when it does not."""
    caps = capabilities(name)
    if caps.features().get(feature, False):
        return Support(True, "")
    base = feature.split(":", 1)[0]
    reason = caps.why_not.get(feature) or caps.why_not.get(base) or f"{name} does not offer it"
    return Support(False, reason)


def read_remote(location: str, directory: Path) -> Path:
    """A local copy of a data file named by a cloud URI, read through that cloud's SDK."""
    for scheme, module in READERS.items():
        if location.startswith(scheme):
            return importlib.import_module(module).download(location, directory)
    scheme = location.split("://")[0]
    raise RecipeInputError(
        Problem(
            f"{scheme}:// is not a data source",
            file=location,
            hint="use a local path, " + ", ".join(READERS),
        )
    )


def _load(target: str) -> Any:
    module_name, attribute = target.split(":")
    return getattr(importlib.import_module(module_name), attribute)
