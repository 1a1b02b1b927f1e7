"""compute.gcp and the usual environment variables, resolved; what Vertex AI can do."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from providers.base import Capabilities
from providers.gcp.storage import object_metadata
from providers.staging import Needed, Site, needed_settings, section
from recipes.cost import catalog
from recipes.errors import Problem, RecipeInputError
from recipes.schema import Recipe
from recipes.tags import GCP as GCP_TAG_RULES

CAPABILITIES = Capabilities(
    methods=("lora", "qlora", "full"),
    accelerators=catalog.accelerators("gcp"),
    spot=True,
    multi_node=True,
    max_processes_per_node=8,
    targets=("custom-job",),
    remote_data=("gs://",),
    idempotent=True,
    why_not={
        "accelerators": "no Vertex AI machine type in the catalog has it",
        "remote_data": "Vertex AI jobs read gs:// through Cloud Storage FUSE; copy the data there",
        "clusters": "custom jobs provision their own machines",
        "max_processes_per_node": "Vertex AI machine types have at most 8 GPUs",
    },
)


@dataclass(frozen=True)
class GcpSettings:
    section: Any
    project: str
    region: str
    bucket: str  # gs://bucket[/prefix], no trailing slash

    def site(self, target: str) -> Site:
        return Site(
            provider="gcp",
            target=target,
            region=self.region,
            base=self.bucket,
            instance_type=self.section.machine_type,
            tag_rules=GCP_TAG_RULES,
            wandb_reference=wandb_reference(self),
            upload_api="storage:upload",
            object_tags=object_metadata,
        )


NEEDED = (
    Needed(
        "project",
        "GOOGLE_CLOUD_PROJECT",
        "Vertex AI needs a Google Cloud project",
        "the project id",
    ),
    Needed(
        "staging_bucket",
        "RECIPE_GCP_BUCKET",
        "Vertex AI needs a Cloud Storage location for code, data and outputs",
        "gs://BUCKET[/PREFIX]",
    ),
)
# Cloud Storage bucket names: https://cloud.google.com/storage/docs/buckets#naming
_BUCKET = re.compile(r"gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?")


def resolve(recipe: Recipe) -> GcpSettings:
    gcp = section(recipe, "gcp")
    values = needed_settings("gcp", gcp, NEEDED)
    bucket = values["staging_bucket"]
    if not _BUCKET.fullmatch(bucket):
        raise RecipeInputError(
            Problem("expected gs://BUCKET[/PREFIX]", field="compute.gcp.staging_bucket")
        )
    return GcpSettings(gcp, values["project"], gcp.region, bucket.rstrip("/"))


def wandb_reference(setting: GcpSettings) -> str | None:
    """Secret Manager's full version name, so the job needs no project lookup."""
    secret = setting.section.wandb_secret
    if not secret:
        return None
    if not secret.startswith("projects/"):
        secret = f"projects/{setting.project}/secrets/{secret}"
    if "/versions/" not in secret:
        secret += "/versions/latest"
    return f"gcp-secretmanager:{secret}"


def resolve_endpoint(recipe: Recipe) -> tuple[str, str]:
    """The project and region of a Vertex AI endpoint (no bucket: the artifact names its own)."""
    gcp = section(recipe, "gcp")
    values = needed_settings("gcp", gcp, NEEDED[:1])
    return values["project"], gcp.region
