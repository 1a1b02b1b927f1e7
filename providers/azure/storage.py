"""Read one file named by an `azureml://` datastore URI, through azure-ai-ml.

Two forms are accepted:
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
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers.base import ProviderError
from recipes.errors import Problem, RecipeInputError

_LONG = re.compile(
    r"azureml://subscriptions/(?P<subscription>[^/]+)/resourcegroups/(?P<resource_group>[^/]+)"
    r"/workspaces/(?P<workspace>[^/]+)/datastores/(?P<datastore>[^/]+)/paths/(?P<path>.+)",
    re.IGNORECASE,
)
_SHORT = re.compile(r"azureml://datastores/(?P<datastore>[^/]+)/paths/(?P<path>.+)")
_SCOPE_ENV = {
    "subscription": "AZURE_SUBSCRIPTION_ID",
    "resource_group": "AZURE_RESOURCE_GROUP",
    "workspace": "AZUREML_WORKSPACE_NAME",
}


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
    missing = [var for key, var in _SCOPE_ENV.items() if not (parts.get(key) or env.get(var))]
    if missing:
        raise RecipeInputError(
            Problem(
                f"the short form needs the workspace from {', '.join(missing)}",
                file=uri,
                hint="set them, or use the long azureml://subscriptions/... form",
            )
        )
    scope = {key: parts.get(key) or env[var] for key, var in _SCOPE_ENV.items()}
    return DatastorePath(**scope, datastore=parts["datastore"], path=parts["path"])


def download(uri: str, directory: Path, ml_client: Any = None) -> Path:
    """Fetch the file at `uri` into `directory`; `ml_client` is injected by tests."""
    where = parse(uri)
    try:
        with warnings.catch_warnings():  # azure-ai-ml's import-time marshmallow noise
            warnings.simplefilter("ignore")
            from azure.ai.ml._artifacts._artifact_utilities import get_datastore_info
        from azure.core import exceptions
        from azure.storage.blob import BlobClient
    except ImportError:
        raise RecipeInputError(
            Problem("reading azureml:// needs pip install '.[azure]'", file=uri)
        ) from None
    target = directory / Path(where.path).name
    try:
        client = ml_client or _ml_client(where)
        override = os.environ.get("RECIPE_AZURE_BLOB_ENDPOINT")
        # azure-ai-ml's own resolution: datastore GET, then listSecrets for a credential.
        info = get_datastore_info(
            client.datastores, where.datastore, **({"account_url": override} if override else {})
        )
        blob = BlobClient(
            account_url=info["account_url"],
            container_name=info["container_name"],
            blob_name=where.path,
            credential=info["credential"],
        )
        with target.open("wb") as out:
            blob.download_blob().readinto(out)
    except exceptions.ResourceNotFoundError:
        target.unlink(missing_ok=True)
        raise RecipeInputError(
            Problem(f"no such object (datastore '{where.datastore}')", file=uri)
        ) from None
    except exceptions.ClientAuthenticationError as exc:
        target.unlink(missing_ok=True)
        raise ProviderError(
            f"Azure login failed reading {uri}: {_first_line(exc)} (run `az login`, or set "
            "AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET)"
        ) from None
    except exceptions.HttpResponseError as exc:
        target.unlink(missing_ok=True)
        raise ProviderError(
            f"Azure ML refused {uri}: {exc.status_code} {_first_line(exc)}"
        ) from None
    return target


def _ml_client(where: DatastorePath) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    return MLClient(
        DefaultAzureCredential(),
        where.subscription,
        where.resource_group,
        where.workspace,
        enable_telemetry=False,
    )


def _first_line(exc: BaseException) -> str:
    return (str(getattr(exc, "message", "") or exc).strip().splitlines() or [""])[0]
