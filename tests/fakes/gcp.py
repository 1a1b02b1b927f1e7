"""The Google APIs a Vertex AI run uses, for the real SDKs: google-cloud-aiplatform's REST
transport (custom jobs: create, list by label filter, get, cancel), google-cloud-storage
(object get/delete, multipart and resumable uploads) and Cloud Logging's entries.list
through an authorized session, all on one loopback server. Bodies follow the REST
reference: enums as numbers when the client asks `$alt=json;enum-encoding=int`, errors
as {"error": {"code", "message", "status"}}, the project number in resource names.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pytest

from tests.fakes.http import FakeServer, Reply, Seen, Served, json_reply

PROJECT = "ml-platform-dev"
PROJECT_NUMBER = "123456789012"  # Vertex answers with the project number, not the id
REGION = "us-central1"
BUCKET = "recipe-artifacts-dev"
ON_VERTEX = [  # overrides that put support-triage-multinode.yaml on Vertex
    "compute.accelerator=L4",
    f"compute.gcp.project={PROJECT}",
    f"compute.gcp.region={REGION}",
    f"compute.gcp.staging_bucket=gs://{BUCKET}/fine-tunes",
    "compute.gcp.wandb_secret=wandb-api-key",
]


def error(code: int, status: str, message: str) -> Reply:
    """A Google API error answer (google.rpc.Status in JSON)."""
    return json_reply(code, {"error": {"code": code, "message": message, "status": status}})


def enum_names(job: dict[str, Any]) -> dict[str, Any]:
    """The REST transport sends enums as numbers ($alt=json;enum-encoding=int); the plan
    shows their names. Map the numbers back, changing nothing else."""
    from google.cloud.aiplatform_v1.types import AcceleratorType, Scheduling

    job = json.loads(json.dumps(job))
    for pool in job["jobSpec"]["workerPoolSpecs"]:
        kind = pool["machineSpec"].get("acceleratorType")
        if isinstance(kind, int):
            pool["machineSpec"]["acceleratorType"] = AcceleratorType(kind).name
    scheduling = job["jobSpec"].get("scheduling", {})
    if isinstance(scheduling.get("strategy"), int):
        scheduling["strategy"] = Scheduling.Strategy(scheduling["strategy"]).name
    return job


def crc32c(data: bytes) -> str:
    import google_crc32c

    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def multipart(request: Seen) -> tuple[dict[str, Any], bytes]:
    """The JSON metadata part and the media part of a multipart/related upload."""
    boundary = re.search(r'boundary="?([^";]+)"?', request.headers["content-type"])
    assert boundary, request.headers["content-type"]
    parts = request.body.split(b"--" + boundary.group(1).encode())
    contents = [p.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n") for p in parts[1:-1]]
    metadata, media = contents
    return json.loads(metadata), media


@dataclass
class FakeGoogle(Served):
    """Vertex AI custom jobs, Cloud Storage objects and Cloud Logging entries.

    `states` are GetCustomJob's answers in turn; `failures[route]` answers queued before
    the route's own handler (routes: create, list, get, cancel, object, delete, upload,
    resume, entries).
    """

    server: FakeServer = field(default_factory=FakeServer)
    objects: dict[str, tuple[bytes, dict[str, Any]]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    states: list[str] = field(default_factory=list)  # answers of GetCustomJob, in turn
    entries: list[list[dict[str, Any]]] = field(default_factory=list)  # per entries:list
    failures: dict[str, list[Reply]] = field(default_factory=dict)  # route name -> answers
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        jobs = r"/v1/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/customJobs"
        objects = r"/storage/v1/b/(?P<bucket>[^/]+)/o/(?P<name>.+)"
        for method, pattern, name in (
            ("POST", jobs, "create"),
            ("GET", jobs, "list"),
            ("GET", jobs + r"/(?P<id>\d+)", "get"),
            ("POST", jobs + r"/(?P<id>\d+):cancel", "cancel"),
            ("GET", objects, "object"),
            ("DELETE", objects, "delete"),
            ("POST", r"/upload/storage/v1/b/(?P<bucket>[^/]+)/o", "upload"),
            ("PUT", r"/upload/storage/v1/b/(?P<bucket>[^/]+)/o", "resume"),
            ("POST", r"/v2/entries:list", "entries"),
        ):
            self.server.route(method, pattern, self._handler(name))

    def creates(self) -> list[Seen]:
        return self.seen("POST", r"/customJobs$")

    def stored(self) -> dict[str, tuple[bytes, dict[str, str]]]:
        """gs:// URI -> (bytes, custom metadata) of every object."""
        return {
            f"gs://{key}": (data, meta.get("metadata", {}))
            for key, (data, meta) in self.objects.items()
        }

    def set_state(self, job_id: str, state: str) -> None:
        self.jobs[job_id]["state"] = state

    def _handler(self, name: str) -> Any:
        def handle(request: Seen, match: re.Match[str]) -> Reply:
            queued = self.failures.get(name)
            if queued:
                return queued.pop(0)
            return getattr(self, f"_{name}")(request, match)

        return handle

    # Vertex AI ------------------------------------------------------------------------------

    def _job_json(self, job: dict[str, Any], request: Seen) -> dict[str, Any]:
        from google.cloud.aiplatform_v1.types import JobState

        numeric = request.query.get("$alt") == ["json;enum-encoding=int"]
        state = job["state"]
        return {**job, "state": JobState[state].value if numeric else state}

    def _create(self, request: Seen, match: re.Match[str]) -> Reply:
        job_id = str(4000000000000000000 + len(self.jobs))
        name = f"projects/{PROJECT_NUMBER}/locations/{match['region']}/customJobs/{job_id}"
        job = {
            **request.json(),
            "name": name,
            "state": "JOB_STATE_PENDING",
            "createTime": "2026-11-22T10:00:00.000000Z",
            "updateTime": "2026-11-22T10:00:00.000000Z",
        }
        self.jobs[job_id] = job
        return json_reply(200, self._job_json(job, request))

    def _list(self, request: Seen, _: re.Match[str]) -> Reply:
        wanted = dict(re.findall(r'labels\.(\w+)="([^"]*)"', request.query["filter"][0]))
        found = [
            self._job_json(j, request)
            for j in self.jobs.values()
            if all(j.get("labels", {}).get(k) == v for k, v in wanted.items())
        ]
        return json_reply(200, {"customJobs": found} if found else {})

    def _get(self, request: Seen, match: re.Match[str]) -> Reply:
        job = self.jobs.get(match["id"])
        if job is None:
            return error(404, "NOT_FOUND", f"CustomJob {match['id']} not found.")
        if self.states:
            job["state"] = self.states.pop(0)
        if job["state"] in ("JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"):
            job.setdefault("startTime", "2026-11-22T10:04:12.000000Z")
        if job["state"] == "JOB_STATE_FAILED":
            job["error"] = {"code": 3, "message": "The replica workerpool0-0 exited with status 1."}
        return json_reply(200, self._job_json(job, request))

    def _cancel(self, _: Seen, match: re.Match[str]) -> Reply:
        self.jobs[match["id"]]["state"] = "JOB_STATE_CANCELLING"
        return json_reply(200, {})

    # Cloud Storage ---------------------------------------------------------------------------

    def _resource(self, bucket: str, name: str) -> dict[str, Any]:
        data, meta = self.objects[f"{bucket}/{name}"]
        return {
            "kind": "storage#object",
            "id": f"{bucket}/{name}/1",
            "name": name,
            "bucket": bucket,
            "generation": "1700000000000000",
            "metageneration": "1",
            "contentType": meta.get("contentType", "application/octet-stream"),
            "size": str(len(data)),
            "md5Hash": base64.b64encode(hashlib.md5(data).digest()).decode(),
            "crc32c": crc32c(data),
            "metadata": meta.get("metadata", {}),
        }

    def _object(self, _: Seen, match: re.Match[str]) -> Reply:
        name = unquote(match["name"])
        if f"{match['bucket']}/{name}" not in self.objects:
            return error(404, "NOT_FOUND", f"No such object: {match['bucket']}/{name}")
        return json_reply(200, self._resource(match["bucket"], name))

    def _delete(self, _: Seen, match: re.Match[str]) -> Reply:
        self.objects.pop(f"{match['bucket']}/{unquote(match['name'])}", None)
        return 204, {}, b""

    def _store(self, bucket: str, meta: dict[str, Any], data: bytes) -> Reply:
        self.objects[f"{bucket}/{meta['name']}"] = (data, meta)
        return json_reply(200, self._resource(bucket, meta["name"]))

    def _upload(self, request: Seen, match: re.Match[str]) -> Reply:
        kind = request.query["uploadType"][0]
        if kind == "multipart":
            meta, data = multipart(request)
            return self._store(match["bucket"], meta, data)
        assert kind == "resumable", kind
        upload_id = f"session-{len(self.sessions)}"
        self.sessions[upload_id] = {"meta": request.json(), "data": b""}
        location = f"{self.url}{request.path}?uploadType=resumable&upload_id={upload_id}"
        return 200, {"Location": location}, b""

    def _resume(self, request: Seen, match: re.Match[str]) -> Reply:
        session = self.sessions[request.query["upload_id"][0]]
        session["data"] += request.body
        total = request.headers["content-range"].rsplit("/", 1)[1]
        if total == "*" or len(session["data"]) < int(total):
            return 308, {"Range": f"bytes=0-{len(session['data']) - 1}"}, b""
        return self._store(match["bucket"], session["meta"], session["data"])

    # Cloud Logging ---------------------------------------------------------------------------

    def _entries(self, request: Seen, _: re.Match[str]) -> Reply:
        body = request.json()
        assert body["orderBy"] == "timestamp asc"
        batch = self.entries.pop(0) if self.entries else []
        since = re.search(r'timestamp>="([^"]+)"', body["filter"])
        if since:  # answer like the API: nothing older than asked
            batch = [e for e in batch if e["timestamp"] >= since.group(1)]
        return json_reply(200, {"entries": batch} if batch else {})


def log_entry(job_id: str, second: int, text: str, task: str = "workerpool0-0") -> dict[str, Any]:
    """A Cloud Logging LogEntry as a Vertex custom job's replica writes it."""
    return {
        "logName": f"projects/{PROJECT}/logs/{task}",
        "resource": {
            "type": "ml_job",
            "labels": {"job_id": job_id, "task_name": task, "project_id": PROJECT},
        },
        "textPayload": text,
        "timestamp": f"2026-11-22T10:05:{second:02d}.000000Z",
        "receiveTimestamp": f"2026-11-22T10:05:{second:02d}.500000Z",
        "severity": "INFO",
        "insertId": f"{task}-{second}",
    }


def fake_token() -> Any:
    """Credentials that refresh like user credentials do (on a 401), with a dummy token."""
    from google.auth.credentials import Credentials

    class FakeToken(Credentials):
        def refresh(self, request: Any) -> None:
            self.refreshes = getattr(self, "refreshes", 0) + 1
            self.token = "fake-access-token"

    return FakeToken()


def custom_jobs(fake: FakeGoogle) -> Any:
    """providers.gcp.custom_job.CustomJobs with real SDK clients pointed at the fake."""
    from google.auth.transport.requests import AuthorizedSession
    from google.cloud import aiplatform_v1, storage

    from providers.gcp.custom_job import CustomJobs

    credentials = fake_token()
    jobs = aiplatform_v1.JobServiceClient(
        credentials=credentials,
        transport="rest",
        client_options={"api_endpoint": fake.url},
    )
    gcs = storage.Client(
        project=PROJECT, credentials=credentials, client_options={"api_endpoint": fake.url}
    )
    return CustomJobs(
        jobs=jobs,
        storage=gcs,
        session=AuthorizedSession(credentials),
        logging_endpoint=fake.url,
    )


def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backends' own backoff, shortened (the retry decisions stay the SDK's)."""
    from providers.gcp import custom_job, sdk

    monkeypatch.setattr(sdk, "RETRY_INITIAL_S", 0.01)
    monkeypatch.setattr(sdk, "RETRY_MAX_S", 0.05)
    monkeypatch.setattr(sdk, "RETRY_DEADLINE_S", 0.5)
    monkeypatch.setattr(custom_job.CustomJobs, "log_poll_s", 0.0)


def without_credentials(env: dict[str, str], nowhere: str) -> dict[str, str]:
    """`env` where Application Default Credentials find nothing (and no fake endpoint)."""
    from providers.gcp.sdk import VERTEX_ENDPOINT_ENV

    kept = {k: v for k, v in env.items() if k != VERTEX_ENDPOINT_ENV}
    return {
        **kept,
        "GOOGLE_APPLICATION_CREDENTIALS": f"{nowhere}/missing.json",
        "CLOUDSDK_CONFIG": f"{nowhere}/gcloud",
        "NO_GCE_CHECK": "True",  # no metadata server probe
    }


# --- reading one object (`recipe data check gs://...`) ---------------------------------------


def gcs_reads(objects: dict[str, bytes]) -> FakeServer:
    """Cloud Storage's JSON API as google-cloud-storage reads an object (`recipe data
    check gs://...`): bucket metadata, then the media download (`alt=media`)."""
    server = FakeServer()

    def bucket(_: Seen, match: re.Match[str]) -> Reply:
        name = match["bucket"]
        if not any(key.startswith(name + "/") for key in objects):
            return json_reply(
                404, {"error": {"code": 404, "message": "The specified bucket does not exist."}}
            )
        return json_reply(200, {"kind": "storage#bucket", "name": name, "location": "US"})

    def media(request: Seen, match: re.Match[str]) -> Reply:
        assert request.query.get("alt") == ["media"]
        key = f"{match['bucket']}/{unquote(match['name'])}"
        if key not in objects:
            return json_reply(404, {"error": {"code": 404, "message": f"No such object: {key}"}})
        return 200, {"Content-Type": "application/octet-stream"}, objects[key]

    server.route("GET", r"/storage/v1/b/(?P<bucket>[^/]+)", bucket)
    server.route("GET", r"/download/storage/v1/b/(?P<bucket>[^/]+)/o/(?P<name>.+)", media)
    return server


# --- Vertex AI endpoints (providers/gcp/endpoint.py) ------------------------------------------


def chat_completion(model: str, content: str = "billing") -> dict[str, Any]:
    """vLLM's answer on /v1/chat/completions (an OpenAI ChatCompletion)."""
    return {
        "id": "chatcmpl-5f1c0ad2e4b54b7c9a1f",
        "object": "chat.completion",
        "created": 1795435200,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "tool_calls": []},
                "logprobs": None,
                "finish_reason": "stop",
                "stop_reason": None,
            }
        ],
        "usage": {"prompt_tokens": 24, "total_tokens": 25, "completion_tokens": 1},
        "prompt_logprobs": None,
    }


@dataclass
class FakeVertexServing(Served):
    """Vertex AI's EndpointService, ModelService and PredictionService.rawPredict over REST,
    as aiplatform_v1's REST transport and an AuthorizedSession call them.

    Creates, deploys, undeploys and deletes are long-running operations: each answers an
    unfinished Operation, done when first polled (google.longrunning.Operation; the result
    or a google.rpc.Status `error` in it). Resource names carry the project number, as
    Vertex's answers do. `failures[route]`: HTTP answers queued before the route's handler;
    `operation_errors[route]`: a google.rpc.Status the route's operation ends with instead.
    Routes: get_endpoint, create_endpoint, update_endpoint, delete_endpoint, deploy,
    undeploy, get_model, upload, list_models, delete_model, operation, predict, time_series,
    and traffic (an UpdateEndpoint whose update_mask names trafficSplit).

    Cloud Monitoring's projects.timeSeries.list (GET /v3/projects/P/timeSeries) answers from
    `served[deployed_model_id]`: the online prediction metrics Vertex AI writes for that
    deployed model (prediction_count and error_count as DELTA INT64, prediction_latencies as
    a DELTA DISTRIBUTION in ms on exponential buckets), one point over the asked interval.
    """

    server: FakeServer = field(default_factory=FakeServer)
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> Endpoint JSON
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> Model JSON
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, list[Reply]] = field(default_factory=dict)
    operation_errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # route, body
    served: dict[str, Traffic] = field(default_factory=dict)  # deployed model id -> traffic
    queries: list[dict[str, str]] = field(default_factory=list)  # timeSeries.list parameters

    def __post_init__(self) -> None:
        base = r"/v1/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)"
        endpoint = base + r"/endpoints/(?P<id>[a-z0-9-]+)"
        model = base + r"/models/(?P<id>[a-z0-9_-]+)"
        for method, pattern, name in (
            ("GET", endpoint, "get_endpoint"),
            ("POST", base + r"/endpoints", "create_endpoint"),
            ("PATCH", endpoint, "update_endpoint"),
            ("DELETE", endpoint, "delete_endpoint"),
            ("POST", endpoint + ":deployModel", "deploy"),
            ("POST", endpoint + ":undeployModel", "undeploy"),
            ("POST", endpoint + ":rawPredict", "predict"),
            ("GET", model, "get_model"),
            ("POST", base + r"/models:upload", "upload"),
            ("GET", base + r"/models", "list_models"),
            ("DELETE", model, "delete_model"),
            ("GET", r"/(ui|v1)/projects/[^/]+/locations/[^/]+/operations/(?P<op>\d+)", "operation"),
            ("GET", r"/v3/projects/(?P<project>[^/]+)/timeSeries", "time_series"),
        ):
            self.server.route(method, pattern, self._handler(name))

    def _handler(self, name: str) -> Any:
        def handle(request: Seen, match: re.Match[str]) -> Reply:
            if request.body and name != "predict":
                self.received.append((name, request.json()))
            queued = self.failures.get(name)
            if queued:
                return queued.pop(0)
            return getattr(self, f"_{name}")(request, match)

        return handle

    def calls(self, *names: str) -> list[str]:
        """The routes called with a body, in order (reads and polls have none)."""
        return [n for n, _ in self.received if not names or n in names]

    def body(self, name: str, index: int = -1) -> dict[str, Any]:
        return [b for n, b in self.received if n == name][index]

    # --- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _parent(match: re.Match[str]) -> str:
        return f"projects/{PROJECT_NUMBER}/locations/{match['region']}"

    def _start(self, match: re.Match[str], route: str, kind: str, response: Any) -> Reply:
        """An unfinished operation; GET on it finishes it (with `response` or the error)."""
        op_id = str(8000000000000000000 + len(self.operations))
        name = f"{self._parent(match)}/operations/{op_id}"
        meta = f"type.googleapis.com/google.cloud.aiplatform.v1.{kind}OperationMetadata"
        stamp = "2026-11-23T10:00:00.000000Z"
        operation: dict[str, Any] = {
            "name": name,
            "metadata": {
                "@type": meta,
                "genericMetadata": {"createTime": stamp, "updateTime": stamp},
            },
        }
        error = self.operation_errors.pop(route, None)
        self.operations[op_id] = {**operation, "done": True}
        if error is not None:
            self.operations[op_id]["error"] = error
        else:
            self.operations[op_id]["response"] = response() if callable(response) else response
        return json_reply(200, operation)

    def _missing(self, what: str, name: str) -> Reply:
        return error(404, "NOT_FOUND", f"{what} {name} not found.")

    def _numeric(self, request: Seen, resource: dict[str, Any]) -> dict[str, Any]:
        """Enums as numbers when the client asks $alt=json;enum-encoding=int."""
        from google.cloud.aiplatform_v1.types import AcceleratorType

        if request.query.get("$alt") != ["json;enum-encoding=int"]:
            return resource
        resource = json.loads(json.dumps(resource))
        for deployed in resource.get("deployedModels", []):
            spec = deployed["dedicatedResources"]["machineSpec"]
            if isinstance(spec.get("acceleratorType"), str):
                spec["acceleratorType"] = AcceleratorType[spec["acceleratorType"]].value
        return resource

    # --- EndpointService ---------------------------------------------------------------------

    def _get_endpoint(self, request: Seen, match: re.Match[str]) -> Reply:
        found = self.endpoints.get(match["id"])
        if found is None:
            return self._missing("Endpoint", f"{self._parent(match)}/endpoints/{match['id']}")
        return json_reply(200, self._numeric(request, found))

    def _create_endpoint(self, request: Seen, match: re.Match[str]) -> Reply:
        (endpoint_id,) = request.query["endpointId"]
        if endpoint_id in self.endpoints:
            return error(409, "ALREADY_EXISTS", f"Endpoint {endpoint_id} already exists.")
        body = request.json()
        endpoint = {
            **body,
            "name": f"{self._parent(match)}/endpoints/{endpoint_id}",
            "createTime": "2026-11-23T10:00:00.000000Z",
            "etag": "AMEw9yN",
        }

        def made() -> dict[str, Any]:
            self.endpoints[endpoint_id] = endpoint
            return {"@type": "type.googleapis.com/google.cloud.aiplatform.v1.Endpoint", **endpoint}

        return self._start(match, "create_endpoint", "CreateEndpoint", made)

    def _update_endpoint(self, request: Seen, match: re.Match[str]) -> Reply:
        endpoint = self.endpoints.get(match["id"])
        if endpoint is None:
            return self._missing("Endpoint", match["id"])
        (mask,) = request.query["updateMask"]
        queued = self.failures.get("traffic")
        if "trafficSplit" in mask.split(",") and queued:
            return queued.pop(0)
        for path in mask.split(","):
            endpoint[path] = request.json().get(path, {})
        split = endpoint.get("trafficSplit", {})
        deployed = {d["id"] for d in endpoint.get("deployedModels", [])}
        if "trafficSplit" in mask.split(",") and (
            (split and sum(split.values()) != 100) or set(split) - deployed
        ):
            return error(400, "INVALID_ARGUMENT", f"Invalid traffic split: {split}.")
        return json_reply(200, self._numeric(request, endpoint))

    def _delete_endpoint(self, _: Seen, match: re.Match[str]) -> Reply:
        endpoint = self.endpoints.get(match["id"])
        if endpoint is None:
            return self._missing("Endpoint", match["id"])
        if endpoint.get("deployedModels"):
            return error(
                400,
                "FAILED_PRECONDITION",
                "Endpoint has deployed or being deployed DeployedModel(s).",
            )
        del self.endpoints[match["id"]]
        empty = {"@type": "type.googleapis.com/google.protobuf.Empty"}
        return self._start(match, "delete_endpoint", "Delete", empty)

    def _deploy(self, request: Seen, match: re.Match[str]) -> Reply:
        endpoint = self.endpoints.get(match["id"])
        if endpoint is None:
            return self._missing("Endpoint", match["id"])
        body = request.json()
        deployed = dict(body["deployedModel"])
        model_id = deployed["model"].rsplit("/", 1)[-1]
        if model_id not in self.models:
            return error(400, "FAILED_PRECONDITION", f"Model {deployed['model']} not found.")
        spec = deployed["dedicatedResources"]["machineSpec"]
        if isinstance(spec.get("acceleratorType"), int):  # stored by name, like the API
            from google.cloud.aiplatform_v1.types import AcceleratorType

            spec["acceleratorType"] = AcceleratorType(spec["acceleratorType"]).name
        deployed["model"] = f"{self._parent(match)}/models/{model_id}"
        deployed["createTime"] = "2026-11-23T10:05:00.000000Z"
        deployed["status"] = {
            "availableReplicaCount": deployed["dedicatedResources"]["minReplicaCount"]
        }
        split = {deployed["id"] if k == "0" else k: v for k, v in body["trafficSplit"].items()}
        known = {d["id"] for d in endpoint.get("deployedModels", [])} | {deployed["id"]}
        if sum(split.values()) != 100 or set(split) - known:
            return error(400, "INVALID_ARGUMENT", f"Invalid traffic split: {split}.")

        def done() -> dict[str, Any]:
            endpoint.setdefault("deployedModels", []).append(deployed)
            endpoint["trafficSplit"] = split
            return {
                "@type": "type.googleapis.com/google.cloud.aiplatform.v1.DeployModelResponse",
                "deployedModel": {"id": deployed["id"]},
            }

        return self._start(match, "deploy", "DeployModel", done)

    def _undeploy(self, request: Seen, match: re.Match[str]) -> Reply:
        endpoint = self.endpoints.get(match["id"])
        if endpoint is None:
            return self._missing("Endpoint", match["id"])
        body = request.json()
        gone = body["deployedModelId"]
        split = body.get("trafficSplit", {})
        if gone not in {d["id"] for d in endpoint.get("deployedModels", [])}:
            return error(404, "NOT_FOUND", f"DeployedModel {gone} not found on the endpoint.")
        left = [d for d in endpoint["deployedModels"] if d["id"] != gone]
        if (
            split.get(gone)
            or (left and sum(split.values()) != 100)
            or (not split and endpoint.get("trafficSplit", {}).get(gone) and left)
        ):
            return error(400, "INVALID_ARGUMENT", "Traffic split must add up to 100.")
        endpoint["deployedModels"] = left
        endpoint["trafficSplit"] = split
        response = {"@type": "type.googleapis.com/google.cloud.aiplatform.v1.UndeployModelResponse"}
        return self._start(match, "undeploy", "UndeployModel", response)

    # --- ModelService ------------------------------------------------------------------------

    def _get_model(self, request: Seen, match: re.Match[str]) -> Reply:
        found = self.models.get(match["id"])
        if found is None:
            return self._missing("Model", f"{self._parent(match)}/models/{match['id']}")
        return json_reply(200, found)

    def _upload(self, request: Seen, match: re.Match[str]) -> Reply:
        body = request.json()
        model_id = body["modelId"]
        if model_id in self.models:
            return error(409, "ALREADY_EXISTS", f"Model {model_id} already exists.")
        name = f"{self._parent(match)}/models/{model_id}"
        model = {
            **body["model"],
            "name": name,
            "versionId": "1",
            "createTime": "2026-11-23T10:01:00.000000Z",
        }

        def made() -> dict[str, Any]:
            self.models[model_id] = model
            return {
                "@type": "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelResponse",
                "model": name,
                "modelVersionId": "1",
            }

        return self._start(match, "upload", "UploadModel", made)

    def _list_models(self, request: Seen, _: re.Match[str]) -> Reply:
        wanted = dict(re.findall(r'labels\.(\w+)="([^"]*)"', request.query["filter"][0]))
        found = [
            m
            for m in self.models.values()
            if all(m.get("labels", {}).get(k) == v for k, v in wanted.items())
        ]
        return json_reply(200, {"models": found} if found else {})

    def _delete_model(self, _: Seen, match: re.Match[str]) -> Reply:
        model = self.models.get(match["id"])
        if model is None:
            return self._missing("Model", match["id"])
        in_use = [
            e["name"]
            for e in self.endpoints.values()
            for d in e.get("deployedModels", [])
            if d["model"] == model["name"]
        ]
        if in_use:
            return error(400, "FAILED_PRECONDITION", f"Model is deployed to Endpoint(s): {in_use}.")
        del self.models[match["id"]]
        empty = {"@type": "type.googleapis.com/google.protobuf.Empty"}
        return self._start(match, "delete_model", "Delete", empty)

    # --- operations and predictions -----------------------------------------------------------

    def _operation(self, _: Seen, match: re.Match[str]) -> Reply:
        found = self.operations.get(match["op"])
        if found is None:
            return self._missing("Operation", match["op"])
        return json_reply(200, found)

    def _predict(self, request: Seen, match: re.Match[str]) -> Reply:
        endpoint = self.endpoints.get(match["id"])
        if endpoint is None:
            return self._missing("Endpoint", match["id"])
        if not endpoint.get("deployedModels"):
            return error(
                400, "FAILED_PRECONDITION", "There are no deployed models on the endpoint."
            )
        body = request.json()
        self.received.append(("predict", body))
        split = endpoint.get("trafficSplit", {})
        serving = max(split, key=lambda k: split[k])
        headers = {"X-Vertex-AI-Endpoint-Id": match["id"], "X-Vertex-AI-Deployed-Model-Id": serving}
        return json_reply(200, chat_completion(body["model"]), headers)

    # --- Cloud Monitoring -----------------------------------------------------------------

    def _time_series(self, request: Seen, _: re.Match[str]) -> Reply:
        query = {k: v[0] for k, v in request.query.items()}
        self.queries.append(query)
        found = dict(re.findall(r'(\S+)="([^"]*)"', query["filter"]))
        metric = found["metric.type"].removeprefix("aiplatform.googleapis.com/prediction/online/")
        assert found["resource.type"] == "aiplatform.googleapis.com/Endpoint", found
        endpoint_id = found["resource.labels.endpoint_id"]
        served = self.served.get(found["metric.labels.deployed_model_id"])
        if served is None or endpoint_id not in self.endpoints:
            return json_reply(200, {"unit": "1"})
        interval = {
            "startTime": query["interval.startTime"],
            "endTime": query["interval.endTime"],
        }
        if metric == "prediction_latencies":
            value: dict[str, Any] = {"distributionValue": served.distribution()}
            kind = "DISTRIBUTION"
        else:
            count = served.requests if metric == "prediction_count" else served.errors
            value, kind = {"int64Value": str(count)}, "INT64"
        series = {
            "metric": {
                "type": found["metric.type"],
                "labels": {"deployed_model_id": found["metric.labels.deployed_model_id"]},
            },
            "resource": {
                "type": "aiplatform.googleapis.com/Endpoint",
                "labels": {
                    "resource_container": PROJECT_NUMBER,
                    "location": REGION,
                    "endpoint_id": endpoint_id,
                },
            },
            "metricKind": "DELTA",
            "valueType": kind,
            "points": [{"interval": interval, "value": value}],
        }
        return json_reply(200, {"timeSeries": [series], "unit": "ms" if kind != "INT64" else "1"})


@dataclass
class Traffic:
    """What one deployed model served, as Cloud Monitoring reports it."""

    requests: int
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def distribution(self) -> dict[str, Any]:
        """google.api.Distribution JSON: exponential buckets (scale 1 ms, factor 2, 20 finite
        ones), counts as int64 strings."""
        bounds = [2.0**i for i in range(21)]
        counts = [0] * 22
        for ms in self.latencies_ms:
            counts[sum(1 for b in bounds if ms >= b)] += 1
        return {
            "count": str(len(self.latencies_ms)),
            "bucketOptions": {
                "exponentialBuckets": {"numFiniteBuckets": 20, "growthFactor": 2, "scale": 1}
            },
            "bucketCounts": [str(c) for c in counts],
        }


def vertex_endpoints(fake: FakeVertexServing) -> Any:
    """providers.gcp.endpoint.VertexEndpoints with real SDK clients pointed at the fake."""
    from google.auth.transport.requests import AuthorizedSession
    from google.cloud import aiplatform_v1

    from providers.gcp.endpoint import VertexEndpoints

    credentials = fake_token()
    options = {"api_endpoint": fake.url}
    return VertexEndpoints(
        endpoints=aiplatform_v1.EndpointServiceClient(
            credentials=credentials, transport="rest", client_options=options
        ),
        models=aiplatform_v1.ModelServiceClient(
            credentials=credentials, transport="rest", client_options=options
        ),
        session=AuthorizedSession(credentials),
        api_endpoint=fake.url,
        monitoring_endpoint=fake.url,
    )


def fast_operations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Long-running operations polled at once (the polling itself stays the SDK's)."""
    from providers.gcp import sdk

    monkeypatch.setattr(sdk, "LRO_INITIAL_S", 0.01)
    monkeypatch.setattr(sdk, "LRO_MAX_S", 0.02)
