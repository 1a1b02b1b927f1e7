"""compute.gcp and the usual environment variables, resolved; what Vertex AI can do."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from providers.base import Capabilities
from providers.staging import Site, section
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
        )


def resolve(recipe: Recipe) -> GcpSettings:
    gcp = section(recipe, "gcp")
    project = gcp.project or os.environ.get("GOOGLE_CLOUD_PROJECT")
    bucket = gcp.staging_bucket or os.environ.get("RECIPE_GCP_BUCKET")
    problems = []
    if not project:
        problems.append(
            Problem(
                "Vertex AI needs a Google Cloud project",
                field="compute.gcp.project",
                hint="set compute.gcp.project or GOOGLE_CLOUD_PROJECT to the project id",
            )
        )
    if not bucket:
        problems.append(
            Problem(
                "Vertex AI needs a Cloud Storage location for code, data and outputs",
                field="compute.gcp.staging_bucket",
                hint="set compute.gcp.staging_bucket or RECIPE_GCP_BUCKET to gs://BUCKET[/PREFIX]",
            )
        )
    elif not re.fullmatch(r"gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?", bucket):
        problems.append(
            Problem("expected gs://BUCKET[/PREFIX]", field="compute.gcp.staging_bucket")
        )
    if problems:
        raise RecipeInputError(problems)
    bucket = bucket.rstrip("/")  # type: ignore[union-attr]
    return GcpSettings(section=gcp, project=project, region=gcp.region, bucket=bucket)  # type: ignore[arg-type]


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
