"""The in-job launcher: platform topology, the commands it runs, and a real run of the
job as a cloud sees it (recipe.json naming s3:// data, inputs mounted as channels)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from providers.base import RunIdentity
from providers.staging import data_uploads, job_config_for, with_data_locations
from recipes.loader import load_recipe
from tests.conftest import REPO, tiny_recipe
from training_scripts.launch import Topology, commands, sagemaker_env, topology


def test_sagemaker_topology_and_channels(tmp_path: Path) -> None:
    (tmp_path / "resourceconfig.json").write_text(
        json.dumps(
            {
                "current_host": "algo-2",
                "hosts": ["algo-2", "algo-1"],
                "network_interface_name": "eth0",
            }
        )
    )
    (tmp_path / "inputdataconfig.json").write_text(
        json.dumps({"code": {}, "recipe": {}, "train": {"TrainingInputMode": "File"}})
    )
    topo = topology({}, devices=4, config_dir=tmp_path)
    assert topo == Topology(nnodes=2, node_rank=1, master_addr="algo-1", nproc_per_node=4)
    env = sagemaker_env(tmp_path)
    assert env["SM_CHANNEL_TRAIN"] == "/opt/ml/input/data/train"
    assert env["SM_MODEL_DIR"] == "/opt/ml/model"


def test_commands_per_topology() -> None:
    single = commands("r.json", None, Topology(1, 0, "127.0.0.1", 1))
    assert single == [[sys.executable, "-m", "training_scripts.train", "--config", "r.json"]]
    multi = commands("r.json", "/out", Topology(2, 1, "algo-1", 8))
    assert multi[0][1:3] == ["-m", "training_scripts.preprocess"]  # tokenize once per node
    assert "--nnodes=2" in multi[1] and "--node-rank=1" in multi[1]
    assert "--nproc-per-node=8" in multi[1] and "--master-addr=algo-1" in multi[1]
    hyperpod = commands("r.json", "/fsx/run", Topology(2, 0, "x", 4), "hyperpodrun")
    assert hyperpod[1][:3] == ["hyperpodrun", "--nnodes=2", "--nproc-per-node=4"]


@pytest.mark.slow
def test_the_job_as_a_cloud_runs_it(tmp_path: Path, small_data: Path, write_recipe) -> None:
    """recipe.json names s3:// data; the launcher finds it in the mounted channels and trains."""
    path = write_recipe(tiny_recipe(small_data))
    recipe = load_recipe(path).resolved()
    identity = RunIdentity(run_id="tiny-abc-1", recipe_name="tiny", recipe_hash="0" * 64)
    _, channels = data_uploads(recipe, "s3://bucket/prefix", "s3:PutObject")
    config = job_config_for(with_data_locations(recipe, channels), identity, "aws")
    assert config["recipe"]["data"]["train"].startswith("s3://bucket/prefix/data/")
    (tmp_path / "recipe.json").write_text(json.dumps(config))
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RECIPE_CHANNEL_TRAIN": str(small_data),  # as a pod or container mounts it
        "RECIPE_CHANNEL_GOLDEN": str(small_data),
    }
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "training_scripts.launch",
            "--config",
            str(tmp_path / "recipe.json"),
            "--output-dir",
            str(out),
            "--no-install",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "launch: Topology(nnodes=1" in result.stdout
    report = json.loads((out / "eval_report.json").read_text())
    assert report["train"]["steps"] == 4 and 0 <= report["after"]["golden"]["macro_f1"] <= 1


HOOK = """
import atexit, json, os, sys

def _record():
    with open(os.environ["RECIPE_TEST_PROBE"], "a") as fh:
        key = os.environ.get("WANDB_API_KEY")
        fh.write(json.dumps({"argv": sys.argv, "key": key == "wandb-fake-key-0000000000000000000000000000000"}) + "\\n")

atexit.register(_record)
"""


@pytest.mark.slow
def test_azure_job_gets_the_wandb_key_from_key_vault(
    tmp_path: Path, small_data: Path, write_recipe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Azure plan's own command, run as Azure ML runs it (inputs mounted, one process
    per node with MASTER_ADDR/NODE_RANK set, a managed identity): launch reads the W&B key
    from Key Vault with the job's identity and the trainer gets it."""
    from providers.azure.command_job import CommandJobs
    from providers.packaging import scripts_archive
    from providers.staging import cloud_identity
    from tests.fakes.http import FakeServer, Seen, json_reply

    def identity_token(request: Seen, _: object) -> tuple[int, dict[str, str], bytes]:
        # App Service-style managed identity (azure-identity's ManagedIdentityCredential).
        assert request.headers.get("x-identity-header") == "job-identity"
        assert request.query["resource"] == ["https://vault.azure.net"]
        token = {"access_token": "vault-token", "expires_on": "4102444800", "token_type": "Bearer"}
        return json_reply(200, {**token, "resource": "https://vault.azure.net"})

    def secret(request: Seen, _: object) -> tuple[int, dict[str, str], bytes]:
        if request.headers.get("authorization") != "Bearer vault-token":
            return json_reply(401, {"error": {"code": "Unauthorized"}})
        return json_reply(
            200, {"value": "wandb-fake-key-0000000000000000000000000000000", "id": request.path}
        )

    with FakeServer() as server:
        server.route("GET", r"^/identity", identity_token)
        server.route("GET", r"^/secrets/wandb-api-key$", secret)
        azure = {
            "subscription": "00000000-0000-0000-0000-000000000000",
            "resource_group": "rg",
            "workspace": "ws",
            "compute": "cpu-cluster",
            "wandb_secret": f"{server.url}/secrets/wandb-api-key",
        }
        recipe_path = write_recipe(
            tiny_recipe(
                small_data,
                compute={"azure": azure},
                tracking={"wandb": {"project": "tests", "mode": "online"}},
            )
        )
        loaded = load_recipe(recipe_path)
        identity = cloud_identity("tiny", loaded.content_hash)
        plan = CommandJobs().plan(loaded.resolved(), identity)
        job = plan.requests[-1].body["job"]["properties"]
        assert job["environmentVariables"]["RECIPE_WANDB_SECRET"].startswith("azure-keyvault:")
        assert "wandb-fake-key-0000000000000000000000000000000" not in json.dumps(plan.to_dict())

        # What Azure ML does: mount the inputs, substitute their paths into the command.
        (tmp_path / "code.tar.gz").write_bytes(scripts_archive().data)
        # The one change to what Azure would run: this machine has no network, so W&B
        # writes offline; the key is fetched and handed to the trainer all the same.
        config = plan.requests[-2].body["content"]
        config["recipe"]["tracking"]["wandb"]["mode"] = "offline"
        (tmp_path / "recipe.json").write_text(json.dumps(config))
        command = (
            job["command"]
            .replace("${{inputs.code}}", str(tmp_path / "code.tar.gz"))
            .replace("${{inputs.recipe}}", str(tmp_path / "recipe.json"))
            .replace("${{outputs.model}}", str(tmp_path / "outputs"))
            .replace("/tmp/recipe-code", str(tmp_path / "code"))
        )
        (tmp_path / "hook").mkdir()
        (tmp_path / "hook" / "sitecustomize.py").write_text(HOOK)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AZURE_", "WANDB_", "MSI_", "IDENTITY_"))
        }
        env.update(job["environmentVariables"])
        env.update(
            {
                "AZUREML_RUN_ID": identity.run_id,
                "AZURE_ML_INPUT_train": str(small_data / "train.jsonl"),
                "AZURE_ML_INPUT_golden": str(small_data / "golden.jsonl"),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": "29517",
                "NODE_RANK": "0",
                "WORLD_SIZE": "1",
                "RANK": "0",
                "IDENTITY_ENDPOINT": f"{server.url}/identity",
                "IDENTITY_HEADER": "job-identity",
                "WANDB_MODE": "offline",
                "PYTHONPATH": str(tmp_path / "hook"),
                "RECIPE_TEST_PROBE": str(tmp_path / "probe.jsonl"),
            }
        )
        result = subprocess.run(
            ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert any(seen.path.endswith("/secrets/wandb-api-key") for seen in server.seen)
    records = [json.loads(line) for line in (tmp_path / "probe.jsonl").read_text().splitlines()]
    trainers = [r for r in records if r["argv"][0].endswith("training_scripts/train.py")]
    assert trainers and all(r["key"] for r in trainers), records
    report = json.loads((tmp_path / "outputs" / "eval_report.json").read_text())
    assert report["train"]["steps"] == 4
    assert "wandb-fake-key-0000000000000000000000000000000" not in result.stdout + result.stderr
