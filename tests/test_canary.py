"""The canary's gates: evidence decides, too little evidence holds, never promotes."""

from __future__ import annotations

import pytest

from providers.base import TrafficSample
from recipes.app.canary import decide, golden_scores, quality_verdicts, traffic_verdicts
from recipes.schema.deploy import CanarySpec

GATES = {"error_rate_max": 0.01, "p95_ms_max": 800}


def sample(requests: int, errors: int = 0, p95: float | None = 300.0) -> TrafficSample:
    return TrafficSample("cand", requests, errors, p95, since=0.0, until=60.0)


def canary(**gates: float) -> CanarySpec:
    return CanarySpec(min_requests=100, min_golden=10, gates=gates or GATES)


@pytest.mark.parametrize(
    ("traffic", "decision"),
    [
        (sample(200, errors=1, p95=300), "promote"),  # 0.5% errors, fast: enough evidence
        (sample(200, errors=5, p95=300), "rollback"),  # 2.5% errors
        (sample(200, errors=0, p95=1500), "rollback"),  # slow
        (sample(40, errors=0, p95=300), "hold"),  # too little traffic: inconclusive
        (sample(0, errors=0, p95=None), "hold"),  # none at all
        # 2 errors of 40 already break 1% of the 100 needed, whatever comes next: fail fast.
        (sample(40, errors=2, p95=300), "rollback"),
        (sample(40, errors=1, p95=300), "hold"),  # 1 of the 100 allowed: not yet certain
    ],
)
def test_traffic_gates(traffic: TrafficSample, decision: str) -> None:
    assert decide(traffic_verdicts(canary(), traffic)) == decision


def test_without_gates_a_candidate_that_served_nothing_is_held() -> None:
    bare = CanarySpec(min_requests=50)
    assert decide(traffic_verdicts(bare, sample(10))) == "hold"
    assert decide(traffic_verdicts(bare, sample(50))) == "promote"


def test_each_verdict_carries_its_evidence() -> None:
    verdicts = traffic_verdicts(canary(), sample(150, errors=3, p95=420))
    by_gate = {v.gate: v for v in verdicts}
    assert by_gate["error_rate_max"].to_dict() == {
        "gate": "error_rate_max",
        "outcome": "fail",
        "value": 0.02,
        "threshold": 0.01,
        "samples": 150,
        "needed": 100,
        "text": "error rate 0.0200 (3/150) <= 0.01",
    }
    assert by_gate["p95_ms_max"].outcome == "pass" and by_gate["served"].outcome == "pass"


LABELS = ["billing", "fraud", "refill", "claim"] * 5


def answers(wrong: int) -> list[str]:
    return ["nonsense"] * wrong + LABELS[wrong:]


def test_quality_gates_use_the_training_scores() -> None:
    good, bad = (
        golden_scores("auto", LABELS, answers(0)),
        golden_scores("auto", LABELS, answers(12)),
    )
    assert good.metric == "macro_f1" and good.value == 1.0
    spec = canary(macro_f1_min=0.8, max_regression=0.05)
    assert decide(quality_verdicts(spec, good, stable=good)) == "promote"
    assert decide(quality_verdicts(spec, bad, stable=good)) == "rollback"
    # Worse than stable by more than allowed, although above the absolute floor.
    slightly = golden_scores("auto", LABELS, answers(2))
    loose = canary(macro_f1_min=0.5, max_regression=0.01)
    verdicts = {v.gate: v for v in quality_verdicts(loose, slightly, stable=good)}
    assert verdicts["macro_f1_min"].outcome == "pass"
    assert verdicts["max_regression"].outcome == "fail"


def test_too_few_golden_answers_are_inconclusive() -> None:
    few = golden_scores("auto", LABELS[:4], LABELS[:4])
    assert decide(quality_verdicts(canary(exact_match_min=0.5), few, stable=None)) == "hold"
