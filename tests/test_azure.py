"""Azure ML command jobs, what is particular to them: the job body azure-ai-ml builds,
the PUT as ARM receives it, std_log.txt as logs, one-line errors, the workspace a run
keeps, and inputs inside the job. The real MLClient and azure-storage-blob run against
tests/fakes/azure.py. The contract every backend keeps is tests/test_backend_contract.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from providers.azure.command_job import CommandJobs
from providers.base import Plan, ProviderError
from providers.staging import cloud_identity
from recipes.errors import RecipeInputError
from recipes.loader import load_recipe
from tests.conftest import CATALOG, MULTINODE
from tests.fakes.azure import SUB, WS_PATH, FakeAzureML, ml_client, point_sdk_at

AZURE = [
    "compute.accelerator=T4",  # Azure sells no A10G; the catalog recipe asks for it
    "compute.azure.compute=gpu-cluster",
    "compute.azure.wandb_secret=https://kv-ml.vault.azure.net/secrets/wandb-api-key",
]
ON_CPU = ["compute.azure.compute=cpu-cluster"]


@pytest.fixture
def azure(monkeypatch: pytest.MonkeyPatch) -> Any:
    with FakeAzureML() as fake:
        point_sdk_at(fake, monkeypatch)
        yield fake


def plan_for(path: Path, overrides: list[str], attempt: int = 1) -> Plan:
    loaded = load_recipe(path, overrides)
    recipe = loaded.resolved()
    identity = cloud_identity(recipe.name, loaded.content_hash, attempt)
    return CommandJobs().plan(recipe, identity)


def test_plan_is_complete(azure: FakeAzureML) -> None:
    plan = plan_for(MULTINODE, AZURE)
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


def test_the_create_is_one_put_with_the_api_version_and_a_token(azure: FakeAzureML) -> None:
    provider = CommandJobs(ml_client=ml_client())
    plan = plan_for(CATALOG / "quickstart.yaml", ON_CPU)
    provider.submit(plan)
    (put,) = azure.job_puts()
    assert put.path == f"{WS_PATH}/jobs/{plan.identity.run_id}"
    assert put.query["api-version"] == ["2025-01-01-preview"]
    assert put.headers["authorization"] == "Bearer fake-token"
    # blob metadata names must be C# identifiers: the run's tags arrive intact or with _
    recipe_json = plan.requests[-2].body["uri"].split("/paths/", 1)[1]
    metadata = azure.meta[f"azureml-workspaceblobstore/{recipe_json}"]
    assert metadata["run_id"] == plan.identity.run_id and "sha256" not in metadata


def test_logs_are_the_jobs_std_log(azure: FakeAzureML) -> None:
    provider = CommandJobs(ml_client=ml_client())
    ref = provider.submit(plan_for(CATALOG / "quickstart.yaml", ON_CPU)).ref
    log = f"azureml-workspaceartifactstore/ExperimentRun/dcid.{ref.run_id}/user_logs/std_log.txt"
    assert list(provider.logs(ref)) == []  # nothing written yet
    azure.blobs[log] = b"launch: Topology(nnodes=1)\nstep 10/270 loss 2.1\n"
    assert list(provider.logs(ref)) == ["launch: Topology(nnodes=1)\n", "step 10/270 loss 2.1\n"]


def test_logs_of_every_node(azure: FakeAzureML) -> None:
    """Several nodes (one launch process each) write user_logs/std_log_process_<rank>.txt;
    the SDK's own stream pattern, user_logs/std_log[\\D]*[0]*(?:_ps)?\\.txt
    (azure/ai/ml/constants/_job/job.py), would show rank 0 alone."""
    provider = CommandJobs(ml_client=ml_client())
    ref = provider.submit(plan_for(MULTINODE, AZURE)).ref
    logs = f"azureml-workspaceartifactstore/ExperimentRun/dcid.{ref.run_id}/user_logs"
    azure.blobs[f"{logs}/std_log_process_0.txt"] = b"node 0 step 1\n"
    azure.blobs[f"{logs}/std_log_process_1.txt"] = b"node 1 step 1\n"
    azure.blobs[f"{logs}/other.txt"] = b"not a training log\n"
    assert list(provider.logs(ref)) == ["[rank 0] node 0 step 1\n", "[rank 1] node 1 step 1\n"]
    azure.blobs[f"{logs}/std_log_process_1.txt"] += b"node 1 step 2\n"
    assert list(provider.logs(ref)) == [  # a new read starts over: logs is not --follow
        "[rank 0] node 0 step 1\n",
        "[rank 1] node 1 step 1\n",
        "[rank 1] node 1 step 2\n",
    ]


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
    plan = plan_for(CATALOG / "quickstart.yaml", ON_CPU)
    azure.fail[r"PUT /jobs/"] = [status] * 2  # the SDK retries a 401 with a fresh token
    with pytest.raises(ProviderError) as err:
        provider.submit(plan)
    text = str(err.value)
    assert text.startswith(message) and "\n" not in text
    assert "left in the datastore" in text  # what was kept, in the same line


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
