"""Vertex AI custom jobs through the real SDKs: google-cloud-aiplatform's REST transport,
google-cloud-storage and an authorized session for Cloud Logging, all pointed at one
loopback fake that answers like the Google APIs (tests/http_fake.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from providers.base import Plan, ProviderError, RunRef, State
from providers.gcp import custom_job as gcp
from providers.gcp import sdk as gcp_sdk
from providers.staging import cloud_identity
from recipes.errors import RecipeInputError
from recipes.loader import load_recipe
from tests.conftest import CATALOG, CLI, SUPPORT_DATA
from tests.http_fake import FakeServer, Reply, Seen, json_reply
from training_scripts.launch import Topology, topology, vertex_env, vertex_topology

MULTINODE = CATALOG / "support-triage-multinode.yaml"
QUICKSTART = CATALOG / "quickstart.yaml"
PROJECT = "ml-platform-dev"
PROJECT_NUMBER = "123456789012"  # Vertex answers with the project number, not the id
REGION = "us-central1"
BUCKET = "recipe-artifacts-dev"
ON_VERTEX = [
    "compute.accelerator=L4",
    f"compute.gcp.project={PROJECT}",
    f"compute.gcp.region={REGION}",
    f"compute.gcp.staging_bucket=gs://{BUCKET}/fine-tunes",
    "compute.gcp.wandb_secret=wandb-api-key",
]
ENV_DEFAULTS = {"GOOGLE_CLOUD_PROJECT": PROJECT, "RECIPE_GCP_BUCKET": f"gs://{BUCKET}"}


def plan_for(path: Path = MULTINODE, overrides: list[str] | None = None, attempt: int = 1) -> Plan:
    extra = ON_VERTEX if path == MULTINODE else []
    loaded = load_recipe(path, [*extra, *(overrides or [])])
    recipe = loaded.resolved()
    identity = cloud_identity(recipe.name, loaded.content_hash, attempt)
    return gcp.CustomJobs().plan(recipe, identity)


def custom_job(plan: Plan) -> dict[str, Any]:
    return plan.requests[-1].body["customJob"]


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gcp_sdk, "RETRY_INITIAL_S", 0.01)
    monkeypatch.setattr(gcp_sdk, "RETRY_MAX_S", 0.05)
    monkeypatch.setattr(gcp_sdk, "RETRY_DEADLINE_S", 0.5)
    monkeypatch.setattr(gcp, "LOG_POLL_S", 0.0)


# --- a fake of the Google APIs the provider calls -------------------------------------------


def _enum_names(job: dict[str, Any]) -> dict[str, Any]:
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


def _crc32c(data: bytes) -> str:
    import google_crc32c

    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def _multipart(request: Seen) -> tuple[dict[str, Any], bytes]:
    """The JSON metadata part and the media part of a multipart/related upload."""
    boundary = re.search(r'boundary="?([^";]+)"?', request.headers["content-type"])
    assert boundary, request.headers["content-type"]
    parts = request.body.split(b"--" + boundary.group(1).encode())
    contents = [p.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n") for p in parts[1:-1]]
    metadata, media = contents
    return json.loads(metadata), media


def _error(code: int, status: str, message: str) -> Reply:
    return json_reply(code, {"error": {"code": code, "message": message, "status": status}})


@dataclass
class FakeGoogle:
    """Vertex AI custom jobs, Cloud Storage objects and Cloud Logging entries."""

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

    def __enter__(self) -> FakeGoogle:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def seen(self, method: str, pattern: str) -> list[Seen]:
        return [s for s in self.server.seen if s.method == method and re.search(pattern, s.path)]

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
            return _error(404, "NOT_FOUND", f"CustomJob {match['id']} not found.")
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
            "crc32c": _crc32c(data),
            "metadata": meta.get("metadata", {}),
        }

    def _object(self, _: Seen, match: re.Match[str]) -> Reply:
        name = unquote(match["name"])
        if f"{match['bucket']}/{name}" not in self.objects:
            return _error(404, "NOT_FOUND", f"No such object: {match['bucket']}/{name}")
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
            meta, data = _multipart(request)
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


def provider_for(fake: FakeGoogle) -> gcp.CustomJobs:
    from google.auth.transport.requests import AuthorizedSession
    from google.cloud import aiplatform_v1, storage

    credentials = fake_token()
    jobs = aiplatform_v1.JobServiceClient(
        credentials=credentials,
        transport="rest",
        client_options={"api_endpoint": fake.url},
    )
    gcs = storage.Client(
        project=PROJECT, credentials=credentials, client_options={"api_endpoint": fake.url}
    )
    return gcp.CustomJobs(
        jobs=jobs,
        storage=gcs,
        session=AuthorizedSession(credentials),
        logging_endpoint=fake.url,
    )


# --- plan ------------------------------------------------------------------------------------


def test_plan_is_pure_and_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("plan() touched the network")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")  # unused
    plan = plan_for()
    assert plan.to_dict() == plan_for().to_dict()
    create = plan.requests[-1]
    assert create.api == "vertex:CreateCustomJob"
    assert create.body["parent"] == f"projects/{PROJECT}/locations/{REGION}"
    job = custom_job(plan)
    run_id = plan.identity.run_id
    assert job["displayName"] == run_id and job["labels"] == plan.tags
    assert plan.tags["run_id"] == run_id and plan.tags["cost_center"] == "cc-4711"
    chief, workers = job["jobSpec"]["workerPoolSpecs"]
    assert chief["replicaCount"] == workers["replicaCount"] == "1"  # two nodes
    assert chief["machineSpec"] == {
        "machineType": "g2-standard-48",
        "acceleratorType": "NVIDIA_L4",
        "acceleratorCount": 4,
    }
    assert plan.compute["world_size"] == 8 and plan.compute["instance_type"] == "g2-standard-48"
    container = chief["containerSpec"]
    assert container["imageUri"].startswith("us-docker.pkg.dev/vertex-ai/training/pytorch-gpu.")
    command = container["command"]
    assert command[:2] == ["bash", "-c"]
    assert f"tar -xzf /gcs/{BUCKET}/fine-tunes/code/" in command[2]
    assert command[2].endswith(
        f"python -m training_scripts.launch --config /gcs/{BUCKET}/fine-tunes/runs/{run_id}/recipe.json"
    )
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["RECIPE_WANDB_SECRET"] == (
        f"gcp-secretmanager:projects/{PROJECT}/secrets/wandb-api-key/versions/latest"
    )
    assert job["jobSpec"]["scheduling"] == {
        "timeout": "21600s",
        "restartJobOnWorkerRestart": True,
        "strategy": "SPOT",
    }
    assert job["jobSpec"]["baseOutputDirectory"] == {
        "outputUriPrefix": f"gs://{BUCKET}/fine-tunes/runs/{run_id}"
    }
    uploads = plan.requests[:-1]
    assert {u.api for u in uploads} == {"storage:upload"}
    recipe_json = uploads[-1].body
    assert recipe_json["uri"].endswith(f"/runs/{run_id}/recipe.json") and recipe_json["run_scoped"]
    data = recipe_json["content"]["recipe"]["data"]
    assert data["train"].startswith(f"gs://{BUCKET}/fine-tunes/data/")
    assert (
        plan.estimate.spot_usd is not None and plan.estimate.spot_usd < plan.estimate.on_demand_usd
    )


def test_the_plan_is_the_sdk_message() -> None:
    """What submit() hands the SDK serializes back to exactly the planned JSON."""
    from google.cloud import aiplatform_v1
    from google.protobuf import json_format

    body = custom_job(plan_for())
    message = aiplatform_v1.CustomJob.from_json(json.dumps(body), ignore_unknown_fields=False)
    assert json.loads(json_format.MessageToJson(message._pb)) == body


def test_cpu_single_node_on_demand(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ENV_DEFAULTS.items():
        monkeypatch.setenv(key, value)
    sa = f"ft-runner@{PROJECT}.iam.gserviceaccount.com"
    plan = plan_for(QUICKSTART, [f"compute.gcp.service_account={sa}"])
    job = custom_job(plan)
    (pool,) = job["jobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"] == {"machineType": plan.compute["instance_type"]}  # no GPU fields
    assert "/pytorch-cpu." in pool["containerSpec"]["imageUri"]
    assert job["jobSpec"]["scheduling"]["strategy"] == "STANDARD"
    assert job["jobSpec"]["serviceAccount"] == sa
    assert plan.requests[-1].body["parent"] == f"projects/{PROJECT}/locations/us-central1"
    assert "RECIPE_WANDB_SECRET" not in json.dumps(job)


def test_three_nodes_are_a_chief_and_two_workers() -> None:
    plan = plan_for(overrides=["compute.nodes=3", "training.batch_size=48"])
    pools = custom_job(plan)["jobSpec"]["workerPoolSpecs"]
    assert [p["replicaCount"] for p in pools] == ["1", "2"]
    assert pools[0]["machineSpec"] == pools[1]["machineSpec"]


def test_project_and_bucket_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.delenv("RECIPE_GCP_BUCKET", raising=False)
    with pytest.raises(RecipeInputError) as err:
        plan_for(QUICKSTART)
    fields = {p.field for p in err.value.problems}
    assert fields == {"compute.gcp.project", "compute.gcp.staging_bucket"}
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    monkeypatch.setenv("RECIPE_GCP_BUCKET", f"s3://{BUCKET}")
    with pytest.raises(RecipeInputError, match="expected gs://BUCKET"):
        plan_for(QUICKSTART)


def test_what_vertex_cannot_do_is_listed() -> None:
    with pytest.raises(RecipeInputError) as err:
        plan_for(overrides=["compute.accelerator=A10G"])
    assert "gcp cannot provide A10G" in str(err.value)
    with pytest.raises(RecipeInputError, match="no gcp offer has 3x L4"):
        plan_for(overrides=["compute.gpus_per_node=3"])
    with pytest.raises(RecipeInputError, match="secret store"):
        plan_for(overrides=["compute.gcp.wandb_secret=null"])


def test_no_secret_in_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "wandb-value-should-never-travel")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/keys/should-never-travel.json")
    text = json.dumps(plan_for().to_dict())
    assert "should-never-travel" not in text and "WANDB_API_KEY" not in text


# --- submit ----------------------------------------------------------------------------------


def test_submit_sends_the_plan_and_is_idempotent() -> None:
    with FakeGoogle() as fake:
        provider = provider_for(fake)
        plan = plan_for()
        ref = provider.submit(plan).ref
        (create,) = fake.seen("POST", r"/customJobs$")
        assert create.path == f"/v1/projects/{PROJECT}/locations/{REGION}/customJobs"
        assert _enum_names(create.json()) == custom_job(plan)  # exactly what plan showed
        job_name = next(iter(fake.jobs.values()))["name"]
        assert ref.run_id == plan.identity.run_id
        assert ref.ids == {
            "project": PROJECT,
            "region": REGION,
            "run_id": plan.identity.run_id,
            "job": job_name,
        }

        # Every planned upload is there, with the run's tags in its metadata.
        for upload in plan.requests[:-1]:
            data, meta = fake.objects[upload.body["uri"][len("gs://") :]]
            assert meta["metadata"]["run_id"] == plan.identity.run_id
            if "sha256" in upload.body:
                assert meta["metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
            else:
                assert json.loads(data) == upload.body["content"]

        again = provider.submit(plan_for())
        assert again.existing and again.ref.ids["job"] == job_name
        assert len(fake.seen("POST", r"/customJobs$")) == 1
        listed = fake.seen("GET", r"/customJobs$")[-1]
        assert listed.query["filter"] == [f'labels.run_id="{plan.identity.run_id}"']
        assert provider.latest_attempt(plan) == 1


def test_unchanged_code_and_data_are_not_uploaded_again() -> None:
    with FakeGoogle() as fake:
        provider = provider_for(fake)
        provider.submit(plan_for())
        assert len(fake.seen("POST", r"^/upload/")) == 4  # code, train, golden, recipe.json
        before = len(fake.server.seen)
        second = plan_for(attempt=2)
        provider.submit(second)
        uploads = [s for s in fake.server.seen[before:] if s.path.startswith("/upload/")]
        assert [_multipart(s)[0]["name"].rsplit("/", 1)[-1] for s in uploads] == ["recipe.json"]
        assert provider.latest_attempt(second) == 2


def test_large_data_goes_through_a_resumable_upload(tmp_path: Path) -> None:
    rows = (SUPPORT_DATA / "train.jsonl").read_bytes()
    big = tmp_path / "train.jsonl"
    big.write_bytes(rows * (9 * 2**20 // len(rows) + 1))  # over the 8 MiB multipart limit
    with FakeGoogle() as fake:
        plan = plan_for(overrides=[f"data.train={big}"])
        provider_for(fake).submit(plan)
        assert fake.seen("PUT", r"^/upload/")  # the resumable session
        train = next(r.body for r in plan.requests if r.body.get("source") == str(big))
        data, meta = fake.objects[train["uri"][len("gs://") :]]
        assert data == big.read_bytes() and meta["metadata"]["sha256"] == train["sha256"]


def test_failed_create_leaves_no_orphan() -> None:
    message = "Permission 'aiplatform.customJobs.create' denied on resource (or it may not exist)."
    with FakeGoogle() as fake:
        fake.failures["create"] = [_error(403, "PERMISSION_DENIED", message)]
        with pytest.raises(ProviderError) as err:
            provider_for(fake).submit(plan_for())
    text = str(err.value)
    assert text.startswith(f"CreateCustomJob failed: 403 PERMISSION_DENIED: {message}")
    assert "left in Cloud Storage" in text and "\n" not in text
    names = list(fake.objects)
    assert not any(n.endswith("recipe.json") for n in names)  # run-scoped: removed
    assert any(n.endswith("sourcedir.tar.gz") for n in names)  # content-addressed: reported
    assert fake.seen("DELETE", r"recipe\.json$")


def test_create_retries_only_answers_that_mean_not_taken() -> None:
    with FakeGoogle() as fake:
        fake.failures["create"] = [
            _error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for aiplatform.googleapis.com"),
            _error(503, "UNAVAILABLE", "The service is currently unavailable."),
        ]
        ref = provider_for(fake).submit(plan_for()).ref
        assert len(fake.seen("POST", r"/customJobs$")) == 3 and ref.ids["job"]
    with FakeGoogle() as fake:
        fake.failures["create"] = [_error(500, "INTERNAL", "Internal error encountered.")]
        with pytest.raises(ProviderError, match="CreateCustomJob failed: 500 INTERNAL"):
            provider_for(fake).submit(plan_for())
        assert len(fake.seen("POST", r"/customJobs$")) == 1  # it may have been created


# --- status / logs / cancel ------------------------------------------------------------------


def submitted(fake: FakeGoogle) -> tuple[gcp.CustomJobs, RunRef]:
    provider = provider_for(fake)
    return provider, provider.submit(plan_for()).ref


def test_status_transitions() -> None:
    with FakeGoogle() as fake:
        provider, ref = submitted(fake)
        fake.states = [
            "JOB_STATE_QUEUED",
            "JOB_STATE_PENDING",
            "JOB_STATE_RUNNING",
            "JOB_STATE_SUCCEEDED",
        ]
        seen = [provider.status(ref).state for _ in range(4)]
        assert seen == [State.QUEUED, State.QUEUED, State.RUNNING, State.SUCCEEDED]
        final = provider.status(ref)
        assert final.message == "SUCCEEDED"
        base = f"gs://{BUCKET}/fine-tunes/runs/{ref.run_id}"
        assert final.artifacts["model"] == f"{base}/model"
        assert final.artifacts["job"] == ref.ids["job"]
        fake.states = ["JOB_STATE_FAILED"]
        failed = provider.status(ref)
        assert failed.state == State.FAILED
        assert failed.message == "FAILED: The replica workerpool0-0 exited with status 1."


@pytest.mark.parametrize(
    ("vertex", "state"),
    [
        ("JOB_STATE_CANCELLING", State.RUNNING),
        ("JOB_STATE_CANCELLED", State.CANCELLED),
        ("JOB_STATE_EXPIRED", State.FAILED),
        ("JOB_STATE_PAUSED", State.QUEUED),
        ("JOB_STATE_UPDATING", State.RUNNING),
    ],
)
def test_state_mapping(vertex: str, state: State) -> None:
    from google.cloud import aiplatform_v1

    job = aiplatform_v1.CustomJob(name="projects/1/locations/r/customJobs/2", state=vertex)
    ref = RunRef(provider="gcp", run_id="j", ids={"job": job.name})
    assert gcp.status_from_job(ref, job).state == state


def test_logs_read_cloud_logging() -> None:
    with FakeGoogle() as fake:
        provider, ref = submitted(fake)
        job_id = ref.ids["job"].rsplit("/", 1)[-1]
        fake.entries = [
            [
                log_entry(job_id, 1, "launch: Topology(nnodes=2, node_rank=0)\n"),
                log_entry(job_id, 2, "step 10/40 loss 1.23\n"),
            ]
        ]
        assert list(provider.logs(ref)) == [
            "launch: Topology(nnodes=2, node_rank=0)\n",
            "step 10/40 loss 1.23\n",
        ]
        (call,) = fake.seen("POST", r"^/v2/entries:list$")
        assert call.json() == {
            "resourceNames": [f"projects/{PROJECT}"],
            "filter": f'resource.type="ml_job" AND resource.labels.job_id="{job_id}"',
            "orderBy": "timestamp asc",
            "pageSize": 1000,
        }


def test_follow_polls_until_the_job_ends_without_repeating_lines() -> None:
    with FakeGoogle() as fake:
        provider, ref = submitted(fake)
        job_id = ref.ids["job"].rsplit("/", 1)[-1]
        first = [log_entry(job_id, 1, "launch"), log_entry(job_id, 2, "step 1", "workerpool1-0")]
        second = [*first, log_entry(job_id, 2, "step 1"), log_entry(job_id, 3, "done")]
        fake.entries = [first, second]
        fake.states = ["JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"]
        lines = list(provider.logs(ref, follow=True))
        assert lines == [
            "[workerpool0-0] launch\n",
            "[workerpool1-0] step 1\n",
            "[workerpool0-0] step 1\n",
            "[workerpool0-0] done\n",
        ]
        second_query = fake.seen("POST", r"^/v2/entries:list$")[1].json()["filter"]
        assert second_query.endswith('AND timestamp>="2026-11-22T10:05:02.000000Z"')


def test_cancel() -> None:
    with FakeGoogle() as fake:
        provider, ref = submitted(fake)
        fake.states = ["JOB_STATE_RUNNING"]
        assert provider.cancel(ref).state == State.RUNNING  # cancelling: not over yet
        (cancel,) = fake.seen("POST", r":cancel$")
        assert cancel.path == f"/v1/{ref.ids['job']}:cancel"
        fake.states = ["JOB_STATE_CANCELLED"]
        assert provider.cancel(ref).state == State.CANCELLED
        assert len(fake.seen("POST", r":cancel$")) == 1  # nothing left to stop


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "message", "expected"),
    [
        (
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
            "GetCustomJob failed: 401 UNAUTHENTICATED: Request had invalid authentication "
            "credentials. (run `gcloud auth application-default login`)",
        ),
        (
            403,
            "PERMISSION_DENIED",
            "Vertex AI API has not been used in project 123456789012 before or it is disabled.",
            "GetCustomJob failed: 403 PERMISSION_DENIED: Vertex AI API has not been used in "
            "project 123456789012 before or it is disabled. (check the project, the Vertex AI "
            "API and the caller's roles)",
        ),
        (
            404,
            "NOT_FOUND",
            "The CustomJob does not exist.",
            "GetCustomJob failed: 404 NOT_FOUND: The CustomJob does not exist.",
        ),
    ],
)
def test_api_errors_are_one_clear_line(code: int, status: str, message: str, expected: str) -> None:
    with FakeGoogle() as fake:
        provider, ref = submitted(fake)
        fake.failures["get"] = [_error(code, status, message)] * 3
        with pytest.raises(ProviderError) as err:
            provider.status(ref)
        assert str(err.value) == expected
        # Not retried; on a 401 the session refreshes the token and asks again, twice.
        assert len(fake.seen("GET", r"/customJobs/\d+$")) == (3 if code == 401 else 1)


@pytest.mark.parametrize(
    ("code", "status"), [(429, "RESOURCE_EXHAUSTED"), (500, "INTERNAL"), (503, "UNAVAILABLE")]
)
def test_throttling_and_5xx_are_retried(code: int, status: str) -> None:
    with FakeGoogle() as fake:
        provider, ref = submitted(fake)
        fake.failures["get"] = [_error(code, status, "try again later")] * 2
        assert provider.status(ref).state == State.QUEUED
        assert len(fake.seen("GET", r"/customJobs/\d+$")) == 3
        fake.failures["get"] = [_error(code, status, "try again later")] * 1000
        with pytest.raises(ProviderError) as err:
            provider.status(ref)
        assert str(err.value) == f"GetCustomJob failed: {code} {status}: try again later"


def test_logging_errors_are_one_line() -> None:
    with FakeGoogle() as fake:
        provider, ref = submitted(fake)
        fake.failures["entries"] = [
            _error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Read requests'"),
            _error(403, "PERMISSION_DENIED", "Permission 'logging.logEntries.list' denied."),
        ]
        with pytest.raises(ProviderError) as err:
            list(provider.logs(ref))
        assert str(err.value).startswith(
            "Cloud Logging entries.list failed: 403 PERMISSION_DENIED: Permission "
            "'logging.logEntries.list' denied."
        )


def test_missing_credentials_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    monkeypatch.delenv(gcp_sdk.VERTEX_ENDPOINT_ENV, raising=False)
    with pytest.raises(ProviderError) as err:
        gcp.CustomJobs().submit(plan_for())
    assert str(err.value) == gcp_sdk.NO_CREDENTIALS


def test_unreachable_endpoint_is_one_line() -> None:
    with FakeGoogle() as fake:
        _, ref = submitted(fake)
    offline = provider_for(fake)  # new connections, to a port nobody listens on now
    with pytest.raises(ProviderError, match=r"^GetCustomJob: cannot reach Google Cloud"):
        offline.status(ref)


# --- inside the job --------------------------------------------------------------------------


def test_vertex_cluster_spec_topology() -> None:
    spec = {
        "cluster": {
            "workerpool0": ["cmle-training-workerpool0-4a1b2c3d4e-0:2222"],
            "workerpool1": [
                "cmle-training-workerpool1-4a1b2c3d4e-0:2222",
                "cmle-training-workerpool1-4a1b2c3d4e-1:2222",
            ],
        },
        "environment": "cloud",
        "task": {"type": "workerpool1", "index": 1},
        "job": '{"worker_pool_specs": []}',
    }
    chief_host = "cmle-training-workerpool0-4a1b2c3d4e-0"
    worker = topology({"CLUSTER_SPEC": json.dumps(spec)}, devices=4)
    assert worker == Topology(nnodes=3, node_rank=2, master_addr=chief_host, nproc_per_node=4)
    spec["task"] = {"type": "workerpool0", "index": 0}
    chief = vertex_topology(json.dumps(spec), devices=4)
    assert (chief.nnodes, chief.node_rank, chief.master_addr) == (3, 0, chief_host)
    single = {"cluster": {"workerpool0": ["host-0:2222"]}, "task": {"type": "workerpool0"}}
    assert vertex_topology(json.dumps(single), 1) == Topology(1, 0, "host-0", 1)
    spec["task"] = {"type": "workerpool2", "index": 0}  # a reduction server: not ours
    with pytest.raises(SystemExit, match="workerpool2"):
        vertex_topology(json.dumps(spec), 4)


def test_vertex_jobs_tokenize_on_local_disk() -> None:
    vertex = {"AIP_MODEL_DIR": f"gs://{BUCKET}/runs/r/model", "CLOUD_ML_JOB_ID": "1"}
    assert vertex_env(vertex) == {"RECIPE_CACHE_DIR": "/tmp/recipe-cache"}
    assert vertex_env({**vertex, "RECIPE_CACHE_DIR": "/mnt/cache"}) == {}
    assert vertex_env({"SM_MODEL_DIR": "/opt/ml/model"}) == {}


def test_wandb_key_from_secret_manager() -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.auth.transport.requests import AuthorizedSession

    from training_scripts.secrets import gcp_secret

    name = f"projects/{PROJECT}/secrets/wandb-api-key/versions/latest"
    value = "placeholder-not-a-key"
    server = FakeServer()
    server.route(
        "GET",
        rf"/v1/{name}:access",
        lambda *_: json_reply(
            200,
            {
                "name": name.replace("latest", "3"),
                "payload": {"data": base64.b64encode(value.encode()).decode()},
            },
        ),
    )
    with server:
        session = AuthorizedSession(AnonymousCredentials())
        assert gcp_secret(name, session, server.url) == value
        with pytest.raises(SystemExit) as err:
            gcp_secret(name.replace("wandb", "other"), session, server.url)
    assert "answered 404" in str(err.value) and value not in str(err.value)


# --- the CLI -----------------------------------------------------------------------------


@pytest.fixture
def gcp_cli(cli: CLI) -> Any:
    with FakeGoogle() as fake:
        cli.env.update(
            {
                gcp_sdk.VERTEX_ENDPOINT_ENV: fake.url,
                gcp.LOGGING_ENDPOINT_ENV: fake.url,
                "STORAGE_EMULATOR_HOST": fake.url,
            }
        )
        yield cli, fake


def test_cli_run_status_logs_cancel_over_http(gcp_cli: Any) -> None:
    cli, fake = gcp_cli
    args = [str(MULTINODE), "--provider", "gcp", *ON_VERTEX]
    plan = cli("plan", *args, "--format", "json")
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    run = cli("run", *args)
    assert run.returncode == 0, run.stderr
    run_id = run.stdout.strip()
    assert run_id == planned["run_id"]
    (create,) = fake.seen("POST", r"/customJobs$")
    assert _enum_names(create.json()) == planned["requests"][-1]["body"]["customJob"]

    again = cli("run", *args)
    assert again.returncode == 0 and again.stdout.strip() == run_id
    assert "already exists" in again.stderr
    assert len(fake.seen("POST", r"/customJobs$")) == 1

    job_id = next(iter(fake.jobs))
    fake.entries = [[log_entry(job_id, 1, "launch: Topology(nnodes=2)")]]
    printed = cli("logs", run_id)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.splitlines() == ["launch: Topology(nnodes=2)"]

    fake.states = ["JOB_STATE_RUNNING", "JOB_STATE_RUNNING", "JOB_STATE_CANCELLED"]
    status = cli("status", run_id, "--format", "json")
    assert json.loads(status.stdout)["state"] == "running"
    cancel = cli("cancel", run_id)
    assert cancel.returncode == 0, cancel.stderr
    assert fake.seen("POST", r":cancel$")


def test_cli_missing_credentials_is_one_line(cli: CLI, tmp_path: Path) -> None:
    cli.env.pop(gcp_sdk.VERTEX_ENDPOINT_ENV, None)
    cli.env.update(
        {
            "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "missing.json"),
            "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
            "NO_GCE_CHECK": "True",
        }
    )
    result = cli("run", str(MULTINODE), "--provider", "gcp", *ON_VERTEX)
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [f"error: {gcp_sdk.NO_CREDENTIALS}"]
