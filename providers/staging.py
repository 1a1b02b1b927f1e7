"""What every cloud backend shares: names, hardware and estimate, tags, uploads, job env.

Pure functions over the recipe; each cloud module adds only its own request
shapes. Nothing here touches the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from providers.base import Estimate, ProviderError, Request, RunIdentity
from providers.job import check_global_batch, job_config, run_tags
from providers.packaging import ARCHIVE_NAME, Archive, file_sha256, scripts_archive
from recipes import rules
from recipes.cost import catalog
from recipes.cost.estimate import estimate
from recipes.errors import Problem, RecipeInputError
from recipes.schema import Recipe
from recipes.tags import TagMapping, TagRules, map_tags

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


def highest_attempt(prefix: str, names: list[str]) -> int:
    attempts = [int(n[len(prefix) :]) for n in names if re.fullmatch(re.escape(prefix) + r"\d+", n)]
    return max(attempts, default=0)


# --- per-cloud settings ----------------------------------------------------------------------


def section(recipe: Recipe, provider: str) -> Any:
    """compute.<provider>, or its defaults when the recipe has none."""
    from recipes.schema.compute import AwsCompute, AzureCompute, GcpCompute

    defaults = {"aws": AwsCompute, "azure": AzureCompute, "gcp": GcpCompute}
    return getattr(recipe.compute, provider) or defaults[provider]()


@dataclass(frozen=True)
class AwsSettings:
    section: Any
    region: str
    role: str
    bucket: str  # s3://bucket[/prefix], no trailing slash


def aws_settings(recipe: Recipe) -> AwsSettings:
    aws = section(recipe, "aws")
    role = aws.role or os.environ.get("SAGEMAKER_ROLE_ARN")
    bucket = aws.bucket or os.environ.get("RECIPE_AWS_BUCKET")
    problems = []
    if not role:
        problems.append(
            Problem(
                "SageMaker needs an execution role",
                field="compute.aws.role",
                hint="set compute.aws.role or SAGEMAKER_ROLE_ARN to arn:aws:iam::ACCOUNT:role/NAME",
            )
        )
    if not bucket:
        problems.append(
            Problem(
                "SageMaker needs an S3 location for code, data and outputs",
                field="compute.aws.bucket",
                hint="set compute.aws.bucket or RECIPE_AWS_BUCKET to s3://BUCKET[/PREFIX]",
            )
        )
    elif not bucket.startswith("s3://"):
        problems.append(Problem("expected s3://BUCKET[/PREFIX]", field="compute.aws.bucket"))
    if problems:
        raise RecipeInputError(problems)
    return AwsSettings(section=aws, region=aws.region, role=role, bucket=bucket.rstrip("/"))  # type: ignore[union-attr]


# --- hardware and estimate -------------------------------------------------------------------


@dataclass(frozen=True)
class Hardware:
    offer: catalog.Offer
    estimate: Estimate
    notes: tuple[str, ...] = field(default_factory=tuple)

    def compute(self, recipe: Recipe) -> dict[str, Any]:
        c = recipe.compute
        processes = max(1, self.offer.gpus)
        return {
            "instance_type": self.offer.instance_type,
            "accelerator": self.offer.accelerator,
            "gpus_per_node": self.offer.gpus,
            "gpu_memory_gb": self.offer.gpu_memory_gb,
            "nodes": c.nodes,
            "processes_per_node": processes,
            "world_size": processes * c.nodes,
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


# --- tags ------------------------------------------------------------------------------------


def final_tags(recipe: Recipe, identity: RunIdentity, rules_: TagRules) -> TagMapping:
    return map_tags(run_tags(recipe, identity), rules_)


def rename_notes(mapping: TagMapping) -> tuple[str, ...]:
    return tuple(f"tag '{old}' is sent as '{new}'" for old, new in mapping.renamed.items())


# --- uploads ---------------------------------------------------------------------------------


def upload_code(base: str, archive: Archive | None = None) -> Request:
    archive = archive or scripts_archive()
    return Request(
        api="s3:PutObject" if base.startswith("s3://") else "storage:upload",
        body={
            "uri": f"{base}/code/{archive.short}/{ARCHIVE_NAME}",
            "source": "training_scripts/",
            "sha256": archive.sha256,
            "bytes": len(archive.data),
        },
    )


def data_uploads(recipe: Recipe, base: str) -> tuple[list[Request], dict[str, str]]:
    """Local data files become content-addressed uploads; remote ones are used in place."""
    requests, channels = [], {}
    api = "s3:PutObject" if base.startswith("s3://") else "storage:upload"
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
        requests.append(
            Request(
                api=api,
                body={
                    "uri": uri,
                    "source": str(path),
                    "sha256": digest,
                    "bytes": path.stat().st_size,
                },
            )
        )
        channels[channel] = uri
    return requests, channels


def upload_bytes(body: dict[str, Any]) -> bytes:
    """The bytes of a planned upload, refusing if they changed since the plan."""
    if body["source"] == "training_scripts/":
        data = scripts_archive().data
    else:
        data = Path(body["source"]).read_bytes()
    if hashlib.sha256(data).hexdigest() != body["sha256"]:
        raise ProviderError(f"{body['source']} changed since it was planned; plan again")
    return data


def orphans(
    uploads: list[Request], done: list[str], delete: Callable[[str], None], where: str
) -> str:
    """After a failed submit: remove what only this run would use (its recipe.json) and
    report the content-addressed rest, which the next attempt reuses."""
    kept = []
    for upload in uploads:
        uri = upload.body["uri"]
        if uri not in done:
            continue
        if upload.body.get("run_scoped"):
            try:
                delete(uri)
            except Exception:  # reported below instead
                kept.append(uri)
        else:
            kept.append(uri)
    if not kept:
        return "; nothing was left behind"
    return f"; left in {where} (reused by the next attempt): " + ", ".join(kept)


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


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
