"""Azure ML for the real MLClient and azure-storage-blob: an HTTP fake of the ARM
workspace API (jobs: get, put, list, cancel; datastores: get, listSecrets) and of Blob
storage (head, put, ranged get, delete), with the bodies and headers Azure answers
(x-ms-error-code, Retry-After, Content-Range, x-ms-meta-*).
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import unquote

import pytest

from tests.fakes.http import FakeServer, Reply, Seen, Served, json_reply

SUB = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "rg-ml"
WORKSPACE = "ws-ml"
WS_PATH = (
    f"/subscriptions/{SUB}/resourceGroups/{RESOURCE_GROUP}/providers/"
    f"Microsoft.MachineLearningServices/workspaces/{WORKSPACE}"
)
ACCOUNT = "stml"  # the workspace's storage account
LAST_MODIFIED = "Sun, 22 Nov 2026 10:00:00 GMT"
# azure-core waits what Retry-After says (seconds, fractions accepted), else backs off 0.8 s
# and more; Azure sends Retry-After with 429 and 503 only, and azure-core retries any
# answer that carries it.
RETRY_AFTER = "0.01"


def _code(status: int) -> str:
    return {
        401: "AuthenticationFailed",
        403: "AuthorizationFailed",
        404: "NotFound",
        429: "TooManyRequests",
    }.get(status, "InternalServerError")


class FakeAzureML(Served):
    """Jobs, datastores and blobs; `fail["METHOD path-regex"]` queues error statuses."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.blobs: dict[str, bytes] = {}  # "container/blob" -> bytes
        self.meta: dict[str, dict[str, str]] = {}  # "container/blob" -> x-ms-meta-*
        self.fail: dict[str, list[int]] = {}  # "METHOD path-regex" -> statuses to answer first
        self.server = FakeServer()
        r = self.server.route
        base = re.escape(WS_PATH)
        r("GET", base + r"/jobs", self.list_jobs)
        r("GET", base + r"/jobs/(?P<name>[^/]+)", self.get_job)
        r("PUT", base + r"/jobs/(?P<name>[^/]+)", self.put_job)
        r("POST", base + r"/jobs/(?P<name>[^/]+)/cancel", self.cancel_job)
        r("GET", base + r"/datastores/(?P<name>[^/]+)", self.datastore)
        r("POST", base + r"/datastores/(?P<name>[^/]+)/listSecrets", self.secrets)
        blob = rf"/{ACCOUNT}/(?P<container>[^/]+)/(?P<blob>.+)"
        r("GET", rf"^/{ACCOUNT}/(?P<container>[^/]+)$", self.list_blobs)
        r("HEAD", blob, self.head_blob)
        r("PUT", blob, self.put_blob)
        r("GET", blob, self.get_blob)
        r("DELETE", blob, self.delete_blob)
        original = self.server.dispatch

        def dispatch(request: Seen) -> Reply:
            for key, statuses in self.fail.items():
                method, pattern = key.split(" ", 1)
                if request.method == method and re.search(pattern, request.path) and statuses:
                    status = statuses.pop(0)
                    headers = {"x-ms-error-code": _code(status)}
                    if status in (429, 503):  # only these tell the client when to come back
                        headers["Retry-After"] = RETRY_AFTER
                    return json_reply(
                        status,
                        {"error": {"code": _code(status), "message": f"fake {status} answer"}},
                        headers,
                    )
            return original(request)

        self.server.dispatch = dispatch  # type: ignore[method-assign]

    def job_puts(self) -> list[Seen]:
        return self.seen("PUT", r"/jobs/[^/]+$")

    def blob_puts(self) -> list[Seen]:
        return self.seen("PUT", rf"^/{ACCOUNT}/")

    def stored(self) -> dict[str, tuple[bytes, dict[str, str]]]:
        """azureml://datastores/D/paths/P -> (bytes, metadata) of every blob."""
        found = {}
        for key, data in self.blobs.items():
            container, path = key.split("/", 1)
            datastore = container.removeprefix("azureml-")
            found[f"azureml://datastores/{datastore}/paths/{path}"] = (data, self.meta.get(key, {}))
        return found

    # jobs
    def list_jobs(self, _: Seen, __: re.Match[str]) -> Reply:
        return json_reply(200, {"value": list(self.jobs.values())})

    def get_job(self, _: Seen, match: re.Match[str]) -> Reply:
        job = self.jobs.get(match["name"])
        if job is None:
            return json_reply(
                404,
                {"error": {"code": "UserError", "message": f"Job {match['name']} not found."}},
                {"x-ms-error-code": "UserError"},
            )
        return json_reply(200, job)

    def put_job(self, request: Seen, match: re.Match[str]) -> Reply:
        body = request.json()
        body.update(
            id=request.path,
            name=match["name"],
            type="Microsoft.MachineLearningServices/workspaces/jobs",
        )
        body["properties"]["status"] = "NotStarted"
        self.jobs[match["name"]] = body
        return json_reply(201, body)

    def cancel_job(self, _: Seen, match: re.Match[str]) -> Reply:
        self.set_status(match["name"], "CancelRequested")
        return 202, {}, b""

    def set_status(self, name: str, status: str) -> None:
        """The job's status as Azure ML reports it (NotStarted, Queued, ..., Canceled)."""
        self.jobs[name]["properties"]["status"] = status

    # datastores
    def datastore(self, request: Seen, match: re.Match[str]) -> Reply:
        name = match["name"]
        return json_reply(
            200,
            {
                "id": request.path,
                "name": name,
                "type": "Microsoft.MachineLearningServices/workspaces/datastores",
                "properties": {
                    "datastoreType": "AzureBlob",
                    "accountName": ACCOUNT,
                    "containerName": f"azureml-{name}",
                    "endpoint": "core.windows.net",
                    "protocol": "https",
                    "credentials": {"credentialsType": "Sas"},
                    "isDefault": name == "workspaceblobstore",
                    "tags": {},
                    "properties": {},
                },
            },
        )

    def secrets(self, _: Seen, __: re.Match[str]) -> Reply:
        return json_reply(
            200, {"secretsType": "Sas", "sasToken": "sv=2025-01-05&sr=c&sig=not-a-secret"}
        )

    # blobs
    def head_blob(self, _: Seen, match: re.Match[str]) -> Reply:
        key = f"{match['container']}/{match['blob']}"
        if key not in self.blobs:
            return 404, {"x-ms-error-code": "BlobNotFound"}, b""
        headers = {
            "Content-Length": str(len(self.blobs[key])),
            "x-ms-blob-type": "BlockBlob",
            "ETag": '"0x1"',
            "Last-Modified": LAST_MODIFIED,
        }
        headers.update({f"x-ms-meta-{k}": v for k, v in self.meta.get(key, {}).items()})
        return 200, headers, b""

    def put_blob(self, request: Seen, match: re.Match[str]) -> Reply:
        key = f"{match['container']}/{match['blob']}"
        self.blobs[key] = request.body
        self.meta[key] = {
            k[len("x-ms-meta-") :]: v
            for k, v in request.headers.items()
            if k.startswith("x-ms-meta-")
        }
        return 201, {"ETag": '"0x1"', "Last-Modified": LAST_MODIFIED}, b""

    def get_blob(self, request: Seen, match: re.Match[str]) -> Reply:
        data = self.blobs.get(f"{match['container']}/{match['blob']}")
        if data is None:
            return (
                404,
                {"x-ms-error-code": "BlobNotFound", "Content-Type": "application/xml"},
                b'<?xml version="1.0" encoding="utf-8"?><Error><Code>BlobNotFound</Code>'
                b"<Message>The specified blob does not exist.</Message></Error>",
            )
        first, last = (int(x) for x in request.headers["x-ms-range"].split("=")[1].split("-"))
        last = min(last, len(data) - 1)
        return (
            206,
            {
                "Content-Range": f"bytes {first}-{last}/{len(data)}",
                "x-ms-blob-type": "BlockBlob",
                "ETag": '"0x1"',
                "Last-Modified": LAST_MODIFIED,
            },
            data[first : last + 1],
        )

    def list_blobs(self, request: Seen, match: re.Match[str]) -> Reply:
        """Blob service "List Blobs" (GET ?restype=container&comp=list&prefix=): the
        EnumerationResults XML of the Blob REST API, one page."""
        assert request.query.get("comp") == ["list"], request.query
        prefix = (request.query.get("prefix") or [""])[0]
        container = match["container"]
        names = sorted(
            key.split("/", 1)[1]
            for key in self.blobs
            if key.startswith(f"{container}/") and key.split("/", 1)[1].startswith(prefix)
        )
        items = "".join(
            f"<Blob><Name>{name}</Name><Properties><Last-Modified>{LAST_MODIFIED}</Last-Modified>"
            f"<Etag>0x1</Etag><Content-Length>{len(self.blobs[f'{container}/{name}'])}"
            "</Content-Length><BlobType>BlockBlob</BlobType></Properties></Blob>"
            for name in names
        )
        body = (
            '<?xml version="1.0" encoding="utf-8"?><EnumerationResults '
            f'ServiceEndpoint="{self.url}/{ACCOUNT}/" ContainerName="{container}">'
            f"<Prefix>{prefix}</Prefix><Blobs>{items}</Blobs><NextMarker /></EnumerationResults>"
        )
        return 200, {"Content-Type": "application/xml"}, body.encode()

    def delete_blob(self, _: Seen, match: re.Match[str]) -> Reply:
        self.blobs.pop(f"{match['container']}/{match['blob']}", None)
        self.meta.pop(f"{match['container']}/{match['blob']}", None)
        return 202, {}, b""


def point_sdk_at(fake: FakeAzureML, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workspace in the environment, and azure-ai-ml's ARM and the blob endpoint on the fake."""
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUB)
    monkeypatch.setenv("AZURE_RESOURCE_GROUP", RESOURCE_GROUP)
    monkeypatch.setenv("AZUREML_WORKSPACE_NAME", WORKSPACE)
    monkeypatch.setenv("AZUREML_DEV_URL_MFE", fake.url)  # azure-ai-ml's ARM endpoint
    monkeypatch.setenv("RECIPE_AZURE_BLOB_ENDPOINT", f"{fake.url}/{ACCOUNT}")


class FakeCredential:
    """A TokenCredential handing out a dummy bearer token."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("fake-token", int(time.time()) + 3600)


def ml_client() -> Any:
    """A real MLClient of the fake's workspace (its ARM endpoint comes from AZUREML_DEV_URL_MFE)."""
    from azure.ai.ml import MLClient

    return MLClient(FakeCredential(), SUB, RESOURCE_GROUP, WORKSPACE, enable_telemetry=False)


def without_credentials(env: dict[str, str], nowhere: str) -> dict[str, str]:
    """`env` with nothing DefaultAzureCredential could log in with."""
    kept = {
        k: v
        for k, v in env.items()
        if not k.startswith(("AZURE_CLIENT", "AZURE_TENANT", "AZURE_FEDERATED", "AZURE_USERNAME"))
        and k not in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET")
    }
    return {**kept, "AZURE_CONFIG_DIR": nowhere}  # no `az login` cache either


# --- reading one blob of a datastore (`recipe data check azureml://...`) ---------------------

CONTAINER = "azureml-blobstore-11111111-2222-3333-4444-555555555555"
FAKE_SAS = "sv=2025-01-05&sr=c&sp=r&sig=not-a-real-signature"  # not a credential


def azureml_datastore_reads(blobs: dict[str, bytes]) -> FakeServer:
    """ARM (datastore get, listSecrets) and Blob storage as azure-ai-ml and azure-storage-blob call them."""
    server = FakeServer()

    def datastore(_: Seen, match: re.Match[str]) -> Reply:
        name = match["name"]
        if name != "workspaceblobstore":
            return json_reply(
                404,
                {"error": {"code": "UserError", "message": f"Datastore {name} not found"}},
                {"x-ms-error-code": "ResourceNotFound"},
            )
        return json_reply(
            200,
            {
                "id": f"{WS_PATH}/datastores/{name}",
                "name": name,
                "type": "Microsoft.MachineLearningServices/workspaces/datastores",
                "properties": {
                    "datastoreType": "AzureBlob",
                    "accountName": "stmlworkspace",
                    "containerName": CONTAINER,
                    "endpoint": "core.windows.net",
                    "protocol": "https",
                    "credentials": {"credentialsType": "Sas"},
                    "isDefault": True,
                    "tags": {},
                    "properties": {},
                },
            },
        )

    def secrets(request: Seen, _: re.Match[str]) -> Reply:
        assert request.query["api-version"], "azure-ai-ml always names the API version"
        return json_reply(200, {"secretsType": "Sas", "sasToken": FAKE_SAS})

    def blob(request: Seen, match: re.Match[str]) -> Reply:
        data = blobs.get(unquote(match["blob"]))
        if data is None:
            return (
                404,
                {"x-ms-error-code": "BlobNotFound", "Content-Type": "application/xml"},
                (
                    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>BlobNotFound</Code>'
                    b"<Message>The specified blob does not exist.</Message></Error>"
                ),
            )
        first, last = (int(x) for x in request.headers["x-ms-range"].split("=")[1].split("-"))
        last = min(last, len(data) - 1)
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"bytes {first}-{last}/{len(data)}",
            "x-ms-blob-type": "BlockBlob",
            "ETag": '"0x8DCAFE"',
            "Last-Modified": "Sun, 22 Nov 2026 10:00:00 GMT",
        }
        return 206, headers, data[first : last + 1]

    base = re.escape(WS_PATH)
    server.route("GET", base + r"/datastores/(?P<name>[^/]+)", datastore)
    server.route("POST", base + r"/datastores/(?P<name>[^/]+)/listSecrets", secrets)
    server.route("GET", rf"/stmlworkspace/{CONTAINER}/(?P<blob>.+)", blob)
    return server


# --- managed online endpoints (recipe endpoint ... --provider azure) --------------------------

WORKSPACE_LOCATION = "eastus"
ENDPOINT_KEY = "fake-primary-key-not-a-secret"  # what listKeys answers; tests check it never leaks


def _not_found(what: str) -> Reply:
    # ARM's answer for a missing child resource (azure-core maps 404 to ResourceNotFoundError).
    return json_reply(
        404,
        {"error": {"code": "UserError", "message": f"{what} not found."}},
        {"x-ms-error-code": "UserError"},
    )


METRIC_NAMES = {
    "RequestsPerMinute": ("Requests Per Minute", "Count"),
    "RequestLatency_P95": ("Request Latency P95", "Milliseconds"),
}


def _minute(at: float) -> int:
    return int(at // 60) * 60


def _past(end: float) -> int:
    """The first minute boundary at or after `end`: minutes before it overlap [.., end)."""
    return -int(-end // 60) * 60


def _parse_time(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class FakeAzureMLEndpoints(FakeAzureML):
    """FakeAzureML plus what managed online endpoints need: the workspace (its location),
    model and environment versions, online endpoints and deployments as ARM long-running
    operations (201/202 with Azure-AsyncOperation and Retry-After, then an operation
    status of Succeeded), listKeys, and the endpoint's scoring URI answering like vLLM's
    /v1/chat/completions behind Azure's key check and azureml-model-deployment routing.

    For releases: an endpoint PUT whose traffic map names a deployment that does not exist,
    or does not sum to 0 or 100, is refused (400); live traffic (`live()`) is spread over
    the deployments by the endpoint's traffic map of the moment and kept as one-minute
    buckets per deployment, which Azure Monitor's Metrics - List route answers
    (RequestsPerMinute split by envoy_response_code, RequestLatency_P95) in the shape of
    azure-rest-api-specs' monitor 2023-10-01 examples/GetMetric.json."""

    def __init__(self) -> None:
        super().__init__()
        # "endpoint/deployment" -> minute (epoch s) -> {"codes": {code: n}, "p95": ms}
        self.minutes: dict[str, dict[int, dict[str, Any]]] = {}
        self.models: dict[str, dict[str, Any]] = {}  # "name/version" -> body
        self.environments: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.deployments: dict[str, dict[str, Any]] = {}  # "endpoint/deployment" -> body
        self.operations = 0
        r = self.server.route
        base = re.escape(WS_PATH)
        r("GET", base, self.workspace)
        r("GET", base + r"/operations/(?P<op>[^/]+)", self.operation)
        for kind, store in (("models", self.models), ("environments", self.environments)):
            r("GET", base + rf"/{kind}/(?P<name>[^/]+)", self._container(kind, store))
            r("GET", base + rf"/{kind}/(?P<name>[^/]+)/versions", self._versions(store))
            version = base + rf"/{kind}/(?P<name>[^/]+)/versions/(?P<version>[^/]+)"
            r("GET", version, self._get_version(kind, store))
            r("PUT", version, self._put_version(kind, store))
            r("DELETE", version, self._delete_version(store))
        endpoint = base + r"/onlineEndpoints/(?P<name>[^/]+)"
        r("GET", endpoint, self.get_endpoint)
        r("PUT", endpoint, self.put_endpoint)
        r("DELETE", endpoint, self.delete_endpoint)
        r("POST", endpoint + r"/listKeys", self.list_keys)
        r("GET", endpoint + r"/deployments", self.list_deployments)
        deployment = endpoint + r"/deployments/(?P<deployment>[^/]+)"
        r("GET", deployment, self.get_deployment)
        r("PUT", deployment, self.put_deployment)
        r("DELETE", deployment, self.delete_deployment)
        r("GET", deployment + r"/providers/Microsoft\.Insights/metrics", self.metrics)
        r("POST", r"/inference/(?P<name>[^/]+)/score", self.score)

    # what the SDK sent
    def puts(self, kind: str) -> list[Seen]:
        """PUTs of one kind: models, environments, onlineEndpoints, deployments."""
        pattern = {
            "models": r"/models/[^/]+/versions/[^/]+$",
            "environments": r"/environments/[^/]+/versions/[^/]+$",
            "onlineEndpoints": r"/onlineEndpoints/[^/]+$",
            "deployments": r"/deployments/[^/]+$",
        }[kind]
        return self.seen("PUT", pattern)

    def creates(self) -> list[str]:
        """Every PUT of a resource and every blob upload, as 'METHOD path'."""
        return [
            f"{s.method} {s.path}"
            for s in self.server.seen
            if s.method == "PUT" and ("/versions/" in s.path or "/onlineEndpoints/" in s.path)
        ] + [f"PUT {s.path}" for s in self.blob_puts()]

    # workspace and long-running operations
    def workspace(self, request: Seen, _: re.Match[str]) -> Reply:
        return json_reply(
            200,
            {
                "id": request.path,
                "name": WORKSPACE,
                "type": "Microsoft.MachineLearningServices/workspaces",
                "location": WORKSPACE_LOCATION,
                "properties": {"friendlyName": WORKSPACE},
            },
        )

    def _accepted(self, status: int, body: dict[str, Any] | None) -> Reply:
        """ARM's answer to a long-running PUT (201) or DELETE (202): the operation to poll."""
        self.operations += 1
        headers = {
            "Azure-AsyncOperation": f"{self.url}{WS_PATH}/operations/op{self.operations}"
            "?api-version=2025-12-01",
            "Retry-After": "0",
        }
        if body is None:
            return status, {**headers, "Content-Type": "application/json"}, b""
        return json_reply(status, body, headers)

    def operation(self, _: Seen, match: re.Match[str]) -> Reply:
        return json_reply(200, {"id": match["op"], "name": match["op"], "status": "Succeeded"})

    # model and environment versions (immutable assets: a second PUT of a version is refused)
    def _container(self, kind: str, store: dict[str, dict[str, Any]]) -> Any:
        def handler(request: Seen, match: re.Match[str]) -> Reply:
            if not any(key.split("/")[0] == match["name"] for key in store):
                return _not_found(f"{kind} container {match['name']}")
            return json_reply(200, {"id": request.path, "name": match["name"], "properties": {}})

        return handler

    def _versions(self, store: dict[str, dict[str, Any]]) -> Any:
        def handler(_: Seen, match: re.Match[str]) -> Reply:
            found = [body for key, body in store.items() if key.split("/")[0] == match["name"]]
            return json_reply(200, {"value": found})

        return handler

    def _get_version(self, kind: str, store: dict[str, dict[str, Any]]) -> Any:
        def handler(_: Seen, match: re.Match[str]) -> Reply:
            body = store.get(f"{match['name']}/{match['version']}")
            if body is None:
                return _not_found(f"{kind} {match['name']}:{match['version']}")
            return json_reply(200, body)

        return handler

    def _put_version(self, kind: str, store: dict[str, dict[str, Any]]) -> Any:
        def handler(request: Seen, match: re.Match[str]) -> Reply:
            body = request.json()
            body.update(
                id=request.path,
                name=match["version"],
                type=f"Microsoft.MachineLearningServices/workspaces/{kind}/versions",
            )
            body["properties"]["provisioningState"] = "Succeeded"
            if kind == "models":  # the service answers with the flavors (none for custom_model)
                body["properties"].setdefault("flavors", {})
            store[f"{match['name']}/{match['version']}"] = body
            return json_reply(201, body)

        return handler

    def _delete_version(self, store: dict[str, dict[str, Any]]) -> Any:
        def handler(_: Seen, match: re.Match[str]) -> Reply:
            existed = store.pop(f"{match['name']}/{match['version']}", None)
            return (200 if existed else 204), {}, b""

        return handler

    # online endpoints
    def get_endpoint(self, _: Seen, match: re.Match[str]) -> Reply:
        body = self.endpoints.get(match["name"])
        return json_reply(200, body) if body else _not_found(f"Endpoint {match['name']}")

    def put_endpoint(self, request: Seen, match: re.Match[str]) -> Reply:
        name = match["name"]
        body = request.json()
        body.update(
            id=request.path,
            name=name,
            type="Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
        )
        props = body["properties"]
        traffic = {k: int(v) for k, v in (props.get("traffic") or {}).items()}
        unknown = [d for d, v in traffic.items() if v and f"{name}/{d}" not in self.deployments]
        if unknown or sum(traffic.values()) not in (0, 100):
            why = f"deployment {unknown[0]} not found" if unknown else "must sum to 0 or 100"
            return json_reply(
                400,
                {"error": {"code": "BadArgument", "message": f"Invalid traffic {traffic}: {why}"}},
                {"x-ms-error-code": "BadArgument"},
            )
        props["scoringUri"] = f"{self.url}/inference/{name}/score"
        props["swaggerUri"] = f"{self.url}/inference/{name}/swagger.json"
        props["provisioningState"] = "Succeeded"
        new = name not in self.endpoints
        self.endpoints[name] = body
        answer = {
            **body,
            "properties": {**props, "provisioningState": "Creating" if new else "Updating"},
        }
        return self._accepted(201 if new else 200, answer)

    def delete_endpoint(self, _: Seen, match: re.Match[str]) -> Reply:
        name = match["name"]
        if self.endpoints.pop(name, None) is None:
            return 204, {}, b""
        for key in [k for k in self.deployments if k.split("/")[0] == name]:
            del self.deployments[key]  # an endpoint's deployments go with it
        return self._accepted(202, None)

    def list_keys(self, _: Seen, match: re.Match[str]) -> Reply:
        if match["name"] not in self.endpoints:
            return _not_found(f"Endpoint {match['name']}")
        return json_reply(200, {"primaryKey": ENDPOINT_KEY, "secondaryKey": ENDPOINT_KEY[::-1]})

    # deployments
    def list_deployments(self, _: Seen, match: re.Match[str]) -> Reply:
        found = [b for k, b in self.deployments.items() if k.split("/")[0] == match["name"]]
        return json_reply(200, {"value": found})

    def get_deployment(self, _: Seen, match: re.Match[str]) -> Reply:
        body = self.deployments.get(f"{match['name']}/{match['deployment']}")
        return json_reply(200, body) if body else _not_found(f"Deployment {match['deployment']}")

    def put_deployment(self, request: Seen, match: re.Match[str]) -> Reply:
        if match["name"] not in self.endpoints:
            return _not_found(f"Endpoint {match['name']}")
        body = request.json()
        body.update(
            id=request.path,
            name=match["deployment"],
            type="Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments",
        )
        body["properties"]["provisioningState"] = "Succeeded"
        key = f"{match['name']}/{match['deployment']}"
        new = key not in self.deployments
        self.deployments[key] = body
        answer = {**body, "properties": {**body["properties"], "provisioningState": "Creating"}}
        return self._accepted(201 if new else 200, answer)

    def delete_deployment(self, _: Seen, match: re.Match[str]) -> Reply:
        if self.deployments.pop(f"{match['name']}/{match['deployment']}", None) is None:
            return 204, {}, b""
        return self._accepted(202, None)

    # live traffic, and Azure Monitor's metrics of it
    def live(
        self,
        endpoint: str,
        start: float,
        seconds: float,
        per_minute: int,
        errors: dict[str, float] | None = None,
        p95_ms: dict[str, float] | None = None,
    ) -> None:
        """Clients calling the endpoint's scoring URI from `start` for `seconds`: per_minute
        requests a minute, shared by the endpoint's traffic map as it is now; `errors` is each
        deployment's share of 503 answers, `p95_ms` its p95 latency (200 ms unless said)."""
        traffic = self.endpoints[endpoint]["properties"].get("traffic") or {}
        for minute in range(_minute(start), _past(start + seconds), 60):
            for deployment, share in traffic.items():
                served = round(per_minute * int(share) / 100)
                if not served:
                    continue
                bucket = self.minutes.setdefault(f"{endpoint}/{deployment}", {}).setdefault(
                    minute, {"codes": {}, "p95": 0.0}
                )
                failed = round(served * (errors or {}).get(deployment, 0.0))
                for code, n in (("200", served - failed), ("503", failed)):
                    if n:
                        bucket["codes"][code] = bucket["codes"].get(code, 0) + n
                bucket["p95"] = max(bucket["p95"], (p95_ms or {}).get(deployment, 200.0))

    def metrics(self, request: Seen, match: re.Match[str]) -> Reply:
        """Metrics - List (GET {resource}/providers/Microsoft.Insights/metrics): one-minute
        grain over the timespan, a data point per minute (no `average` where nothing was
        served), RequestsPerMinute split by envoy_response_code when $filter asks for it."""
        q = {k: v[0] for k, v in request.query.items()}
        assert q.get("api-version") == "2023-10-01", q
        assert q.get("interval") == "PT1M" and q.get("aggregation") == "average", q
        start, end = (_parse_time(t) for t in q["timespan"].split("/"))
        buckets = self.minutes.get(f"{match['name']}/{match['deployment']}", {})
        minutes = range(_minute(start), _past(end), 60)
        stamp = lambda m: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(m))  # noqa: E731
        value = []
        for name in q["metricnames"].split(","):
            if name not in METRIC_NAMES:
                return json_reply(
                    400,
                    {
                        "code": "BadRequest",
                        "message": f"Failed to find metric configuration for {name}",
                    },
                )
            series = []
            if name == "RequestsPerMinute":
                split = q.get("$filter") == "envoy_response_code eq '*'"
                codes = sorted({c for b in buckets.values() for c in b["codes"]}) if split else [""]
                for code in codes:
                    data = []
                    for m in minutes:
                        point: dict[str, Any] = {"timeStamp": stamp(m)}
                        counts = buckets.get(m, {}).get("codes", {})
                        n = counts.get(code, 0) if split else sum(counts.values())
                        if n:
                            point["average"] = float(n)
                        data.append(point)
                    meta = (
                        [
                            {
                                "name": {
                                    "value": "envoy_response_code",
                                    "localizedValue": "envoy_response_code",
                                },
                                "value": code,
                            }
                        ]
                        if split
                        else []
                    )
                    series.append({"metadatavalues": meta, "data": data})
            else:
                data = []
                for m in minutes:
                    point = {"timeStamp": stamp(m)}
                    if m in buckets:
                        point["average"] = buckets[m]["p95"]
                    data.append(point)
                series.append({"metadatavalues": [], "data": data})
            shown, unit = METRIC_NAMES[name]
            value.append(
                {
                    "id": f"{request.path}/{name}",
                    "type": "Microsoft.Insights/metrics",
                    "name": {"value": name, "localizedValue": shown},
                    "displayDescription": shown,
                    "unit": unit,
                    "timeseries": series,
                    "errorCode": "Success",
                }
            )
        return json_reply(
            200,
            {
                "cost": len(minutes),
                "timespan": q["timespan"],
                "interval": "PT1M",
                "value": value,
                "namespace": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments",
                "resourceregion": WORKSPACE_LOCATION,
            },
        )

    # the scoring URI: Azure checks the key, routes by azureml-model-deployment (else by the
    # endpoint's traffic), and forwards the body to the container's scoring route
    def score(self, request: Seen, match: re.Match[str]) -> Reply:
        endpoint = self.endpoints.get(match["name"])
        if endpoint is None:
            return json_reply(404, {"message": "endpoint not found"})
        if request.headers.get("authorization") != f"Bearer {ENDPOINT_KEY}":
            return json_reply(401, {"message": "Invalid authentication credentials"})
        deployment = request.headers.get("azureml-model-deployment") or max(
            endpoint["properties"].get("traffic") or {"": 0}, key=lambda k: 0
        )
        if f"{match['name']}/{deployment}" not in self.deployments:
            return json_reply(404, {"message": f"deployment {deployment} not found"})
        body = request.json()
        return json_reply(
            200,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 1795000000,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "billing"},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
            },
            {"azureml-model-deployment": deployment},
        )


def endpoint_ml_client() -> Any:
    """ml_client() whose every operation may speak plain HTTP to the fake: azure-core's
    bearer-token policy refuses http:// unless the request's context says otherwise, and
    azure-ai-ml says so for jobs only (enforce_https from a local MFE URL)."""
    from azure.ai.ml import MLClient
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    class AllowHttp(SansIOHTTPPolicy):  # type: ignore[type-arg]
        def on_request(self, request: Any) -> None:
            request.context["enforce_https"] = False

    return MLClient(
        FakeCredential(),
        SUB,
        RESOURCE_GROUP,
        WORKSPACE,
        enable_telemetry=False,
        per_call_policies=[AllowHttp()],
    )
