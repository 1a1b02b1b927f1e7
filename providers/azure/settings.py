"""compute.azure and the usual environment variables, resolved; what Azure ML can do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from providers.azure.storage import SCOPE_ENV, blob_metadata
from providers.base import Capabilities
from providers.staging import Needed, Site, needed_settings, section
from recipes.cost import catalog
from recipes.schema import Recipe
from recipes.tags import AZURE as AZURE_TAG_RULES

CAPABILITIES = Capabilities(
    methods=("lora", "qlora", "full"),
    accelerators=catalog.accelerators("azure"),
    spot=True,  # low-priority AmlCompute; the cluster's tier decides, see plan notes
    multi_node=True,
    max_processes_per_node=8,
    targets=("command-job",),
    remote_data=("azureml://",),
    idempotent=True,
    why_not={
        "accelerators": "no Azure ML VM size in the catalog has it",
        "remote_data": "Azure ML jobs read azureml:// datastore URIs; upload the data there",
        "clusters": "jobs run on an existing AmlCompute cluster (compute.azure.compute)",
        "max_processes_per_node": "Azure ML VM sizes have at most 8 GPUs",
    },
)


@dataclass(frozen=True)
class Workspace:
    section: Any  # the recipe's compute.azure block (or its defaults)
    subscription: str
    resource_group: str
    workspace: str
    region: str
    datastore: str
    cluster: str

    @property
    def arm(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace}"
        )

    @property
    def scope(self) -> dict[str, str]:
        """What a run remembers, so status/logs/cancel find the workspace from any shell."""
        return {k: getattr(self, k) for k in SCOPE_ENV}

    def uri(self, path: str) -> str:
        return f"azureml://datastores/{self.datastore}/paths/{path}"

    def site(self, target: str) -> Site:
        secret = self.section.wandb_secret
        return Site(
            provider="azure",
            target=target,
            region=self.region,
            base=self.uri("recipe"),
            instance_type=self.section.instance_type,
            tag_rules=AZURE_TAG_RULES,
            wandb_reference=f"azure-keyvault:{secret}" if secret else None,
            upload_api="storage:upload",
            object_tags=blob_metadata,
        )


NEEDED = (
    *(
        Needed(key, env, "Azure ML needs the workspace", f"the {key.replace('_', ' ')}")
        for key, env in SCOPE_ENV.items()
    ),
    Needed(
        "compute",
        "AZUREML_COMPUTE",
        "Azure ML needs a compute cluster name",
        "the AmlCompute cluster",
    ),
)


def resolve(recipe: Recipe) -> Workspace:
    azure = section(recipe, "azure")
    values = needed_settings("azure", azure, NEEDED)
    cluster = values.pop("compute")
    return Workspace(
        section=azure,
        **values,
        region=azure.region,
        datastore=azure.datastore,
        cluster=cluster,
    )
