"""Real runs of the local provider on the builtin model: seconds each, no mocks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from providers.local.runtime import read_json
from tests import wandb_files
from tests.conftest import CLI, tiny_recipe

pytestmark = pytest.mark.slow


def wait_for(predicate, timeout: float = 120, every: float = 0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not reached in time")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def started_run(cli: CLI, write_recipe, small_data: Path, **sections) -> tuple[str, Path]:
    """Start a long run in the background and wait until it has trained a step."""
    recipe = tiny_recipe(small_data, training={"max_steps": 100000, "epochs": 1000}, **sections)
    result = cli("run", write_recipe(recipe))
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip()
    status = wait_for(lambda: (s := cli.json("status", run_id)).get("step") and s)
    assert status["state"] == "running"
    return run_id, Path(status["artifacts"]["run_dir"])


def test_run_wait_trains_evaluates_and_records(cli: CLI, write_recipe, small_data: Path) -> None:
    secret = "wandb-test-secret-0123456789"
    cli.env["WANDB_API_KEY"] = secret
    recipe = tiny_recipe(small_data, tracking={"wandb": {"project": "tests", "mode": "offline"}})
    result = cli("run", write_recipe(recipe), "--wait", "--format", "json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert set(out) == {"run_id", "provider", "status", "metrics", "artifacts"}
    assert out["status"] == "succeeded" and out["provider"] == "local"

    report = out["metrics"]
    for phase in ("before", "after"):
        assert report[phase]["valid_loss"] > 0
        assert 0 <= report[phase]["golden"]["macro_f1"] <= 1
    assert report["after"]["valid_loss"] < report["before"]["valid_loss"]
    assert report["train"]["steps"] == 4 and report["train"]["tokens_per_s"] > 0
    assert report["after"]["golden"]["slices"]  # per edge-case accuracy from the rows' meta

    run_dir = Path(out["artifacts"]["run_dir"])
    assert (run_dir / "adapter" / "adapter_config.json").exists()
    assert read_json(run_dir / "recipe.json")["run"]["id"] == out["run_id"]
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if "loss" in r] == [1, 2, 3, 4]
    assert list((run_dir / "checkpoints").iterdir())

    # W&B wrote one offline run: the run's id and tags, the recipe as config, metrics,
    # the final summary and the adapter as an artifact; the key appears nowhere.
    (run_file,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    records = wandb_files.records(run_file)
    by_kind: dict[str, list] = {}
    for record in records:
        by_kind.setdefault(record.WhichOneof("record_type"), []).append(record)
    (run,) = by_kind["run"]
    assert run.run.run_id == out["run_id"]
    assert {"project:tests", "owner:ci", f"run_id:{out['run_id']}"[:64]} <= set(run.run.tags)
    config_keys = {item.key for item in run.run.config.update}
    assert {"model", "data", "method", "training"} <= config_keys

    def keys(items) -> set[str]:
        return {item.key or "/".join(item.nested_key) for item in items}

    history = set().union(*(keys(r.history.item) for r in by_kind["history"]))
    assert {"loss", "lr", "tokens_per_s"} <= history
    summary = set().union(*(keys(r.summary.update) for r in by_kind["summary"]))
    assert {"after/valid_loss", "after/golden_macro_f1"} <= summary
    (artifact,) = by_kind["artifact"]
    assert artifact.artifact.type == "model" and artifact.artifact.name.endswith("-adapter")
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path

    # The other commands see the run from "another shell".
    status = cli.json("status", out["run_id"])
    assert status["state"] == "succeeded" and status["step"] is None or status["step"] == 4
    assert "step 4/4" in cli("logs", out["run_id"]).stdout
    lines = cli("logs", out["run_id"], "--format", "json").stdout.splitlines()
    assert any("step 4/4" in json.loads(line)["line"] for line in lines)
    runs = cli.json("runs")
    assert runs[0]["run_id"] == out["run_id"] and runs[0]["state"] == "succeeded"


def test_run_prints_run_id_and_returns(cli: CLI, write_recipe, small_data: Path) -> None:
    result = cli("run", write_recipe(tiny_recipe(small_data)))
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip()
    assert run_id.startswith("tiny-")
    final = wait_for(lambda: (s := cli.json("status", run_id))["state"] == "succeeded" and s)
    assert final["metrics"]["after"]["valid_loss"] > 0

    # export: the adapter as is, then merged, with the loss checked on both sides.
    plain = cli.json("export", run_id)
    assert (Path(plain["output"]) / "adapter_config.json").exists()
    merged = cli.json("export", run_id, "--merge")
    assert (Path(merged["output"]) / "model.safetensors").exists()
    assert merged["valid_loss_with_adapter"] == pytest.approx(
        final["metrics"]["after"]["valid_loss"], rel=1e-4
    )
    assert abs(merged["difference"]) < 1e-3 * merged["valid_loss_with_adapter"]
    again = cli("export", run_id, "--merge")
    assert again.returncode == 2 and "already exists" in again.stderr


def test_cancel_stops_the_whole_tree(cli: CLI, write_recipe, small_data: Path) -> None:
    run_id, run_dir = started_run(cli, write_recipe, small_data)
    state = read_json(run_dir / "state.json")
    result = cli("cancel", run_id, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["state"] == "cancelled"
    assert json.loads(result.stdout)["message"] == "cancelled by request"  # not after grace
    wait_for(lambda: not alive(state["trainer_pid"]) and not alive(state["supervisor_pid"]), 30)
    assert cli.json("status", run_id)["state"] == "cancelled"


def test_killed_trainer_ends_failed_with_log_tail(cli: CLI, write_recipe, small_data: Path) -> None:
    run_id, run_dir = started_run(cli, write_recipe, small_data)
    os.kill(read_json(run_dir / "state.json")["trainer_pid"], signal.SIGKILL)
    wait_for(lambda: cli.json("status", run_id)["state"] == "failed", 30)
    result = cli("status", run_id)
    assert result.returncode == 1
    assert "killed by SIGKILL" in result.stdout
    assert "last log lines" in result.stdout and "step " in result.stdout
    status = cli.json("status", run_id)
    assert status["log_tail"] and any("step" in line for line in status["log_tail"])


def test_max_runtime_stops_a_local_run(cli: CLI, write_recipe, small_data: Path) -> None:
    """compute.max_runtime holds locally as on the clouds: the tree is stopped, the run fails."""
    recipe = tiny_recipe(
        small_data, training={"max_steps": 100000, "epochs": 1000}, compute={"max_runtime": 20}
    )
    started = time.time()
    result = cli("run", write_recipe(recipe), "--wait", "--format", "json")
    assert result.returncode == 1, result.stderr
    assert time.time() - started < 90
    run_id = json.loads(result.stdout)["run_id"]
    status = cli.json("status", run_id)
    assert status["state"] == "failed" and "max_runtime exceeded (20 s)" in status["message"]
    state = read_json(Path(status["artifacts"]["run_dir"]) / "state.json")
    wait_for(lambda: not alive(state["trainer_pid"]), 30)


def test_ctrl_c_while_waiting_cancels(cli: CLI, write_recipe, small_data: Path) -> None:
    recipe = tiny_recipe(small_data, training={"max_steps": 100000, "epochs": 1000})
    proc = subprocess.Popen(
        [sys.executable, "-m", "recipes", "run", str(write_recipe(recipe)), "--wait"],
        env=cli.env,
        cwd=cli.cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_dir = wait_for(lambda: next(iter(Path(cli.env["RECIPE_HOME"]).glob("tiny-*")), None))
    wait_for(
        lambda: (
            (run_dir / "metrics.jsonl").exists()
            and "loss" in (run_dir / "metrics.jsonl").read_text()
        )
    )
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    assert "cancelling" in stderr and "Traceback" not in stderr
    state = read_json(run_dir / "state.json")
    assert state["state"] == "cancelled"
    wait_for(lambda: not alive(state["trainer_pid"]), 30)


def test_failed_gate_exits_1_with_report(cli: CLI, write_recipe, small_data: Path) -> None:
    recipe = tiny_recipe(small_data, eval={"gates": {"macro_f1_min": 0.99}})
    result = cli("run", write_recipe(recipe), "--wait")
    assert result.returncode == 1
    assert "eval gate failed: macro_f1" in result.stdout
    assert "FAIL" in result.stdout


def test_bad_data_is_refused_before_launch(
    cli: CLI, write_recipe, small_data: Path, tmp_path
) -> None:
    bad = tmp_path / "bad.jsonl"
    good = (small_data / "train.jsonl").read_text().splitlines()
    bad.write_text("\n".join([good[0], "{oops", good[1]]) + "\n")
    recipe = tiny_recipe(small_data)
    recipe["data"]["train"] = str(bad)
    result = cli("run", write_recipe(recipe))
    assert result.returncode == 2
    assert f"{bad}:2: data.train: invalid JSON" in result.stderr
    assert not list(Path(cli.env["RECIPE_HOME"]).glob("tiny-*"))  # nothing created


def test_two_processes_with_torchrun(cli: CLI, write_recipe, small_data: Path) -> None:
    recipe = tiny_recipe(small_data, compute={"local": {"processes": 2}})
    result = cli("run", write_recipe(recipe), "--wait", "--format", "json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["metrics"]["train"]["world_size"] == 2
    log = Path(out["artifacts"]["log"]).read_text()
    assert "global batch 8 = 4 micro x 1 accumulation x 2 process(es)" in log
    # Tokenized once by the preprocessing step; the training processes loaded the cache.
    assert log.count("(cached ") == 1  # only rank 0 logs
    assert list((Path(cli.env["RECIPE_HOME"]) / "cache").glob("*.pkl"))


def test_packing_sampled_eval_and_early_stopping(cli: CLI, write_recipe, small_data: Path) -> None:
    recipe = tiny_recipe(
        small_data,
        data={"packing": True},
        training={
            "max_steps": 40,
            "epochs": 40,
            "batch_size": 2,
            "micro_batch_size": 1,
            "learning_rate": 0.5,  # diverges on purpose, so validation stops improving
            "eval_every_steps": 2,
            "eval_sample_size": 4,
            "early_stopping_patience": 2,
        },
    )
    result = cli("run", write_recipe(recipe), "--wait", "--format", "json")
    out = json.loads(result.stdout)
    train = out["metrics"]["train"]
    assert train["early_stopped"] and train["steps"] < 40
    log = Path(out["artifacts"]["log"]).read_text()
    assert "packing: " in log and "early stopping at step" in log
    records = [json.loads(x) for x in Path(out["artifacts"]["metrics"]).read_text().splitlines()]
    sampled = [r for r in records if "valid_loss" in r and "step" in r]
    assert sampled and all("valid_token_accuracy" in r for r in sampled)
    assert 0 <= out["metrics"]["after"]["valid_token_accuracy"] <= 1
