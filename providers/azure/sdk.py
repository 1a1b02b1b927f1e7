"""The only module that imports Azure's SDKs (azure-ai-ml, azure-identity, azure-storage-blob).

Imports are lazy, so planning needs no login; a missing extra is one typed error.
Every SDK exception leaves this module as a ProviderError with a kind, from the
exception's class and HTTP status (azure.core.exceptions), never from message text.
The SDK's noise (import-time marshmallow warnings, "experimental class" notices,
the credential chain's per-credential warnings) is kept off the user's terminal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from recipes.errors import ErrorKind, ProviderError, kind_for_status, missing_extra

T = TypeVar("T")
API_VERSION = "2025-01-01-preview"  # what azure-ai-ml uses for command jobs
LOGIN_HINT = "run `az login`, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """azure-ai-ml's import-time and per-call warnings and logs are not for the user."""
    # Credential-chain warnings and HTTP details are logged at WARNING by azure.*.
    logging.getLogger("azure").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def ml() -> Any:
    """The azure.ai.ml module."""
    try:
        with quiet():
            import azure.ai.ml as module
    except ImportError:
        raise missing_extra("azure", "azure-ai-ml") from None
    return module


def ml_client(subscription: str, resource_group: str, workspace: str) -> Any:
    """An MLClient for a workspace, logged in through DefaultAzureCredential."""
    sdk = ml()
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise missing_extra("azure", "azure-identity") from None
    with quiet():
        return sdk.MLClient(
            DefaultAzureCredential(),
            subscription,
            resource_group,
            workspace,
            enable_telemetry=False,
        )


def call(fn: Callable[[], T], what: str) -> T:
    """One Azure call; a missing login or an API refusal becomes one typed line."""
    from azure.core import exceptions

    try:
        with quiet():
            return fn()
    except exceptions.ClientAuthenticationError as exc:
        raise ProviderError(
            f"Azure login failed ({first_line(exc)}); {LOGIN_HINT}", ErrorKind.AUTH
        ) from None
    except exceptions.HttpResponseError as exc:
        kind = kind_for_status(exc.status_code)
        raise ProviderError(
            f"could not {what}: {exc.status_code} {first_line(exc)}", kind
        ) from None
    except exceptions.ServiceRequestError as exc:
        raise ProviderError(
            f"could not {what}: cannot reach Azure ({first_line(exc)})", ErrorKind.UNREACHABLE
        ) from None


def first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", "") or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- datastores and blobs --------------------------------------------------------------------


def container_client(client: Any, datastore: str, account_url: str | None = None) -> Any:
    """The datastore's blob container, resolved as azure-ai-ml does (datastore GET, then
    listSecrets for a credential); `account_url` points blob calls elsewhere (Azurite, tests)."""
    ml()
    from azure.ai.ml._artifacts._artifact_utilities import get_datastore_info
    from azure.storage.blob import ContainerClient

    extra = {"account_url": account_url} if account_url else {}
    info = call(
        lambda: get_datastore_info(client.datastores, datastore, **extra),
        f"resolve datastore {datastore}",
    )
    return ContainerClient(
        account_url=info["account_url"],
        container_name=info["container_name"],
        credential=info["credential"],
    )


# --- command jobs ----------------------------------------------------------------------------


def command_job(**kwargs: Any) -> Any:
    """azure.ai.ml.command(...) with its resources and the git provenance the SDK adds at
    submit, recorded here so the plan equals what is sent."""
    sdk = ml()
    from azure.ai.ml.entities import JobResourceConfiguration
    from azure.ai.ml.operations._job_ops_helper import get_git_properties

    instance_type = kwargs.pop("instance_type")
    inputs = {
        key: sdk.Input(type="uri_file", path=uri) for key, uri in kwargs.pop("inputs").items()
    }
    outputs = {key: sdk.Output(type="uri_folder") for key in kwargs.pop("outputs")}
    with quiet():
        job = sdk.command(inputs=inputs, outputs=outputs, **kwargs)
    job.resources = JobResourceConfiguration(
        instance_count=kwargs["instance_count"], instance_type=instance_type
    )
    job.properties = {**job.properties, **get_git_properties()}
    return job


def rest_body(job: Any) -> dict[str, Any]:
    """The exact JSON azure-ai-ml PUTs for a job (its own serializer)."""
    from azure.ai.ml._restclient.arm_ml_service._utils.model_base import SdkJSONEncoder
    from azure.ai.ml.entities._job.to_rest_functions import to_rest_job_object

    rest = to_rest_job_object(job)
    return json.loads(json.dumps(rest, cls=SdkJSONEncoder, exclude_readonly=True))


def job_from_rest(body: dict[str, Any], name: str) -> Any:
    """The job entity again from the planned body: submit sends what plan showed."""
    ml()
    from azure.ai.ml._restclient.arm_ml_service.models import JobBase
    from azure.ai.ml.entities import Command, Job

    with quiet():
        job = Job._from_rest_object(JobBase({**body, "name": name}))
    if not isinstance(job, Command):
        raise ProviderError(f"the planned Azure ML job is a {type(job).__name__}, not a command")
    return job
