"""Azure ML datastores: the uploads a run's plan lists, and reading `azureml://` data files.

Uploads go to the workspace's datastore (default `workspaceblobstore`) through
azure-storage-blob, with the container and credential azure-ai-ml resolves.
For `recipe data check`, two URI forms are accepted:
  azureml://subscriptions/S/resourcegroups/RG/workspaces/W/datastores/D/paths/P
  azureml://datastores/D/paths/P   (workspace from AZURE_SUBSCRIPTION_ID,
                                    AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE_NAME)
The workspace resolves the datastore (account, container, a short-lived
credential); the blob is then read exactly, not by prefix. RECIPE_AZURE_BLOB_ENDPOINT
points blob reads elsewhere (Azurite, tests), e.g. http://127.0.0.1:10000/devstoreaccount1.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers.azure import sdk
from providers.staging import fetch_file, unless_missing
from recipes.errors import Problem, RecipeInputError

BLOB_ENDPOINT_ENV = "RECIPE_AZURE_BLOB_ENDPOINT"
# The workspace, when a recipe or a URI does not name it (the usual Azure ML variables).
SCOPE_ENV = {
    "subscription": "AZURE_SUBSCRIPTION_ID",
    "resource_group": "AZURE_RESOURCE_GROUP",
    "workspace": "AZUREML_WORKSPACE_NAME",
}

_LONG = re.compile(
    r"azureml://subscriptions/(?P<subscription>[^/]+)/resourcegroups/(?P<resource_group>[^/]+)"
    r"/workspaces/(?P<workspace>[^/]+)/datastores/(?P<datastore>[^/]+)/paths/(?P<path>.+)",
    re.IGNORECASE,
)
_SHORT = re.compile(r"azureml://datastores/(?P<datastore>[^/]+)/paths/(?P<path>.+)")


@dataclass(frozen=True)
class DatastorePath:
    subscription: str
    resource_group: str
    workspace: str
    datastore: str
    path: str


def parse(uri: str, env: dict[str, str] | None = None) -> DatastorePath:
    env = dict(os.environ) if env is None else env
    match = _LONG.fullmatch(uri) or _SHORT.fullmatch(uri)
    if match is None:
        raise RecipeInputError(
            Problem(
                "not an Azure ML datastore URI",
                file=uri,
                hint="azureml://datastores/NAME/paths/PATH, or the long form with "
                "subscriptions/…/resourcegroups/…/workspaces/…",
            )
        )
    parts = match.groupdict()
    missing = [var for key, var in SCOPE_ENV.items() if not (parts.get(key) or env.get(var))]
    if missing:
        raise RecipeInputError(
            Problem(
                f"the short form needs the workspace from {', '.join(missing)}",
                file=uri,
                hint="set them, or use the long azureml://subscriptions/... form",
            )
        )
    scope = {key: parts.get(key) or env[var] for key, var in SCOPE_ENV.items()}
    return DatastorePath(**scope, datastore=parts["datastore"], path=parts["path"])


def split_uri(uri: str) -> tuple[str, str]:
    """azureml://datastores/D/paths/P -> (D, P)."""
    rest = uri[len("azureml://datastores/") :]
    datastore, _, path = rest.partition("/paths/")
    return datastore, path


class DatastoreStorage:
    """The submit pipeline's Storage on the workspace's datastores; the run's tags go in
    as blob metadata (metadata names must be C# identifiers: other characters become _)."""

    where = "the datastore, tagged with this run's tags"

    def __init__(self, client: Any):
        self.client = client
        self._containers: dict[str, Any] = {}

    def container(self, datastore: str) -> Any:
        if datastore not in self._containers:
            endpoint = os.environ.get(BLOB_ENDPOINT_ENV)
            self._containers[datastore] = sdk.container_client(self.client, datastore, endpoint)
        return self._containers[datastore]

    def _blob(self, uri: str) -> Any:
        datastore, path = split_uri(uri)
        return self.container(datastore).get_blob_client(path)

    def exists(self, uri: str, sha256: str) -> bool:
        blob = self._blob(uri)
        props = unless_missing(lambda: sdk.call(blob.get_blob_properties, f"read {uri}"))
        return props is not None and props.metadata.get("sha256") == sha256

    def put(self, body: dict[str, Any], data: bytes) -> None:
        uri = body["uri"]
        metadata = dict(body["metadata"])
        if body.get("sha256"):
            metadata["sha256"] = body["sha256"]
        blob = self._blob(uri)
        sdk.call(lambda: blob.upload_blob(data, overwrite=True, metadata=metadata), f"upload {uri}")

    def delete(self, uri: str) -> None:
        datastore, path = split_uri(uri)
        sdk.call(lambda: self.container(datastore).delete_blob(path), f"delete {uri}")

    def names(self, datastore: str, prefix: str) -> list[str]:
        """Blob names under a prefix (List Blobs)."""
        container = self.container(datastore)
        listing = lambda: [b.name for b in container.list_blobs(name_starts_with=prefix)]  # noqa: E731
        return sdk.call(listing, f"list {prefix}")

    def read_text(self, datastore: str, path: str) -> str:
        """A blob's text, or "" when it does not exist (yet)."""
        blob = self.container(datastore).get_blob_client(path)
        data = unless_missing(lambda: sdk.call(lambda: blob.download_blob().readall(), "read logs"))
        return data.decode("utf-8", errors="replace") if data else ""


def blob_metadata(tags: dict[str, str]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The run's tags as blob metadata: names must be C# identifiers (Azure Storage,
    "Naming and referencing containers, blobs, and metadata"), so others become _."""
    metadata = {_identifier(key): value for key, value in tags.items()}
    return {"metadata": metadata}, ()


def _identifier(name: str) -> str:
    """A C# identifier: letters, digits and _, not starting with a digit."""
    name = re.sub(r"\W", "_", name, flags=re.ASCII)
    return f"_{name}" if name[:1].isdigit() else name


def download(uri: str, directory: Path, ml_client: Any = None) -> Path:
    """Fetch the file at `uri` into `directory`; `ml_client` is injected by tests."""
    where = parse(uri)
    client = ml_client or sdk.ml_client(where.subscription, where.resource_group, where.workspace)
    target = directory / Path(where.path).name

    def fetch() -> None:
        blob = DatastoreStorage(client).container(where.datastore).get_blob_client(where.path)
        with target.open("wb") as out:
            sdk.call(lambda: blob.download_blob().readinto(out), f"read {uri}")

    missing = f"no such object (datastore '{where.datastore}')"
    return fetch_file(uri, target, fetch, missing)
