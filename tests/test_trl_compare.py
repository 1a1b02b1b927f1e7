"""benchmarks/trl_compare.py compares speed only when the work is the same.

The benchmark itself runs TRL in its own environment and takes about 20 minutes, so
the suite checks the parts that decide what it claims: the same-work check, the
median run, the target (TRL's fastest own configuration; the loss against TRL on the
same batches), on results made up here.
"""

from __future__ import annotations

import importlib.util
import math

import pytest

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("trl_compare", REPO / "benchmarks/trl_compare.py")
trl_compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(trl_compare)

EXPECTED = {"examples": 64, "tokens": 9000, "loss_tokens": 330, "whole_batches": True}


def row(tokens_per_s: float, **changes: object) -> dict:
    steps = math.ceil(math.ceil(64 / trl_compare.MICRO) / trl_compare.ACCUMULATION)
    base = {
        "examples": 64, "tokens": 9000, "counted_tokens": 9000, "loss_tokens": 330,
        "steps": steps, "trainable": 1000, "tokens_per_s": tokens_per_s,
        "all_tokens_per_s": [tokens_per_s], "final_loss": 1.0, "valid_loss": 1.0,
        "note": "", "trl": "1.16.0",
    }  # fmt: skip
    return {**base, **changes}


def results(**rows: dict) -> dict:
    table = {name: row(1000.0) for name in (*trl_compare.TRL, *trl_compare.OURS)}
    table["ours-packing"]["steps"] = table["trl-packing"]["steps"] = 1
    table["ours"] = row(2000.0)
    return {**table, **rows}


def test_same_work_passes_and_each_difference_is_named() -> None:
    assert trl_compare.check_same_work(results(), EXPECTED) == []
    problems = trl_compare.check_same_work(
        results(
            trl=row(1000.0, examples=63),
            **{"trl-grouped": row(1000.0, counted_tokens=8990)},
            **{"trl-padding-free": row(1000.0, loss_tokens=329)},
            ours=row(2000.0, trainable=999, steps=3),
        ),
        EXPECTED,
    )
    text = "\n".join(problems)
    assert "trl: 63 examples" in text
    assert "trl-grouped: counted_tokens 8,990" in text
    assert "trl-padding-free: 329 loss tokens" in text
    assert "trainable parameters differ" in text
    assert "optimizer steps" in text


def test_the_median_run_is_the_slower_of_two() -> None:
    runs = [row(1200.0, valid_loss=0.9), row(1000.0, valid_loss=1.1)]
    median = trl_compare.median_run(runs)
    assert median["tokens_per_s"] == 1000.0 and median["valid_loss"] == 1.1
    assert median["all_tokens_per_s"] == [1200, 1000]


@pytest.mark.parametrize(
    ("ours", "twin_loss", "twin_speed", "met"),
    [
        (1500.0, 1.0, 1000.0, True),  # 1.5x the fastest own configuration, same loss
        (1499.0, 1.0, 1000.0, False),  # just short
        (1500.0, 1.02, 1000.0, False),  # the loss 2% away
        (1500.0, 1.0, 1400.0, True),  # the twin runs our dropout: not TRL's own, not the bar
    ],
)
def test_the_target(capsys, ours: float, twin_loss: float, twin_speed: float, met: bool) -> None:
    table = results(
        ours=row(ours),
        **{trl_compare.TWIN: row(twin_speed, valid_loss=twin_loss)},
        **{"trl-grouped": row(1000.0)},
    )
    assert trl_compare.print_table(table, EXPECTED) is met
    out = capsys.readouterr().out
    assert "TRL, group_by_length" in out and ("met" if met else "NOT met") in out
