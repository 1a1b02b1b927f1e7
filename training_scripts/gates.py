"""Gates: thresholds a set of metrics must meet. Pure: no torch, no I/O.

A gate is named after the metric it bounds and the direction:

    <metric>_min  passes when the metric is >= the threshold   (macro_f1_min: 0.8)
    <metric>_max  passes when the metric is <= the threshold   (valid_loss_max: 1.2)

`check(gates, metrics)` takes the gates as a recipe writes them (a threshold of
None means "no gate") and a flat dict of metric values, and returns one
`GateResult` per gate, in the gates' order. A metric that is missing or None
fails its gate (shown as n/a): no evidence never passes.

The trainer checks `eval.gates` against the evaluation after training
(`eval_metrics` flattens it); a release script can check `deploy.canary.gates`
(error_rate_max, p95_ms_max) against a canary's own metrics the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OPERATORS = {"min": ">=", "max": "<="}


@dataclass(frozen=True)
class GateResult:
    name: str  # the gate, e.g. "macro_f1_min"
    threshold: float
    value: float | None  # the metric's value, None when it was not measured
    passed: bool
    text: str  # e.g. "macro_f1 0.7000 >= 0.8"

    def as_report(self) -> dict[str, Any]:
        """The entry written to eval_report.json's "gates" list."""
        return {
            "gate": self.name,
            "value": self.value,
            "threshold": self.threshold,
            "passed": self.passed,
            "text": self.text,
        }


def split_name(gate: str) -> tuple[str, str]:
    """'macro_f1_min' -> ('macro_f1', '>='); ValueError for a name without _min/_max."""
    metric, _, bound = gate.rpartition("_")
    if not metric or bound not in OPERATORS:
        raise ValueError(f"gate {gate!r}: the name must end in _min or _max")
    return metric, OPERATORS[bound]


def check(
    gates: Mapping[str, float | None], metrics: Mapping[str, float | None]
) -> list[GateResult]:
    """One result per gate with a threshold, in the order of `gates`."""
    results = []
    for name, threshold in gates.items():
        if threshold is None:
            continue
        metric, op = split_name(name)
        value = metrics.get(metric)
        passed = value is not None and (value >= threshold if op == ">=" else value <= threshold)
        shown = "n/a" if value is None else f"{value:.4f}"
        results.append(
            GateResult(
                name=name,
                threshold=threshold,
                value=value,
                passed=passed,
                text=f"{metric} {shown} {op} {threshold}",
            )
        )
    return results


def failed(results: list[GateResult]) -> list[str]:
    """The texts of the gates that failed (empty when all passed)."""
    return [r.text for r in results if not r.passed]


def eval_metrics(evaluation: Mapping[str, Any]) -> dict[str, float | None]:
    """The trainer's evaluation ({"valid_loss", ..., "golden": {"macro_f1", ...}}) as flat
    metrics: the numbers at the top level and those of the golden set."""
    flat: dict[str, float | None] = {}
    for source in (evaluation, evaluation.get("golden") or {}):
        for key, value in source.items():
            if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
                flat[key] = value
    return flat


def check_gates(gates: Mapping[str, float | None], after: Mapping[str, Any]) -> list[dict]:
    """eval.gates against the evaluation after training, as eval_report.json lists them."""
    return [r.as_report() for r in check(gates, eval_metrics(after))]
