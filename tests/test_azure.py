"""Azure ML command jobs through the real MLClient and azure-storage-blob, against an HTTP
fake of the ARM jobs/datastores API and of Blob storage (realistic bodies, asserted requests)."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from providers.azure.command_job import CommandJobs
from providers.azure.storage import split_uri
from providers.base import Plan, ProviderError, RunRef, State
from providers.staging import cloud_identity
from recipes.errors import RecipeInputError
from recipes.loader import load_recipe
from tests.conftest import CATALOG
from tests.http_fake import FakeServer, Reply, Seen, json_reply

SUB = "00000000-0000-0000-0000-000000000000"
WS_PATH = f"/subscriptions/{SUB}/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/ws-ml"
MULTINODE = CATALOG / "support-triage-multinode.yaml"
AZURE = [
    "compute.accelerator=T4",  # Azure sells no A10G; the catalog recipe asks for it
    "compute.azure.compute=gpu-cluster",
    "compute.azure.wandb_secret=https://kv-ml.vault.azure.net/secrets/wandb-api-key",
]


class FakeAzureML:
    """Jobs (get, put, list, cancel), datastores (get, listSecrets) and blobs."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.blobs: dict[str, bytes] = {}
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
        r("HEAD", r"/stml/(?P<container>[^/]+)/(?P<blob>.+)", self.head_blob)
        r("PUT", r"/stml/(?P<container>[^/]+)/(?P<blob>.+)", self.put_blob)
        r("GET", r"/stml/(?P<container>[^/]+)/(?P<blob>.+)", self.get_blob)
        r("DELETE", r"/stml/(?P<container>[^/]+)/(?P<blob>.+)", self.delete_blob)
        original = self.server.dispatch

        def dispatch(request: Seen) -> Reply:
            for key, statuses in self.fail.items():
                method, pattern = key.split(" ", 1)
                if request.method == method and re.search(pattern, request.path) and statuses:
                    status = statuses.pop(0)
                    return json_reply(
                        status,
                        {"error": {"code": _code(status), "message": f"fake {status} answer"}},
                        {"x-ms-error-code": _code(status), "Retry-After": "0"},
                    )
            return original(request)

        self.server.dispatch = dispatch  # type: ignore[method-assign]

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
                    "accountName": "stml",
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
        data, meta = self.blobs[key], self.meta.get(key, {})
        headers = {
            "Content-Length": str(len(data)),
            "x-ms-blob-type": "BlockBlob",
            "ETag": '"0x1"',
            "Last-Modified": "Sun, 22 Nov 2026 10:00:00 GMT",
        }
        headers.update({f"x-ms-meta-{k}": v for k, v in meta.items()})
        return 200, headers, b""

    meta: dict[str, dict[str, str]] = {}

    def put_blob(self, request: Seen, match: re.Match[str]) -> Reply:
        key = f"{match['container']}/{match['blob']}"
        self.blobs[key] = request.body
        self.meta[key] = {
            k[len("x-ms-meta-") :]: v
            for k, v in request.headers.items()
            if k.startswith("x-ms-meta-")
        }
        return 201, {"ETag": '"0x1"', "Last-Modified": "Sun, 22 Nov 2026 10:00:00 GMT"}, b""

    def get_blob(self, request: Seen, match: re.Match[str]) -> Reply:
        data = self.blobs.get(f"{match['container']}/{match['blob']}")
        if data is None:
            return (
                404,
                {"x-ms-error-code": "BlobNotFound", "Content-Type": "application/xml"},
                (b'<?xml version="1.0" encoding="utf-8"?><Error><Code>BlobNotFound</Code></Error>'),
            )
        first, last = (int(x) for x in request.headers["x-ms-range"].split("=")[1].split("-"))
        last = min(last, len(data) - 1)
        return (
            206,
            {
                "Content-Range": f"bytes {first}-{last}/{len(data)}",
                "x-ms-blob-type": "BlockBlob",
                "ETag": '"0x1"',
                "Last-Modified": "Sun, 22 Nov 2026 10:00:00 GMT",
            },
            data[first : last + 1],
        )

    def delete_blob(self, _: Seen, match: re.Match[str]) -> Reply:
        self.blobs.pop(f"{match['container']}/{match['blob']}", None)
        return 202, {}, b""


def _code(status: int) -> str:
    return {
        401: "AuthenticationFailed",
        403: "AuthorizationFailed",
        404: "NotFound",
        429: "TooManyRequests",
    }.get(status, "InternalServerError")


@pytest.fixture
def azure(monkeypatch: pytest.MonkeyPatch) -> Any:
    fake = FakeAzureML()
    with fake.server:
        monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUB)
        monkeypatch.setenv("AZURE_RESOURCE_GROUP", "rg-ml")
        monkeypatch.setenv("AZUREML_WORKSPACE_NAME", "ws-ml")
        monkeypatch.setenv("AZUREML_DEV_URL_MFE", fake.server.url)  # azure-ai-ml's ARM endpoint
        monkeypatch.setenv("RECIPE_AZURE_BLOB_ENDPOINT", f"{fake.server.url}/stml")
        yield fake


def ml_client() -> Any:
    from azure.ai.ml import MLClient
    from azure.core.credentials import AccessToken

    class FakeCredential:
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            return AccessToken("fake-token", int(time.time()) + 3600)

    return MLClient(FakeCredential(), SUB, "rg-ml", "ws-ml", enable_telemetry=False)


def plan_for(path: Path, overrides: list[str], attempt: int = 1) -> Plan:
    loaded = load_recipe(path, overrides)
    recipe = loaded.resolved()
    identity = cloud_identity(recipe.name, loaded.content_hash, attempt)
    return CommandJobs().plan(recipe, identity)


def test_plan_is_pure_and_complete(monkeypatch: pytest.MonkeyPatch, azure: FakeAzureML) -> None:
    def no_network(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("plan() touched the network")

    plan = plan_for(MULTINODE, AZURE)
    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    assert plan_for(MULTINODE, AZURE).to_dict() == plan.to_dict()
    create = plan.requests[-1]
    assert create.api == "azureml:CreateOrUpdateJob"
    assert (
        create.body["url"]
        == f"{WS_PATH}/jobs/{plan.identity.run_id}?api-version=2025-01-01-preview"
    )
    props = create.body["job"]["properties"]
    assert props["jobType"] == "Command"
    assert props["computeId"] == f"{WS_PATH}/computes/gpu-cluster"
    # One launch process per node (it starts torchrun with one trainer per GPU), the way
    # Azure ML documents bringing one's own torchrun: MASTER_ADDR/MASTER_PORT/NODE_RANK set.
    assert props["distribution"] == {"distributionType": "PyTorch", "processCountPerInstance": 1}
    assert "exec python -m training_scripts.launch --config ${{inputs.recipe}}" in props["command"]
    assert props["command"].endswith("--output-dir ${{outputs.model}} --nnodes 2")
    assert props["resources"]["instanceCount"] == 2
    assert props["limits"]["timeout"] == "PT6H"
    assert set(props["inputs"]) == {"code", "recipe", "train", "golden"}
    assert props["environmentVariables"]["RECIPE_WANDB_SECRET"].startswith(
        "azure-keyvault:https://kv-ml"
    )
    assert props["tags"] == plan.tags and plan.tags["cost_center"] == "cc-4711"
    assert (
        plan.compute["instance_type"] == "Standard_NC64as_T4_v3"
        or plan.compute["gpus_per_node"] == 4
    )
    assert any("low-priority" in n for n in plan.notes)


def test_submit_sends_the_plan_and_is_idempotent(azure: FakeAzureML) -> None:
    provider = CommandJobs(ml_client=ml_client())
    plan = plan_for(CATALOG / "quickstart.yaml", ["compute.azure.compute=cpu-cluster"])
    provider.submit(plan)
    puts = [s for s in azure.server.seen if s.method == "PUT" and "/jobs/" in s.path]
    assert len(puts) == 1 and puts[0].json() == plan.requests[-1].body["job"]
    assert puts[0].query["api-version"] == ["2025-01-01-preview"]
    assert puts[0].headers["authorization"] == "Bearer fake-token"
    for upload in plan.requests[:-1]:
        datastore, path = split_uri(upload.body["uri"])
        assert f"azureml-{datastore}/{path}" in azure.blobs
    recipe_json = plan.requests[-2].body
    stored = azure.blobs["azureml-workspaceblobstore/" + split_uri(recipe_json["uri"])[1]]
    assert json.loads(stored) == recipe_json["content"]

    again = provider.submit(plan)
    assert again.existing
    assert len([s for s in azure.server.seen if s.method == "PUT" and "/jobs/" in s.path]) == 1
    assert provider.latest_attempt(plan) == 1

    # A new attempt re-uploads only its recipe.json: code and data are content-addressed.
    before = len([s for s in azure.server.seen if s.method == "PUT" and "/stml/" in s.path])
    provider.submit(plan_for(CATALOG / "quickstart.yaml", ["compute.azure.compute=cpu-cluster"], 2))
    blob_puts = [s.path for s in azure.server.seen if s.method == "PUT" and "/stml/" in s.path][
        before:
    ]
    assert [p.rsplit("/", 1)[-1] for p in blob_puts] == ["recipe.json"]


def test_status_logs_cancel(azure: FakeAzureML) -> None:
    provider = CommandJobs(ml_client=ml_client())
    plan = plan_for(CATALOG / "quickstart.yaml", ["compute.azure.compute=cpu-cluster"])
    ref = provider.submit(plan).ref
    seen = []
    for status in ("Queued", "Preparing", "Running", "Finalizing", "Completed"):
        azure.set_status(ref.run_id, status)
        seen.append(provider.status(ref).state)
    assert seen == [State.QUEUED, State.QUEUED, State.RUNNING, State.RUNNING, State.SUCCEEDED]
    azure.set_status(ref.run_id, "Failed")
    assert provider.status(ref).state == State.FAILED

    log = f"azureml-workspaceartifactstore/ExperimentRun/dcid.{ref.run_id}/user_logs/std_log.txt"
    azure.blobs[log] = b"launch: Topology(nnodes=1)\nstep 10/270 loss 2.1\n"
    assert list(provider.logs(ref)) == ["launch: Topology(nnodes=1)\n", "step 10/270 loss 2.1\n"]

    azure.set_status(ref.run_id, "Running")
    assert provider.cancel(ref).state == State.RUNNING  # CancelRequested: not over yet
    assert any(s.path.endswith("/cancel") for s in azure.server.seen)
    azure.set_status(ref.run_id, "Canceled")
    assert provider.status(ref).state == State.CANCELLED


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, "Azure login failed ((AuthenticationFailed) fake 401 answer); run `az login`"),
        (403, "could not create the Azure ML job: 403"),
        (404, "could not create the Azure ML job: 404"),
    ],
)
def test_error_answers_are_one_clear_line(azure: FakeAzureML, status: int, message: str) -> None:
    provider = CommandJobs(ml_client=ml_client())
    plan = plan_for(CATALOG / "quickstart.yaml", ["compute.azure.compute=cpu-cluster"])
    azure.fail[r"PUT /jobs/"] = [status] * 5  # the SDK retries a 401 with a fresh token
    with pytest.raises(ProviderError) as err:
        provider.submit(plan)
    text = str(err.value)
    assert text.startswith(message) and "\n" not in text
    assert "left in the datastore" in text  # code and data stay, reported
    assert not any(k.endswith("recipe.json") for k in azure.blobs)  # run-scoped: removed


def test_throttling_and_5xx_are_retried(azure: FakeAzureML) -> None:
    provider = CommandJobs(ml_client=ml_client())
    plan = plan_for(CATALOG / "quickstart.yaml", ["compute.azure.compute=cpu-cluster"])
    azure.fail[r"PUT /jobs/"] = [429, 503]
    provider.submit(plan)
    puts = [s for s in azure.server.seen if s.method == "PUT" and "/jobs/" in s.path]
    assert len(puts) == 3 and plan.identity.run_id in azure.jobs


def test_workspace_and_cluster_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(RecipeInputError) as err:
        plan_for(CATALOG / "quickstart.yaml", [])
    text = str(err.value)
    for field in ("subscription", "resource_group", "workspace", "compute"):
        assert f"compute.azure.{field}" in text


def test_job_finds_inputs_where_azure_ml_mounts_them(tmp_path: Path) -> None:
    from training_scripts.platforms import data_path, resolve

    mounted = tmp_path / "inputs" / "train.jsonl"
    mounted.parent.mkdir()
    mounted.write_text("{}\n")
    paths = resolve(
        str(tmp_path / "out"), {"AZUREML_RUN_ID": "r", "AZURE_ML_INPUT_train": str(mounted)}
    )
    location = "azureml://datastores/workspaceblobstore/paths/recipe/data/abc/train.jsonl"
    assert paths.platform == "azureml"
    assert data_path("train", location, paths) == mounted


def test_missing_job_is_a_provider_error(azure: FakeAzureML) -> None:
    provider = CommandJobs(ml_client=ml_client())
    with pytest.raises(ProviderError, match="not found"):
        provider.status(RunRef(provider="azure", run_id="nope", ids={"job_name": "nope"}))


def test_the_run_remembers_its_workspace(monkeypatch: pytest.MonkeyPatch) -> None:
    """status/logs/cancel reach the recipe's workspace, not whatever the shell has set."""
    for var in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME"):
        monkeypatch.delenv(var, raising=False)
    plan = plan_for(CATALOG / "support-triage-a100.yaml", [])  # the workspace is in the recipe only
    scope = {k: plan.compute[k] for k in ("subscription", "resource_group", "workspace")}
    assert scope == {"subscription": SUB, "resource_group": "rg-ml", "workspace": "ws-ml"}
    client = CommandJobs().client(scope)  # no network until a call is made
    assert (client.subscription_id, client.resource_group_name, client.workspace_name) == (
        SUB,
        "rg-ml",
        "ws-ml",
    )
