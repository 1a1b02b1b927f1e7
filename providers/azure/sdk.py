"""The only module that imports Azure's SDKs (azure-ai-ml, azure-identity, azure-storage-blob).

Imports are lazy, so planning needs no login; a missing extra is one typed error.
Every SDK exception leaves this module as a ProviderError with a kind, from the
exception's class and HTTP status (azure.core.exceptions), never from message text.
The SDK's noise (import-time marshmallow warnings, "experimental class" notices,
the credential chain's per-credential warnings) is kept off the user's terminal.
"""

from __future__ import annotations

import contextlib
import io
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


# --- managed online endpoints ----------------------------------------------------------------
# Bodies are built with azure-ai-ml's entities and serialized by its own REST models (as for
# jobs), so a plan shows what the SDK PUTs; deploy rebuilds the entities from the planned
# bodies and hands them to the SDK's operations.


def _rest(obj: Any) -> dict[str, Any]:
    from azure.ai.ml._restclient.arm_ml_service._utils.model_base import SdkJSONEncoder

    return json.loads(json.dumps(obj, cls=SdkJSONEncoder, exclude_readonly=True))


def model_body(name: str, version: str, path: str, tags: dict[str, str], description: str) -> Any:
    """A workspace model version over a job's output (type custom_model: a folder)."""
    ml()
    from azure.ai.ml.entities import Model

    entity = Model(
        name=name,
        version=version,
        path=path,
        type="custom_model",
        tags=tags,
        description=description,
    )
    return _rest(entity._to_rest_object())


def environment_body(
    name: str,
    version: str,
    context_uri: str,
    routes: dict[str, dict[str, Any]],
    tags: dict[str, str],
    description: str,
) -> dict[str, Any]:
    """An environment built from a Docker build context, with the inference routes of a
    custom container (liveness, readiness, scoring)."""
    ml()
    from azure.ai.ml.entities import BuildContext, Environment

    with quiet():
        entity = Environment(
            name=name,
            version=version,
            build=BuildContext(path=context_uri, dockerfile_path="Dockerfile"),
            inference_config=routes,
            tags=tags,
            description=description,
        )
    return _rest(entity._to_rest_object())


def online_endpoint_body(
    name: str, location: str, traffic: dict[str, int], tags: dict[str, str], description: str
) -> dict[str, Any]:
    """A managed online endpoint with key auth (the key is fetched at invoke time)."""
    ml()
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    entity = ManagedOnlineEndpoint(
        name=name, auth_mode="key", traffic=traffic, tags=tags, description=description
    )
    return _rest(entity._to_rest_online_endpoint(location=location))


def online_deployment_body(location: str, **kwargs: Any) -> dict[str, Any]:
    """A managed online deployment: model, environment, instances, env, request settings,
    probes (kwargs are ManagedOnlineDeployment's, with plain dicts for the settings)."""
    ml()
    from azure.ai.ml.entities import (
        DefaultScaleSettings,
        ManagedOnlineDeployment,
        OnlineRequestSettings,
        ProbeSettings,
    )

    # Managed deployments scale by Default only (TargetUtilization is for Kubernetes
    # online endpoints: azure-ai-ml's OnlineScaleSettings); the instance count is the sku's.
    kwargs["scale_settings"] = DefaultScaleSettings()
    kwargs["request_settings"] = OnlineRequestSettings(**kwargs["request_settings"])
    for probe in ("liveness_probe", "readiness_probe"):
        kwargs[probe] = ProbeSettings(**kwargs[probe])
    with quiet():
        entity = ManagedOnlineDeployment(**kwargs)
    return _rest(entity._to_rest_object(location=location))


def _versioned_id(arm: str, kind: str, name: str, version: str) -> str:
    return f"{arm}/{kind}/{name}/versions/{version}"


@contextlib.contextmanager
def _no_dots() -> Iterator[None]:
    """AzureMLPolling prints a dot to stdout on every poll; not for the user's terminal."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _missing(fn: Callable[[], T], what: str) -> T | None:
    """The call's answer, or None when Azure answers 404."""
    try:
        return call(fn, what)
    except ProviderError as exc:
        if exc.kind == ErrorKind.NOT_FOUND:
            return None
        raise


def get_model(client: Any, name: str, version: str) -> Any:
    return _missing(lambda: client.models.get(name, version=version), f"get model {name}:{version}")


def create_model(client: Any, arm: str, name: str, version: str, body: dict[str, Any]) -> None:
    """Register the planned model version (the entity again from the body's fields: the
    SDK's own reader expects the flavors a service answer carries)."""
    ml()
    from azure.ai.ml.entities import Model

    props = body["properties"]
    entity = Model(
        name=name,
        version=version,
        path=props["modelUri"],
        type=props["modelType"],
        tags=props.get("tags") or {},
        properties=props.get("properties") or {},
        description=props.get("description"),
    )
    call(lambda: client.models.create_or_update(entity), f"register model {name}:{version}")


def delete_model(client: Any, name: str, version: str) -> None:
    ops = client.models._model_versions_operation  # the SDK offers archive only; ARM deletes
    _missing(
        lambda: ops.delete(client.resource_group_name, client.workspace_name, name, version),
        f"delete model {name}:{version}",
    )


def model_versions(client: Any, name: str) -> list[str]:
    found = _missing(lambda: list(client.models.list(name=name)), f"list model {name}")
    return [m.version for m in found or ()]


def get_environment(client: Any, name: str, version: str) -> Any:
    return _missing(
        lambda: client.environments.get(name, version=version), f"get environment {name}:{version}"
    )


def create_environment(
    client: Any, arm: str, name: str, version: str, body: dict[str, Any]
) -> None:
    ml()
    from azure.ai.ml._restclient.arm_ml_service.models import EnvironmentVersion
    from azure.ai.ml.entities import Environment

    rest = EnvironmentVersion({**body, "id": _versioned_id(arm, "environments", name, version)})
    with quiet():
        entity = Environment._from_rest_object(rest)
    call(
        lambda: client.environments.create_or_update(entity),
        f"create environment {name}:{version}",
    )


def delete_environment(client: Any, name: str, version: str) -> None:
    ops = client.environments._version_operations  # archive only in the SDK; ARM deletes
    _missing(
        lambda: ops.delete(client.resource_group_name, client.workspace_name, name, version),
        f"delete environment {name}:{version}",
    )


def environment_versions(client: Any, name: str) -> list[str]:
    found = _missing(lambda: list(client.environments.list(name=name)), f"list environment {name}")
    return [e.version for e in found or ()]


def workspace_location(client: Any) -> str:
    return str(
        call(lambda: client.workspaces.get(client.workspace_name).location, "get the workspace")
    )


def get_endpoint(client: Any, name: str) -> Any:
    return _missing(lambda: client.online_endpoints.get(name), f"get endpoint {name}")


def put_endpoint(client: Any, arm_id: str, body: dict[str, Any]) -> Any:
    """Create or update the endpoint from its planned body and wait until ARM is done."""
    ml()
    from azure.ai.ml._restclient.arm_ml_service.models import OnlineEndpoint as RestEndpoint
    from azure.ai.ml.entities import OnlineEndpoint

    name = arm_id.rsplit("/", 1)[-1]
    entity = OnlineEndpoint._from_rest_object(RestEndpoint({**body, "id": arm_id, "name": name}))
    with _no_dots():
        return call(
            lambda: client.online_endpoints.begin_create_or_update(entity).result(),
            f"create or update endpoint {name}",
        )


def delete_endpoint(client: Any, name: str) -> None:
    with _no_dots():
        _missing(
            lambda: client.online_endpoints.begin_delete(name=name).result(),
            f"delete endpoint {name}",
        )


def get_deployment(client: Any, endpoint: str, name: str) -> Any:
    return _missing(
        lambda: client.online_deployments.get(name, endpoint_name=endpoint),
        f"get deployment {name} of {endpoint}",
    )


def put_deployment(client: Any, arm_id: str, body: dict[str, Any]) -> Any:
    ml()
    from azure.ai.ml._restclient.arm_ml_service.models import OnlineDeployment as RestDeployment
    from azure.ai.ml.entities import OnlineDeployment

    with quiet():
        entity = OnlineDeployment._from_rest_object(
            RestDeployment({**body, "id": arm_id, "name": arm_id.rsplit("/", 1)[-1]})
        )
    endpoint, name = entity.endpoint_name, entity.name
    with _no_dots():
        return call(
            lambda: client.online_deployments.begin_create_or_update(entity).result(),
            f"create deployment {name} of {endpoint}",
        )


def deployment_names(client: Any, endpoint: str) -> list[str]:
    """The names of the endpoint's deployments (none when the endpoint is absent)."""
    found = _missing(
        lambda: list(client.online_deployments.list(endpoint_name=endpoint)),
        f"list the deployments of {endpoint}",
    )
    return [d.name for d in found or ()]


def delete_deployment(client: Any, endpoint: str, name: str) -> None:
    with _no_dots():
        _missing(
            lambda: client.online_deployments.begin_delete(name, endpoint_name=endpoint).result(),
            f"delete deployment {name} of {endpoint}",
        )


def endpoint_key(client: Any, name: str) -> str:
    """The endpoint's primary key (auth_mode key), fetched for one call and never kept."""
    keys = call(lambda: client.online_endpoints.get_keys(name), f"get the keys of {name}")
    return str(keys.primary_key)


def post_json(
    client: Any, url: str, body: dict[str, Any], headers: dict[str, str], what: str
) -> dict[str, Any]:
    """POST through the MLClient's own HTTP pipeline (what online_endpoints.invoke uses);
    an error answer becomes a ProviderError that names the status, never the headers."""
    from azure.ai.ml._utils._endpoint_utils import validate_response

    pipeline = client.online_endpoints._requests_pipeline
    response = call(lambda: pipeline.post(url, json=body, headers=headers), what)
    call(lambda: validate_response(response), what)
    return dict(json.loads(response.text()))


# --- releases: traffic shares and Azure Monitor metrics -------------------------------------


def set_traffic(client: Any, name: str, weights: dict[str, int]) -> Any:
    """The endpoint's live traffic map, set as Azure ML's safe rollout does it: the endpoint
    read back, its `traffic` replaced, and the endpoint PUT again (online_endpoints.
    begin_create_or_update; "Perform safe rollout of new deployments for real-time
    inference", learn.microsoft.com: `endpoint.traffic = {"blue": 90, "green": 10}`). The
    SDK drops the 0 entries before the PUT (_strip_zeroes_from_traffic), as ARM keeps them."""
    entity = call(lambda: client.online_endpoints.get(name), f"get endpoint {name}")
    entity.traffic = dict(weights)
    with _no_dots():
        return call(
            lambda: client.online_endpoints.begin_create_or_update(entity).result(),
            f"set the traffic of endpoint {name} to {weights}",
        )


def arm_get(client: Any, path: str, params: dict[str, str], what: str) -> dict[str, Any]:
    """GET an ARM path (e.g. a resource's /providers/Microsoft.Insights/metrics) through the
    MLClient's own ARM pipeline: its credential (ARMChallengeAuthenticationPolicy), retries
    and base URL (the cloud's resource manager, or AZUREML_DEV_URL_MFE), as its operations do."""
    from azure.core.exceptions import map_error
    from azure.core.rest import HttpRequest

    arm = client._service_client_02_2022_preview  # MachineLearningServicesMgmtClient

    def get() -> dict[str, Any]:
        response = arm.send_request(HttpRequest("GET", "{endpoint}" + path, params=params))
        if response.status_code != 200:
            from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

            map_error(response.status_code, response, {404: ResourceNotFoundError})
            raise HttpResponseError(response=response)
        return dict(response.json())

    return call(get, what)


# --- Cost Management: the Query API (recipe cost report azure-cost:SCOPE) -------------------
# azure-mgmt-costmanagement's QueryOperations.usage (POST {scope}/providers/
# Microsoft.CostManagement/query, api-version 2025-03-01): the body is its QueryDefinition
# model, the answer its QueryResult (properties.columns, .rows, .nextLink). usage() does not
# follow nextLink; the next page is the same POST with nextLink's $skiptoken (REST reference
# "Query - Usage", learn.microsoft.com/rest/api/cost-management/query/usage). 429 answers
# are retried by azure-core's RetryPolicy, which waits what Retry-After says.


def cost_client(base_url: str | None = None, credential: Any = None, **kwargs: Any) -> Any:
    """A CostManagementClient logged in through DefaultAzureCredential (or `credential`);
    `base_url` and pipeline kwargs (retry_total, per_call_policies) point it elsewhere."""
    try:
        from azure.mgmt.costmanagement import CostManagementClient
    except ImportError:
        raise missing_extra("azure", "azure-mgmt-costmanagement") from None
    if credential is None:
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError:
            raise missing_extra("azure", "azure-identity") from None
        credential = DefaultAzureCredential()
    return CostManagementClient(credential, base_url=base_url, **kwargs)


def cost_query_body(
    kind: str, start: Any, end: Any, aggregate: str, groupings: list[tuple[str, str]]
) -> dict[str, Any]:
    """The JSON of a QueryDefinition: `kind` ActualCost or AmortizedCost, Custom timeframe
    from `start` to `end` (datetimes, both inclusive), daily, the Sum of `aggregate` as
    totalCost, grouped by (type, name) pairs (TagKey or Dimension; the API takes two)."""
    try:
        from azure.mgmt.costmanagement import models
    except ImportError:
        raise missing_extra("azure", "azure-mgmt-costmanagement") from None
    definition = models.QueryDefinition(
        type=kind,
        timeframe=models.TimeframeType.CUSTOM,
        time_period=models.QueryTimePeriod(from_property=start, to=end),
        dataset=models.QueryDataset(
            granularity=models.GranularityType.DAILY,
            aggregation={
                "totalCost": models.QueryAggregation(
                    name=aggregate, function=models.FunctionType.SUM
                )
            },
            grouping=[models.QueryGrouping(type=t, name=n) for t, n in groupings],
        ),
    )
    return dict(definition.as_dict())


def cost_query(
    client: Any, scope: str, body: dict[str, Any], skiptoken: str | None = None
) -> dict[str, Any]:
    """One page of the Query API: {"columns": [...], "rows": [...], "nextLink": ...}."""
    from azure.mgmt.costmanagement import models

    params = {"$skiptoken": skiptoken} if skiptoken else {}
    result = call(
        lambda: client.query.usage(scope, models.QueryDefinition(body), params=params),
        f"query the costs of {scope}",
    )
    if result is None or result.properties is None:  # 204: nothing in the period
        return {"columns": [], "rows": [], "nextLink": None}
    return dict(result.properties.as_dict())


# --- account bootstrap (recipe infra): ARM deployments and reads ----------------------------
# azure-mgmt-resource 25 moved Deployments out of ResourceManagementClient into
# azure-mgmt-resource-deployments' DeploymentsMgmtClient (its changelog, 25.0.0: "If you called
# ResourceManagementClient(...).deployments.xx(...) before, just need to change to
# DeploymentsMgmtClient(...).deployments.xx(...)"); reads stay on ResourceManagementClient
# (resources.get_by_id with the resource type's api-version, and its pipeline for lists).


def _credential(credential: Any) -> Any:
    if credential is not None:
        return credential
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise missing_extra("azure", "azure-identity") from None
    return DefaultAzureCredential()


def deployments_client(
    subscription: str, base_url: str | None = None, credential: Any = None, **kwargs: Any
) -> Any:
    """A DeploymentsMgmtClient of the subscription (DefaultAzureCredential unless given);
    `base_url` and pipeline kwargs point it elsewhere (tests)."""
    try:
        from azure.mgmt.resource.deployments import DeploymentsMgmtClient
    except ImportError:
        raise missing_extra("azure", "azure-mgmt-resource-deployments") from None
    return DeploymentsMgmtClient(_credential(credential), subscription, base_url=base_url, **kwargs)


def resources_client(
    subscription: str, base_url: str | None = None, credential: Any = None, **kwargs: Any
) -> Any:
    """A ResourceManagementClient of the subscription, for generic reads."""
    try:
        from azure.mgmt.resource.resources import ResourceManagementClient
    except ImportError:
        raise missing_extra("azure", "azure-mgmt-resource") from None
    return ResourceManagementClient(
        _credential(credential), subscription, base_url=base_url, **kwargs
    )


def deploy_at_subscription(
    client: Any, name: str, body: dict[str, Any], timeout_s: float
) -> dict[str, Any]:
    """PUT a subscription-scope deployment (the body as given) and wait for ARM, at most
    `timeout_s`; its outputs ({name: value}). A failed deployment names ARM's reasons (the
    error's details: each failed resource's code and message)."""
    from azure.core import exceptions

    what = f"deploy {name}"
    poller = call(
        lambda: client.deployments.begin_create_or_update_at_subscription_scope(name, body), what
    )
    try:
        with quiet():
            poller.wait(timeout=timeout_s)
    except exceptions.HttpResponseError as exc:
        raise ProviderError(
            f"ARM deployment {name} failed: {_arm_reason(exc)}", kind_for_status(exc.status_code)
        ) from None
    if not poller.done():
        raise ProviderError(
            f"ARM deployment {name} still running after {timeout_s:.0f} s; ARM goes on with it: "
            f"`az deployment sub show -n {name}` tells how it ended",
            ErrorKind.API,
        )
    result = call(poller.result, what)
    outputs = (result.properties.outputs or {}) if result and result.properties else {}
    return {k: (v.get("value") if isinstance(v, dict) else v) for k, v in outputs.items()}


def _arm_reason(exc: Any) -> str:
    """ARM's error and its details (a deployment's failed resources), one line."""
    error = getattr(exc, "error", None)
    if error is None:
        return first_line(exc)
    parts = [f"{error.code}: {error.message}".strip()]
    for detail in getattr(error, "details", None) or []:
        parts.append(f"{detail.code}: {detail.message}".strip())
    return "; ".join(p.splitlines()[0] for p in parts if p)


def arm_resource(client: Any, resource_id: str, api_version: str) -> dict[str, Any] | None:
    """One resource by id (resources.get_by_id), as ARM's JSON; None when absent."""
    found = _missing(
        lambda: client.resources.get_by_id(resource_id, api_version=api_version),
        f"read {resource_id}",
    )
    return None if found is None else dict(found.as_dict())


def arm_list(
    client: Any, path: str, api_version: str, params: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every item of an ARM list (`value`, following nextLink) through the client's own
    pipeline: its credential, retries and base URL. A missing parent answers no items."""
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, map_error
    from azure.core.rest import HttpRequest

    def get(url: str, query: dict[str, str]) -> dict[str, Any]:
        response = client.send_request(HttpRequest("GET", url, params=query))
        if response.status_code != 200:
            map_error(response.status_code, response, {404: ResourceNotFoundError})
            raise HttpResponseError(response=response)
        return dict(response.json())

    items: list[dict[str, Any]] = []
    url, query = path, {"api-version": api_version, **(params or {})}
    for _ in range(100):  # pages; ARM lists of one scope are short
        page = _missing(lambda u=url, q=query: get(u, q), f"list {path}")
        if page is None:
            return items
        items.extend(page.get("value") or [])
        url, query = page.get("nextLink") or "", {}
        if not url:
            return items
    return items
