"""The one staging and submit pipeline every cloud job kind shares.

plan:   capability check -> settings (a `Site`) -> hardware and estimate -> tags ->
        code upload -> data uploads -> recipe.json -> job environment -> the kind's
        own request -> Plan                                  (`stage`, `Staged.plan`)
submit: job already there? -> uploads (skipping identical objects) -> create ->
        on failure remove what only this run used, report the rest  (`submit`)
then:   follow logs until the run ends (`job_logs`), cancel unless it already
        ended (`cancel_job`), next attempt number (`latest_attempt`).

A cloud package supplies only its request shapes (a function of `Staged`), its
storage (`Storage`) and its SDK calls (`JobApi`); @cloud_job gives it submit,
latest_attempt, logs and cancel. Nothing here touches the
network by itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from providers import capabilities
from providers.base import (
    Capabilities,
    ErrorKind,
    Plan,
    ProviderError,
    Request,
    RunIdentity,
    RunRef,
    RunStatus,
    Submitted,
)
from providers.contract import check_global_batch, job_config, run_tags
from providers.packaging import ARCHIVE_NAME, file_sha256, scripts_archive
from recipes import rules
from recipes.cost import catalog
from recipes.cost.estimate import Estimate, estimate, model_parameters
from recipes.errors import Problem, RecipeInputError
from recipes.schema import Recipe
from recipes.tags import TagMapping, TagRules, map_tags

T = TypeVar("T")

# Variables every cloud job gets; credentials never (they are referenced, see job_env).
BASE_ENV = {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
DATA_CHANNELS = (
    ("train", "data", "train"),
    ("validation", "data", "validation"),
    ("golden", "eval", "golden"),
)


# --- names -----------------------------------------------------------------------------------


def cloud_identity(recipe_name: str, recipe_hash: str, attempt: int = 1) -> RunIdentity:
    """Run id <recipe>-<hash8>-<attempt>: the same recipe content names the same job."""
    return RunIdentity(
        run_id=f"{recipe_name}-{recipe_hash[:8]}-{attempt}",
        recipe_name=recipe_name,
        recipe_hash=recipe_hash,
        attempt=attempt,
    )


def name_prefix(identity: RunIdentity) -> str:
    return f"{identity.recipe_name}-{identity.recipe_hash[:8]}-"


def highest_attempt(prefix: str, names: Iterable[str]) -> int:
    attempts = [int(n[len(prefix) :]) for n in names if re.fullmatch(re.escape(prefix) + r"\d+", n)]
    return max(attempts, default=0)


def section(recipe: Recipe, provider: str) -> Any:
    """compute.<provider>, or its defaults when the recipe has none."""
    from recipes.schema.compute import AwsCompute, AzureCompute, GcpCompute

    defaults = {"aws": AwsCompute, "azure": AzureCompute, "gcp": GcpCompute}
    return getattr(recipe.compute, provider) or defaults[provider]()


@dataclass(frozen=True)
class Needed:
    """A setting a cloud cannot do without: compute.<provider>.<field>, else an env var."""

    field: str
    env: str
    why: str  # e.g. "SageMaker needs an execution role"
    form: str  # what to set it to, e.g. "s3://BUCKET[/PREFIX]"


def needed_settings(provider: str, block: Any, needs: Iterable[Needed]) -> dict[str, str]:
    """Each needed setting from the recipe or the environment; one error naming all gaps."""
    values, problems = {}, []
    for need in needs:
        value = getattr(block, need.field) or os.environ.get(need.env)
        if value:
            values[need.field] = value
            continue
        where = f"compute.{provider}.{need.field}"
        hint = f"set {where} or {need.env} to {need.form}"
        problems.append(Problem(need.why, field=where, hint=hint))
    if problems:
        raise RecipeInputError(problems)
    return values


# --- hardware and estimate -------------------------------------------------------------------


@dataclass(frozen=True)
class Hardware:
    offer: catalog.Offer
    estimate: Estimate
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def processes_per_node(self) -> int:
        return max(1, self.offer.gpus)

    def compute(self, recipe: Recipe) -> dict[str, Any]:
        c = recipe.compute
        return {
            "instance_type": self.offer.instance_type,
            "accelerator": self.offer.accelerator,
            "gpus_per_node": self.offer.gpus,
            "gpu_memory_gb": self.offer.gpu_memory_gb,
            "nodes": c.nodes,
            "processes_per_node": self.processes_per_node,
            "world_size": self.processes_per_node * c.nodes,
            "global_batch_size": recipe.training.batch_size,
            "spot": c.spot,
            "max_runtime_s": c.max_runtime,
            "catalog_version": catalog.load().version,
        }


def hardware(recipe: Recipe, provider: str, region: str, explicit: str | None) -> Hardware:
    ask = catalog.Ask(
        provider=provider,
        accelerator=recipe.compute.accelerator,
        gpus_per_node=recipe.compute.gpus_per_node,
        region=region,
        instance_type=explicit,
        override_field=f"compute.{provider}.instance_type",
        region_field=f"compute.{provider}.region",
    )
    offer = catalog.resolve(ask)
    notes = []
    if explicit and (offer.accelerator, offer.gpus) != (
        recipe.compute.accelerator,
        recipe.compute.gpus_per_node,
    ):
        notes.append(
            f"compute.{provider}.instance_type {explicit} has {offer.gpus}x {offer.accelerator}; "
            f"it overrides compute.accelerator/gpus_per_node "
            f"({recipe.compute.gpus_per_node}x {recipe.compute.accelerator})"
        )
    world_size = max(1, offer.gpus) * recipe.compute.nodes
    check_global_batch(recipe, world_size, field="training.batch_size")
    return Hardware(offer=offer, estimate=estimate(recipe, offer, region), notes=tuple(notes))


def disk_gb(recipe: Recipe, minimum: int) -> int:
    """Room for the base model (downloaded in the job), checkpoints and the output."""
    params, _ = model_parameters(recipe.model.base)
    return max(minimum, int(params * 2 * 4 / 1e9) + 30)  # bf16 weights, ~4 copies, plus slack


# --- tags ------------------------------------------------------------------------------------


def final_tags(recipe: Recipe, identity: RunIdentity, rules_: TagRules) -> TagMapping:
    return map_tags(run_tags(recipe, identity), rules_)


def rename_notes(mapping: TagMapping) -> tuple[str, ...]:
    return tuple(f"tag '{old}' is sent as '{new}'" for old, new in mapping.renamed.items())


# --- what goes into the job ------------------------------------------------------------------


def with_data_locations(recipe: Recipe, channels: dict[str, str]) -> Recipe:
    """The recipe as the job sees it: data named by the cloud URIs it was uploaded to."""
    data_update = {k: channels[k] for k in ("train", "validation") if k in channels}
    update: dict[str, Any] = {"data": recipe.data.model_copy(update=data_update)}
    if "golden" in channels:
        update["eval"] = recipe.eval.model_copy(update={"golden": channels["golden"]})
    return recipe.model_copy(update=update)


def job_config_for(recipe: Recipe, identity: RunIdentity, provider: str) -> dict[str, Any]:
    return json.loads(json.dumps(job_config(recipe, identity, provider)))


def job_env(recipe: Recipe, identity: RunIdentity, wandb_reference: str | None) -> dict[str, str]:
    """Environment of a cloud job: no secret values, only where a secret is kept."""
    env = {**BASE_ENV, "RECIPE_RUN_ID": identity.run_id}
    wandb = recipe.tracking.wandb
    if wandb is not None and wandb.mode == "online":
        if wandb_reference is None:
            raise RecipeInputError(
                Problem(
                    "W&B online needs the API key in the cloud's secret store; the key is "
                    "never put in a job request",
                    field="tracking.wandb.mode",
                    hint="set wandb_secret in compute.<provider>, or use mode: offline",
                )
            )
        env["RECIPE_WANDB_SECRET"] = wandb_reference
    if wandb is not None:
        env["WANDB_MODE"] = wandb.mode
    return env


# --- staging: everything before the kind's own request ---------------------------------------


@dataclass(frozen=True)
class Site:
    """Where a cloud job kind stages a run, resolved from the recipe's settings."""

    provider: str
    target: str
    region: str
    base: str  # storage root: s3://BUCKET[/PREFIX], gs://..., azureml://datastores/D/paths/P
    instance_type: str | None  # an explicit override of the catalog's choice
    tag_rules: TagRules
    wandb_reference: str | None
    upload_api: str  # "s3:PutObject" or "storage:upload"
    # The run's tags as each uploaded object carries them: body fields (S3's Tagging,
    # blob metadata) and the notes a plan shows about what could not be carried.
    object_tags: Callable[[dict[str, str]], tuple[dict[str, Any], tuple[str, ...]]]


@dataclass(frozen=True)
class Staged:
    """A run ready for its job request: hardware, tags, uploads and the job's inputs."""

    recipe: Recipe
    identity: RunIdentity
    site: Site
    hardware: Hardware
    tags: TagMapping
    uploads: tuple[Request, ...]  # code, local data, recipe.json (run-scoped), in that order
    inputs: dict[str, str]  # channel -> URI: code, recipe, train, validation, golden
    env: dict[str, str]
    notes: tuple[str, ...] = ()

    @property
    def run_base(self) -> str:
        return f"{self.site.base}/runs/{self.identity.run_id}"

    def plan(self, create: Request, compute: dict[str, Any], notes: Iterable[str] = ()) -> Plan:
        return Plan(
            provider=self.site.provider,
            identity=self.identity,
            requests=(*self.uploads, create),
            compute={**self.hardware.compute(self.recipe), "region": self.site.region, **compute},
            tags=self.tags.tags,
            estimate=self.hardware.estimate,
            notes=(*self.hardware.notes, *rename_notes(self.tags), *self.notes, *notes),
        )


def stage(recipe: Recipe, identity: RunIdentity, site: Site, caps: Capabilities) -> Staged:
    """Everything a cloud job needs before its own request; pure."""
    capabilities.check(site.provider, caps, recipe, site.target)
    hw = hardware(recipe, site.provider, site.region, site.instance_type)
    tags = final_tags(recipe, identity, site.tag_rules)
    object_fields, object_notes = site.object_tags(tags.tags)
    archive = scripts_archive()
    code = Request(
        api=site.upload_api,
        body={
            "uri": f"{site.base}/code/{archive.short}/{ARCHIVE_NAME}",
            "source": "training_scripts/",
            "sha256": archive.sha256,
            "bytes": len(archive.data),
            **object_fields,
        },
    )
    data, channels = data_uploads(recipe, site.base, site.upload_api, object_fields)
    recipe_uri = f"{site.base}/runs/{identity.run_id}/recipe.json"
    job_recipe = with_data_locations(recipe, channels)
    recipe_json = Request(
        api=site.upload_api,
        body={
            "uri": recipe_uri,
            "content": job_config_for(job_recipe, identity, site.provider),
            "run_scoped": True,
            **object_fields,
        },
    )
    return Staged(
        recipe=recipe,
        identity=identity,
        site=site,
        hardware=hw,
        tags=tags,
        uploads=(code, *data, recipe_json),
        inputs={"code": code.body["uri"], "recipe": recipe_uri, **channels},
        env=job_env(recipe, identity, site.wandb_reference),
        notes=object_notes,
    )


def data_uploads(
    recipe: Recipe, base: str, api: str, fields: dict[str, Any] | None = None
) -> tuple[list[Request], dict[str, str]]:
    """Local data files become content-addressed uploads; remote ones are used in place."""
    requests, channels = [], {}
    for channel, section_name, key in DATA_CHANNELS:
        location = getattr(getattr(recipe, section_name), key)
        if not isinstance(location, str):
            continue  # a validation fraction: split inside the job
        if rules.is_remote(location):
            channels[channel] = location
            continue
        path = Path(location)
        digest = file_sha256(path)
        uri = f"{base}/data/{digest[:16]}/{path.name}"
        body = {"uri": uri, "source": str(path), "sha256": digest, "bytes": path.stat().st_size}
        requests.append(Request(api=api, body={**body, **(fields or {})}))
        channels[channel] = uri
    return requests, channels


# --- submit: the same steps on every cloud ---------------------------------------------------


class Storage(Protocol):
    """A cloud's object store, as the submit pipeline uses it."""

    where: str  # e.g. "S3, tagged with this run's tags": where leftovers are reported

    def exists(self, uri: str, sha256: str) -> bool:
        """An object with these bytes is already there (content-addressed uploads)."""
        ...

    def put(self, body: dict[str, Any], data: bytes) -> None:
        """Store one planned upload: its uri, and its tags as the body shows them."""
        ...

    def delete(self, uri: str) -> None: ...


class JobApi(Protocol):
    """A kind of cloud job as the pipeline drives it: the backend's own SDK calls."""

    log_poll_s: float  # how often `logs --follow` asks for more

    def storage(self, plan: Plan) -> Storage:
        """Where the plan's uploads go."""
        ...

    def find(self, plan: Plan) -> RunRef | None:
        """The job this plan would create, when it already exists."""
        ...

    def create(self, plan: Plan, request: Request) -> RunRef: ...

    def launched(self, plan: Plan) -> Iterable[str]:
        """Names of the jobs already launched for this recipe content (any attempt)."""
        ...

    def status(self, ref: RunRef) -> RunStatus: ...

    def new_log_lines(self, ref: RunRef, cursor: dict[str, Any]) -> Iterable[str]:
        """Log lines not yet returned; `cursor` is the backend's memory between calls."""
        ...

    def stop(self, ref: RunRef) -> RunStatus | None:
        """Ask the service to stop the job; the state afterwards, or None to ask status()."""
        ...


def upload_bytes(body: dict[str, Any]) -> bytes:
    """The bytes of a planned upload, refusing if they changed since the plan."""
    if "content" in body:
        return json.dumps(body["content"], indent=2, sort_keys=True).encode()
    try:
        if body["source"] == "training_scripts/":
            data = scripts_archive().data
        else:
            data = Path(body["source"]).read_bytes()
    except OSError as exc:
        raise ProviderError(f"cannot read {body['source']}: {exc.strerror}") from None
    if hashlib.sha256(data).hexdigest() != body["sha256"]:
        raise ProviderError(f"{body['source']} changed since it was planned; plan again")
    return data


def submit(plan: Plan, storage: Storage, api: JobApi) -> Submitted:
    """Uploads then create, exactly as planned; a job already there is reported, not relaunched.

    On failure, what only this run would use (its recipe.json) is removed and the
    content-addressed rest, which the next attempt reuses, is listed in the error.
    """
    existing = api.find(plan)
    if existing is not None:
        return Submitted(existing, existing=True)
    *uploads, create = plan.requests
    done: list[Request] = []
    try:
        for upload in uploads:
            body = upload.body
            if "sha256" in body and storage.exists(body["uri"], body["sha256"]):
                continue
            storage.put(body, upload_bytes(body))
            done.append(upload)
        return Submitted(api.create(plan, create))
    except ProviderError as exc:
        if exc.kind == ErrorKind.CONFLICT:  # launched by someone else a moment ago
            found = api.find(plan)
            if found is not None:
                return Submitted(found, existing=True)
        raise exc.with_suffix(_leftovers(done, storage)) from None


def _leftovers(done: list[Request], storage: Storage) -> str:
    kept = []
    for upload in done:
        uri = upload.body["uri"]
        if upload.body.get("run_scoped"):
            try:
                storage.delete(uri)
                continue
            except ProviderError:  # reported below instead
                pass
        kept.append(uri)
    if not kept:
        return "; nothing was left behind"
    return f"; left in {storage.where} (reused by the next attempt): " + ", ".join(kept)


def fetch_file(
    location: str, target: Path, fetch: Callable[[], Any], missing: str = "no such object"
) -> Path:
    """A data file read for `recipe data check`: a missing object is bad input (exit 2),
    anything else the cloud's error; no partial file is left behind."""
    try:
        fetch()
    except ProviderError as exc:
        target.unlink(missing_ok=True)
        if exc.kind == ErrorKind.NOT_FOUND:
            raise RecipeInputError(Problem(missing, file=location)) from None
        raise
    return target


def unless_missing(fn: Callable[[], T]) -> T | None:
    """The answer of a call that raises a typed ProviderError, or None when it found nothing."""
    try:
        return fn()
    except ProviderError as exc:
        if exc.kind == ErrorKind.NOT_FOUND:
            return None
        raise


# --- the JobBackend methods every cloud job kind shares -------------------------------------
# A kind gets these as its own methods through @cloud_job: the logic is written once,
# with no base class; the kind supplies the JobApi calls above.


def cloud_job(cls: type[T]) -> type[T]:
    """Give a JobApi class the JobBackend methods below, written once (no base class)."""
    cls.submit = submit_job  # type: ignore[attr-defined]
    cls.latest_attempt = latest_attempt  # type: ignore[attr-defined]
    cls.logs = job_logs  # type: ignore[attr-defined]
    cls.cancel = cancel_job  # type: ignore[attr-defined]
    return cls


def submit_job(api: JobApi, plan: Plan) -> Submitted:
    """JobBackend.submit: uploads and create through the shared pipeline."""
    return submit(plan, api.storage(plan), api)


def latest_attempt(api: JobApi, plan: Plan) -> int:
    """JobBackend.latest_attempt: the highest attempt launched for this recipe content."""
    return highest_attempt(name_prefix(plan.identity), api.launched(plan))


def job_logs(api: JobApi, ref: RunRef, follow: bool = False) -> Iterator[str]:
    """JobBackend.logs: new lines until the run ends; the last read comes after the end."""
    cursor: dict[str, Any] = {}
    while True:
        done = not follow or api.status(ref).state.terminal
        yield from api.new_log_lines(ref, cursor)
        if done:
            return
        time.sleep(api.log_poll_s)


def cancel_job(api: JobApi, ref: RunRef) -> RunStatus:
    """JobBackend.cancel: stop a run that has not ended; the state it is in afterwards."""
    current = api.status(ref)
    if current.state.terminal:
        return current
    return api.stop(ref) or api.status(ref)
