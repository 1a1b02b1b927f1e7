"""Honest training figures: the tokens a run reports are the tokens it trained, with and
without packing, and every example of an epoch reaches the optimizer."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recipes.loader import load_recipe
from tests.conftest import REPO, tiny_recipe
from training_scripts.contract import SUPPORTED_CONTRACT
from training_scripts.train import epoch_steps


@pytest.mark.parametrize(
    ("micro_batches", "per_step", "world", "expected"),
    [
        (41, 2, 1, (21, 0)),  # the last, partial step is trained (was 20, dropping one)
        (40, 2, 1, (20, 0)),
        (3, 4, 1, (1, 0)),  # fewer than one step: one partial step
        (41, 4, 2, (10, 1)),  # 1 left, 2 processes: one would wait at the all-reduce
        (43, 4, 2, (11, 0)),  # 3 left over 2 processes: each has one, trained
    ],
)
def test_an_epochs_last_partial_step(
    micro_batches: int, per_step: int, world: int, expected: tuple[int, int]
) -> None:
    assert epoch_steps(micro_batches, per_step, world) == expected


@pytest.mark.slow
@pytest.mark.parametrize("packing", ["auto", True])  # auto: no packing on a CPU
def test_reported_tokens_are_the_tokens_trained(
    tmp_path: Path, small_data: Path, write_recipe, packing: bool | str
) -> None:
    # 84 training examples, 4 per micro-batch, 12 per step: not a whole number of steps.
    recipe = tiny_recipe(
        small_data,
        data={"packing": packing},
        training={"max_steps": None, "epochs": 1, "batch_size": 12, "micro_batch_size": 4},
        eval={"golden": None},
    )
    loaded = load_recipe(write_recipe(recipe))
    directory = tmp_path / "job"
    directory.mkdir()
    config = {
        "contract": SUPPORTED_CONTRACT,
        "run": {"id": "job", "provider": "local", "recipe_name": "tiny", "tags": {}},
        "recipe": loaded.resolved().model_dump(mode="json"),
    }
    (directory / "recipe.json").write_text(json.dumps(config))
    result = subprocess.run(
        [sys.executable, "-m", "training_scripts.train", "--config", "recipe.json",
         "--output-dir", "."],
        cwd=directory, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads((directory / "eval_report.json").read_text())
    train, data = report["train"], report["data"]
    # The independent count: the training split's real tokens, example by example. One
    # epoch trains each example once, so the reported tokens must be exactly these.
    assert train["tokens"] == data["train_tokens"]
    assert train["skipped_micro_batches_per_epoch"] == 0
    # tok/s is those tokens over the training seconds (reported rounded to 0.1 s).
    seconds = train["tokens"] / train["tokens_per_s"]
    assert abs(seconds - train["train_seconds"]) <= 0.051
    if packing == "auto":
        assert "packing: off (auto: sdpa attention needs a block mask" in result.stdout
        micro = math.ceil(data["train_examples"] / 4)
        assert train["steps"] == math.ceil(micro / 3)  # the partial last step included
