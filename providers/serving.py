"""The one endpoint pipeline every backend shares (the serving twin of staging.py).

plan:   deploy block -> hardware (catalog, as for training) -> estimate -> serving spec
        (neutral vLLM settings) -> names (deterministic) -> tags -> the backend's own
        requests -> EndpointPlan                               (`prepare`, `Prepared.plan`)
deploy: each request in order: already there? skip : create -> on a failure half-way,
        remove what this call created, report what could not be removed    (`deploy`)

A backend supplies its request shapes (a function of `Prepared`) and an `EndpointApi`
(apply one request, remove one request, name one request); nothing here touches the
network by itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

from providers import images
from providers.base import (
    Artifact,
    Deployed,
    EndpointPlan,
    EndpointRef,
    ProviderError,
    Request,
    ServingSpec,
)
from recipes.cost import catalog
from recipes.cost.estimate import model_parameters
from recipes.cost.serving import EndpointEstimate, estimate_endpoint
from recipes.errors import Problem, RecipeInputError
from recipes.schema import Recipe
from recipes.schema.deploy import DeploySpec
from recipes.tags import TagMapping, TagRules, map_tags

# vLLM accepts these --max-lora-rank values only (vllm/config: LoRAConfig.max_lora_rank,
# "possible_max_ranks"); a recipe's rank is rounded up to the next one.
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
BYTES_PER_PARAM = 2  # bf16 weights
KV_CACHE_SHARE = 0.3  # room left for the KV cache and activations beyond the weights
SERVING_ROOT_NOTE = "paths in `serving` are relative to the artifact root"


# --- the deploy block ------------------------------------------------------------------------


def deploy_block(recipe: Recipe) -> DeploySpec:
    if recipe.deploy is None:
        raise RecipeInputError(
            Problem(
                "the recipe has no deploy block: nothing says how to serve it",
                field="deploy",
                hint="add e.g. `deploy: {endpoint: my-model, min_replicas: 1, max_replicas: 2}`",
            )
        )
    return recipe.deploy


def needs_replicas(recipe: Recipe, provider: str) -> None:
    """The clouds' real-time endpoints keep at least one instance (no scale to zero here)."""
    block = deploy_block(recipe)
    if block.min_replicas < 1:
        raise RecipeInputError(
            Problem(
                f"{provider} real-time endpoints need at least one instance",
                field="deploy.min_replicas",
                hint="set deploy.min_replicas: 1 or more",
            )
        )


# --- hardware and estimate -------------------------------------------------------------------


def memory_needed_gb(base_model: str) -> float:
    """GPU memory a replica needs: bf16 weights plus a share for the KV cache."""
    params, _ = model_parameters(base_model)
    return params * BYTES_PER_PARAM / 1e9 * (1 + KV_CACHE_SHARE)


def choose_offer(recipe: Recipe, provider: str, region: str) -> tuple[catalog.Offer, str]:
    """The serving instance: explicit, the asked accelerator, or the cheapest that fits."""
    block = deploy_block(recipe)
    explicit = block.instance_type.get(provider)  # type: ignore[call-overload]
    if explicit or block.accelerator != "auto":
        ask = catalog.Ask(
            provider=provider,
            accelerator=block.accelerator if block.accelerator != "auto" else "",
            gpus_per_node=block.gpus,
            region=region,
            instance_type=explicit,
            override_field=f"deploy.instance_type.{provider}",
            region_field=f"compute.{provider}.region",
            accelerator_field="deploy.accelerator",
        )
        offer = catalog.resolve(ask)
        field = f"deploy.instance_type.{provider}" if explicit else "deploy.accelerator"
        _check_fits(recipe.model.base, offer, field)
        why = "from deploy.instance_type" if explicit else "from deploy.accelerator"
        if explicit and (
            (block.accelerator not in ("auto", offer.accelerator)) or block.gpus != offer.gpus
        ):
            why += (
                f"; it has {offer.gpus}x {offer.accelerator} and overrides deploy.accelerator/"
                f"gpus ({block.gpus}x {block.accelerator})"
            )
        return offer, why
    need = memory_needed_gb(recipe.model.base)
    fitting = [
        o
        for o in catalog.load().offers.get(provider, ())
        if o.gpus == block.gpus and o.gpu_memory_gb * o.gpus >= need and o.price(region)
    ]
    if not fitting:
        raise RecipeInputError(
            Problem(
                f"no {provider} offer in {region} has {block.gpus} GPU(s) with {need:.0f} GB "
                f"in all for {recipe.model.base}",
                field="deploy.accelerator",
                hint="raise deploy.gpus, or name deploy.instance_type."
                f"{provider} / deploy.accelerator",
            )
        )
    offer = min(fitting, key=lambda o: o.price(region).on_demand)  # type: ignore[union-attr]
    return offer, f"auto: cheapest {block.gpus}-GPU offer with >= {need:.1f} GB for the model"


def _check_fits(base_model: str, offer: catalog.Offer, field: str) -> None:
    """An instance named by hand must hold the model; an unknown size is not refused."""
    _, basis = model_parameters(base_model)
    need = memory_needed_gb(base_model)
    have = offer.gpu_memory_gb * offer.gpus
    if have < need and not basis.startswith("assumed"):
        raise RecipeInputError(
            Problem(
                f"{offer.describe()} has {have:g} GB of GPU memory; {base_model} needs about "
                f"{need:.1f} GB (bf16 weights plus {KV_CACHE_SHARE:.0%} for the KV cache)",
                field=field,
                hint="pick a bigger GPU or more deploy.gpus, or deploy.accelerator: auto",
            )
        )


# --- what the server is told -----------------------------------------------------------------


def lora_rank(rank: int) -> int:
    return next((r for r in VLLM_LORA_RANKS if r >= rank), VLLM_LORA_RANKS[-1])


def serving_spec(
    recipe: Recipe, artifact: Artifact, image: str, gpus: int, engine: str = "vllm"
) -> ServingSpec:
    """Neutral settings of the server: every backend renders these into its own form
    (a cloud's vLLM container, or `recipe serve` here)."""
    block = deploy_block(recipe)
    max_len = block.max_model_len or recipe.data.max_seq_len
    if artifact.kind == "adapter":
        rank = artifact.lora_rank or 16
        return ServingSpec(
            engine=engine,
            image=image,
            base_model=artifact.base_model,
            served_name=artifact.name,
            adapters={artifact.name: "adapter"},
            max_model_len=max_len,
            # vLLM takes only some ranks; `recipe serve` loads the adapter as it is.
            max_lora_rank=lora_rank(rank) if engine == "vllm" else rank,
            gpus=gpus,
        )
    # merged/ (the adapter folded into the base) or model/ (a full fine-tune): one model.
    return ServingSpec(
        engine=engine,
        image=image,
        base_model=artifact.kind if artifact.kind == "merged" else "model",
        served_name=artifact.name,
        adapters={},
        max_model_len=max_len,
        max_lora_rank=None,
        gpus=gpus,
    )


# --- names and tags --------------------------------------------------------------------------


def version_of(artifact: Artifact, serving: ServingSpec, compute: dict[str, Any]) -> str:
    """8 hex digits naming this artifact, server and hardware: the same deploy, the same name."""
    identity = {"artifact": asdict(artifact), "serving": asdict(serving), "compute": compute}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]


def endpoint_tags(recipe: Recipe, artifact: Artifact, endpoint: str) -> dict[str, str]:
    """The recipe's tags plus what links the endpoint to its run (cost reports group by these)."""
    return {
        **recipe.tags,
        "recipe": recipe.name,
        "run_id": artifact.run_id,
        "endpoint": endpoint,
    }


# --- preparing a plan ------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """An endpoint ready for its backend's requests: names, hardware, server, tags, cost."""

    recipe: Recipe
    artifact: Artifact
    provider: str
    region: str
    endpoint: str
    version: str
    offer: catalog.Offer
    serving: ServingSpec
    tags: TagMapping
    estimate: EndpointEstimate
    notes: tuple[str, ...]

    @property
    def deployment(self) -> str:
        return f"{self.endpoint}-{self.version}"

    @property
    def block(self) -> DeploySpec:
        return deploy_block(self.recipe)

    def compute(self) -> dict[str, Any]:
        return {
            "instance_type": self.offer.instance_type,
            "accelerator": self.offer.accelerator,
            "gpus": self.offer.gpus,
            "gpu_memory_gb": self.offer.gpu_memory_gb,
            "min_replicas": self.block.min_replicas,
            "max_replicas": self.block.max_replicas,
        }

    def plan(self, requests: Iterable[Request], notes: Iterable[str] = ()) -> EndpointPlan:
        return EndpointPlan(
            provider=self.provider,
            endpoint=self.endpoint,
            deployment=self.deployment,
            region=self.region,
            artifact=self.artifact,
            serving=self.serving,
            requests=tuple(requests),
            compute={**self.compute(), "region": self.region},
            tags=self.tags.tags,
            estimate=self.estimate,
            notes=(*self.notes, *notes),
        )


def prepare(
    recipe: Recipe,
    artifact: Artifact,
    provider: str,
    region: str,
    tag_rules: TagRules,
    /,
    **image_fill: str,
) -> Prepared:
    """Everything an endpoint needs before the backend's own requests; pure.

    image_fill: the serving image's placeholders ({registry}, {location}, {project}...);
    the positional-only arguments leave every name free for them, `region` included."""
    block = deploy_block(recipe)
    if artifact.provider != provider:
        raise RecipeInputError(
            Problem(
                f"run {artifact.run_id} was trained on {artifact.provider}; its artifact "
                f"({artifact.uri}) is served from there",
                field="--provider",
                hint=f"use --provider {artifact.provider}",
            )
        )
    needs_replicas(recipe, provider)
    offer, why = choose_offer(recipe, provider, region)
    if offer.gpus == 0:
        raise RecipeInputError(
            Problem(
                f"{offer.instance_type} has no GPU; {provider} endpoints run vLLM on GPUs",
                field=f"deploy.instance_type.{provider}",
                hint="pick a GPU instance, or serve on this machine with `recipe serve`",
            )
        )
    image, image_notes = images.serving(provider, "deploy")
    uri = image.uri.format(**image_fill) if image_fill else image.uri
    serving = serving_spec(recipe, artifact, uri, offer.gpus)
    est = estimate_endpoint(
        offer, region, block.min_replicas, block.max_replicas, catalog.load().version
    )
    mapping = map_tags(endpoint_tags(recipe, artifact, block.endpoint), tag_rules)
    compute = {
        "instance_type": offer.instance_type,
        "replicas": [block.min_replicas, block.max_replicas],
    }
    notes = (
        f"instance {offer.describe()} ({why})",
        *image_notes,
        *(f"tag '{old}' is sent as '{new}'" for old, new in mapping.renamed.items()),
    )
    return Prepared(
        recipe=recipe,
        artifact=artifact,
        provider=provider,
        region=region,
        endpoint=block.endpoint,
        version=version_of(artifact, serving, compute),
        offer=offer,
        serving=serving,
        tags=mapping,
        estimate=est,
        notes=notes,
    )


# --- deploying -------------------------------------------------------------------------------

Outcome = Literal["created", "updated", "existing"]


class EndpointApi(Protocol):
    """One backend's calls for the resources of an endpoint plan."""

    def apply(self, request: Request) -> Outcome:
        """Make the request's resource exist as asked: create it, update it, or find it."""
        ...

    def remove(self, request: Request) -> None:
        """Delete the request's resource (absent is fine)."""
        ...

    def describe(self, request: Request) -> str:
        """'sagemaker:CreateModel NAME': how messages name it."""
        ...


def deploy(plan: EndpointPlan, api: EndpointApi, ref: EndpointRef) -> Deployed:
    """Apply each request in order; on a failure remove what this call created, newest first."""
    created: list[Request] = []
    changed = False
    try:
        for request in plan.requests:
            outcome = api.apply(request)
            if outcome == "created":
                created.append(request)
            changed = changed or outcome != "existing"
    except ProviderError as exc:
        raise _rolled_back(exc, created, api) from None
    return Deployed(ref, existing=not changed, created=tuple(api.describe(r) for r in created))


def _rolled_back(exc: ProviderError, created: list[Request], api: EndpointApi) -> ProviderError:
    removed, left = [], []
    for request in reversed(created):
        try:
            api.remove(request)
            removed.append(api.describe(request))
        except ProviderError as cleanup:
            left.append(f"{api.describe(request)} ({cleanup})")
    message = str(exc)
    if removed:
        message += "; removed what this deploy had created: " + ", ".join(removed)
    if left:
        message += "; could NOT remove (delete by hand): " + ", ".join(left)
    return ProviderError(message, exc.kind)


# --- requests to an OpenAI-compatible server -------------------------------------------------


def chat_request(model: str, message: str, max_tokens: int = 64) -> dict[str, Any]:
    """The chat-completions body `recipe endpoint invoke` sends to any backend."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": message}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
