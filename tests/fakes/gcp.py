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
