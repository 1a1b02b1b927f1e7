"""The canary's gates: pass, fail or inconclusive, each with its evidence. Pure.

Traffic gates (error_rate_max, p95_ms_max) read the candidate's own live traffic;
quality gates (macro_f1_min, exact_match_min, max_regression) read its answers to the
golden set, scored by the same code as the training evaluation
(training_scripts.evaluate.score). A gate without its minimum sample is inconclusive,
with one exception that can only make things safer: an error count that already
breaks the threshold whatever the remaining requests do fails at once.

Decision: any failed gate rolls back; otherwise any inconclusive gate holds; otherwise
promote. A candidate that served too little live traffic is held even without gates:
a release never promotes on no evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from providers.base import TrafficSample
from recipes.schema.deploy import CanarySpec

Outcome = Literal["pass", "fail", "inconclusive"]
Decision = Literal["promote", "rollback", "hold"]


@dataclass(frozen=True)
class Verdict:
    gate: str
    outcome: Outcome
    value: float | None
    threshold: float | None
    samples: int
    needed: int
    text: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def traffic_verdicts(canary: CanarySpec, sample: TrafficSample) -> list[Verdict]:
    gates, need, n = canary.gates, canary.min_requests, sample.requests
    verdicts = [
        Verdict(
            "served",
            "pass" if n >= need else "inconclusive",
            float(n),
            float(need),
            n,
            need,
            f"{n} live requests served (needs {need})",
        )
    ]
    if gates.error_rate_max is not None:
        limit = gates.error_rate_max
        rate = sample.error_rate
        # Certain already: even if every request still needed succeeds, the rate stays over.
        certain = sample.errors > limit * max(n, need)
        if n >= need or certain:
            outcome: Outcome = "pass" if (rate or 0.0) <= limit else "fail"
        else:
            outcome = "inconclusive"
        shown = "n/a" if rate is None else f"{rate:.4f}"
        verdicts.append(
            Verdict(
                "error_rate_max",
                outcome,
                rate,
                limit,
                n,
                need,
                f"error rate {shown} ({sample.errors}/{n}) <= {limit}",
            )
        )
    if gates.p95_ms_max is not None:
        limit, p95 = gates.p95_ms_max, sample.p95_ms
        if n >= need and p95 is not None:
            outcome = "pass" if p95 <= limit else "fail"
        else:
            outcome = "inconclusive"
        shown = "n/a" if p95 is None else f"{p95:.0f} ms"
        verdicts.append(
            Verdict("p95_ms_max", outcome, p95, limit, n, need, f"p95 {shown} <= {limit:g} ms")
        )
    return verdicts


@dataclass(frozen=True)
class GoldenScores:
    """A deployment's answers to the golden set, scored."""

    examples: int  # answered (a failed request counts as a wrong answer)
    metric: str  # "macro_f1" for classification, else "exact_match"
    scores: dict[str, Any]

    @property
    def value(self) -> float | None:
        value = self.scores.get(self.metric)
        return float(value) if isinstance(value, int | float) else None


def golden_scores(task: str, targets: Sequence[str], answers: Sequence[str]) -> GoldenScores:
    from training_scripts.evaluate import choose_task, score

    chosen = choose_task(task, targets)
    scores = score(chosen, targets, answers)
    metric = "macro_f1" if chosen == "classification" else "exact_match"
    return GoldenScores(len(answers), metric, scores)


def quality_verdicts(
    canary: CanarySpec, candidate: GoldenScores, stable: GoldenScores | None
) -> list[Verdict]:
    gates, need, n = canary.gates, canary.min_golden, candidate.examples
    verdicts = []
    for gate, metric in (("macro_f1_min", "macro_f1"), ("exact_match_min", "exact_match")):
        limit = getattr(gates, gate)
        if limit is None:
            continue
        value = candidate.scores.get(metric)
        if n < need or value is None:
            outcome: Outcome = "inconclusive"
        else:
            outcome = "pass" if value >= limit else "fail"
        shown = "n/a" if value is None else f"{value:.4f}"
        verdicts.append(
            Verdict(gate, outcome, value, limit, n, need, f"golden {metric} {shown} >= {limit}")
        )
    if gates.max_regression is not None:
        limit = gates.max_regression
        ours = candidate.value
        theirs = stable.value if stable else None
        if stable is None:
            verdicts.append(
                Verdict(
                    "max_regression",
                    "pass",
                    None,
                    limit,
                    n,
                    need,
                    "no stable version to compare with",
                )
            )
        else:
            drop = None if ours is None or theirs is None else theirs - ours
            enough = min(n, stable.examples) >= need and drop is not None
            outcome = ("pass" if drop <= limit else "fail") if enough else "inconclusive"  # type: ignore[operator]
            shown = "n/a" if drop is None else f"{drop:+.4f}"
            verdicts.append(
                Verdict(
                    "max_regression",
                    outcome,
                    drop,
                    limit,
                    min(n, stable.examples),
                    need,
                    f"golden {candidate.metric} drop vs stable {shown} <= {limit}",
                )
            )
    return verdicts


def decide(verdicts: Sequence[Verdict]) -> Decision:
    if any(v.outcome == "fail" for v in verdicts):
        return "rollback"
    if any(v.outcome == "inconclusive" for v in verdicts):
        return "hold"
    return "promote"
