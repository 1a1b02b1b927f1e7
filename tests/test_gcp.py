"""Vertex AI custom jobs, what is particular to them: the CustomJob body (and that it is
the SDK's message), worker pools, resumable uploads, retries only where a create was not
taken, Cloud Logging, one-line API errors, the CLI, and the job's side (cluster spec,
Secret Manager). The real SDKs run against tests/fakes/gcp.py. The contract every backend
keeps is tests/test_backend_contract.py."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from providers import images
from providers.base import Plan, ProviderError, RunRef, State
from providers.gcp import custom_job as gcp
from providers.gcp import sdk as gcp_sdk
from providers.staging import cloud_identity
from recipes.errors import RecipeInputError
from recipes.loader import load_recipe
from tests.conftest import CLI, MULTINODE, QUICKSTART, SUPPORT_DATA
from tests.fakes.gcp import (
    BUCKET,
    ON_VERTEX,
    PROJECT,
    REGION,
    FakeGoogle,
    custom_jobs,
    enum_names,
    error,
    fast_retries,
    log_entry,
)
from tests.fakes.http import FakeServer, json_reply
from training_scripts.launch import Topology, topology, vertex_env, vertex_topology

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
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_retries(monkeypatch)


# --- plan ------------------------------------------------------------------------------------


def test_plan_is_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")  # unused
    plan = plan_for()
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
    # Vertex's prebuilt PyTorch images stop at torch 2.4: the catalog's image instead.
    assert container["imageUri"] == images.default("gcp", "custom-job", gpu=True).uri
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
    assert pool["containerSpec"]["imageUri"] == images.default("gcp", "custom-job", gpu=False).uri
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


# --- submit ----------------------------------------------------------------------------------


def test_the_job_is_found_again_by_its_run_id_label() -> None:
    with FakeGoogle() as fake:
        provider = custom_jobs(fake)
        plan = plan_for()
        ref = provider.submit(plan).ref
        (create,) = fake.creates()
        assert create.path == f"/v1/projects/{PROJECT}/locations/{REGION}/customJobs"
        job_name = next(iter(fake.jobs.values()))["name"]  # with the project number
        assert ref.ids == {
            "project": PROJECT,
            "region": REGION,
            "run_id": plan.identity.run_id,
            "job": job_name,
        }
        again = provider.submit(plan_for())
        assert again.existing and again.ref.ids["job"] == job_name
        listed = fake.seen("GET", r"/customJobs$")[-1]
        assert listed.query["filter"] == [f'labels.run_id="{plan.identity.run_id}"']


def test_large_data_goes_through_a_resumable_upload(tmp_path: Path) -> None:
    rows = (SUPPORT_DATA / "train.jsonl").read_bytes()
    big = tmp_path / "train.jsonl"
    big.write_bytes(rows * (9 * 2**20 // len(rows) + 1))  # over the 8 MiB multipart limit
    with FakeGoogle() as fake:
        plan = plan_for(overrides=[f"data.train={big}"])
        custom_jobs(fake).submit(plan)
        assert fake.seen("PUT", r"^/upload/")  # the resumable session
        train = next(r.body for r in plan.requests if r.body.get("source") == str(big))
        data, meta = fake.objects[train["uri"][len("gs://") :]]
        assert data == big.read_bytes() and meta["metadata"]["sha256"] == train["sha256"]


def test_refused_create_is_one_clear_line() -> None:
    message = "Permission 'aiplatform.customJobs.create' denied on resource (or it may not exist)."
    with FakeGoogle() as fake:
        fake.failures["create"] = [error(403, "PERMISSION_DENIED", message)]
        with pytest.raises(ProviderError) as err:
            custom_jobs(fake).submit(plan_for())
        assert fake.seen("DELETE", r"recipe\.json$")  # the run-scoped upload, removed
    text = str(err.value)
    assert text.startswith(f"CreateCustomJob failed: 403 PERMISSION_DENIED: {message}")
    assert "left in Cloud Storage" in text and "\n" not in text


def test_create_retries_only_answers_that_mean_not_taken() -> None:
    """429 and 503 are retried (the contract suite); a 500 may come after the job was
    created, and Vertex has no request id for CreateCustomJob: not retried."""
    with FakeGoogle() as fake:
        fake.failures["create"] = [error(500, "INTERNAL", "Internal error encountered.")]
        with pytest.raises(ProviderError, match="CreateCustomJob failed: 500 INTERNAL"):
            custom_jobs(fake).submit(plan_for())
        assert len(fake.seen("POST", r"/customJobs$")) == 1  # it may have been created


# --- status / logs / cancel ------------------------------------------------------------------


def submitted(fake: FakeGoogle) -> tuple[gcp.CustomJobs, RunRef]:
    provider = custom_jobs(fake)
    return provider, provider.submit(plan_for()).ref


def test_status_names_artifacts_and_the_failure() -> None:
    with FakeGoogle() as fake:
        provider, ref = submitted(fake)
        fake.states = ["JOB_STATE_SUCCEEDED"]
        final = provider.status(ref)
        assert final.message == "SUCCEEDED"
        base = f"gs://{BUCKET}/fine-tunes/runs/{ref.run_id}"
        assert final.artifacts["model"] == f"{base}/model"
        assert final.artifacts["job"] == ref.ids["job"]
        fake.states = ["JOB_STATE_FAILED"]
        failed = provider.status(ref)
        assert failed.state == State.FAILED
        assert failed.message == "FAILED: The replica workerpool0-0 exited with status 1."


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
        fake.failures["get"] = [error(code, status, message)] * 3
        with pytest.raises(ProviderError) as err:
            provider.status(ref)
        assert str(err.value) == expected
        # Not retried; on a 401 the session refreshes the token and asks again, twice.
        assert len(fake.seen("GET", r"/customJobs/\d+$")) == (3 if code == 401 else 1)


@pytest.mark.parametrize(
    ("code", "status"), [(429, "RESOURCE_EXHAUSTED"), (500, "INTERNAL"), (503, "UNAVAILABLE")]
)
def test_reads_retry_throttling_and_5xx_then_give_up_in_one_line(code: int, status: str) -> None:
    with FakeGoogle() as fake:
        provider, ref = submitted(fake)
        fake.failures["get"] = [error(code, status, "try again later")] * 2
        assert provider.status(ref).state == State.QUEUED
        assert len(fake.seen("GET", r"/customJobs/\d+$")) == 3
        fake.failures["get"] = [error(code, status, "try again later")] * 1000
        with pytest.raises(ProviderError) as err:
            provider.status(ref)
        assert str(err.value) == f"GetCustomJob failed: {code} {status}: try again later"


def test_logging_errors_are_one_line() -> None:
    with FakeGoogle() as fake:
        provider, ref = submitted(fake)
        fake.failures["entries"] = [
            error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Read requests'"),
            error(403, "PERMISSION_DENIED", "Permission 'logging.logEntries.list' denied."),
        ]
        with pytest.raises(ProviderError) as err:
            list(provider.logs(ref))
        assert str(err.value).startswith(
            "Cloud Logging entries.list failed: 403 PERMISSION_DENIED: Permission "
            "'logging.logEntries.list' denied."
        )


def test_unreachable_endpoint_is_one_line() -> None:
    with FakeGoogle() as fake:
        _, ref = submitted(fake)
    offline = custom_jobs(fake)  # new connections, to a port nobody listens on now
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
    assert enum_names(create.json()) == planned["requests"][-1]["body"]["customJob"]

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
