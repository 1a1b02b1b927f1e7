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
