"""A trainer killed with SIGKILL resumes from its newest complete checkpoint and ends
where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recipes.loader import load_recipe
from tests.conftest import REPO, tiny_recipe
from training_scripts.contract import SUPPORTED_CONTRACT

pytestmark = pytest.mark.slow


def job_dir(root: Path, recipe_path: Path, name: str) -> Path:
    """A job directory with recipe.json as the orchestrator writes it (contract, run, recipe)."""
    loaded = load_recipe(recipe_path)
    config = {
        "contract": SUPPORTED_CONTRACT,
        "run": {"id": name, "provider": "local", "recipe_name": "tiny", "tags": {}},
        "recipe": loaded.resolved().model_dump(mode="json"),
    }
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "recipe.json").write_text(json.dumps(config))
    return directory


def start(directory: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "training_scripts.train",
            "--config",
            "recipe.json",
            "--output-dir",
            ".",
        ],
        cwd=directory,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        stdout=(directory / "train.log").open("ab"),
        stderr=subprocess.STDOUT,
    )


def steps_logged(directory: Path) -> list[dict]:
    path = directory / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if '"loss"' in line]


def test_sigkill_then_resume_matches_uninterrupted(
    tmp_path: Path, small_data: Path, write_recipe
) -> None:
    recipe = tiny_recipe(
        small_data,
        training={"max_steps": 24, "epochs": 10, "save_every_steps": 4},
        eval={"golden": None},
    )
    path = write_recipe(recipe)

    reference = job_dir(tmp_path, path, "reference")
    assert start(reference).wait(timeout=600) == 0

    interrupted = job_dir(tmp_path, path, "interrupted")
    proc = start(interrupted)
    deadline = time.time() + 600
    while time.time() < deadline:
        done = [r["step"] for r in steps_logged(interrupted)]
        checkpoints = list((interrupted / "checkpoints").glob("step-*"))
        if done and max(done) >= 9 and checkpoints:
            break
        assert proc.poll() is None, "the trainer ended before it could be killed"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(r["step"] for r in steps_logged(interrupted))
    assert killed_at < 24

    assert start(interrupted).wait(timeout=600) == 0
    log = (interrupted / "train.log").read_text()
    resumed = int(log.split("resumed from step-")[1][:8])
    assert 4 <= resumed <= killed_at and resumed % 4 == 0
    assert f"continuing at step {resumed}/24" in log

    # The restarted trainer continued after the checkpoint, not from step 0.
    steps = [r["step"] for r in steps_logged(interrupted)]
    restart = next(i for i in range(1, len(steps)) if steps[i] <= steps[i - 1])
    assert steps[restart] == resumed + 1

    final_ref = steps_logged(reference)[-1]
    final_resumed = steps_logged(interrupted)[-1]
    assert final_resumed["step"] == final_ref["step"] == 24
    assert final_resumed["loss"] == pytest.approx(final_ref["loss"], rel=1e-3)
    report_ref = json.loads((reference / "eval_report.json").read_text())
    report_resumed = json.loads((interrupted / "eval_report.json").read_text())
    assert report_resumed["after"]["valid_loss"] == pytest.approx(
        report_ref["after"]["valid_loss"], rel=1e-3
    )
