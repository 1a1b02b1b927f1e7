"""`recipe data check` and `recipe data preview`: what is wrong with a data file, and
exactly which tokens a recipe would train on.

Row parsing and rules are the training script's own (training_scripts.rows, .pii,
.data), so the check and the job can never disagree.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recipes.errors import shorten
from recipes.schema import Recipe
from training_scripts import pii
from training_scripts.data import exact_key, normalized_key
from training_scripts.rows import Example, parse_rows


@dataclass(frozen=True)
class Finding:
    severity: str  # error | warning
    line: int | None
    message: str


@dataclass
class Report:
    file: str
    format: str
    examples: int = 0
    findings: list[Finding] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "format": self.format,
            "examples": self.examples,
            "errors": [asdict(f) for f in self.errors],
            "warnings": [asdict(f) for f in self.warnings],
            "stats": self.stats,
        }


@dataclass(frozen=True)
class Settings:
    """What the check needs from a recipe (or its defaults when there is none)."""

    format: str = "chat"
    pii: str = "fail"
    max_seq_len: int = 512
    train_on: str = "assistant"
    epochs: float = 1.0
    base: str = "builtin:tiny-chat"

    @classmethod
    def from_recipe(cls, recipe: Recipe | None) -> Settings:
        if recipe is None:
            return cls()
        return cls(
            format=recipe.data.format,
            pii=recipe.data.pii,
            max_seq_len=recipe.data.max_seq_len,
            train_on=recipe.data.train_on,
            epochs=recipe.training.epochs,
            base=recipe.model.base,
        )


def check(path: Path, settings: Settings, tokenizer: Any | None) -> Report:
    examples, problems = parse_rows(path, settings.format)
    report = Report(file=str(path), format=settings.format, examples=len(examples))
    report.findings += [Finding("error", p.line, p.message) for p in problems]
    report.findings += _pii_findings(examples, settings.pii)
    report.findings += _duplicate_findings(examples)
    if tokenizer is not None and examples:
        findings, report.stats = _token_stats(examples, tokenizer, settings)
        report.findings += findings
    report.findings.sort(key=lambda f: (f.line or 0, f.severity))
    return report


def _pii_findings(examples: list[Example], policy: str) -> list[Finding]:
    if policy == "allow":
        return []
    severity = "error" if policy == "fail" else "warning"
    consequence = {
        "fail": "set data.pii to redact, drop or allow",
        "redact": "will be redacted",
        "drop": "the row will be dropped",
    }[policy]
    out = []
    for example in examples:
        kinds = sorted({f.kind for m in example.messages for f in pii.find(m.get("content") or "")})
        if kinds:
            out.append(
                Finding(
                    severity, example.line, f"personal data: {', '.join(kinds)} ({consequence})"
                )
            )
    return out


def _duplicate_findings(examples: list[Example]) -> list[Finding]:
    exact: dict[str, int] = {}
    loose: dict[str, int] = {}
    out = []
    for example in examples:
        key, near = exact_key(example), normalized_key(example)
        if key in exact:
            out.append(
                Finding(
                    "warning", example.line, f"duplicate of line {exact[key]} (dropped in training)"
                )
            )
        elif near in loose:
            out.append(
                Finding(
                    "warning",
                    example.line,
                    f"near-duplicate of line {loose[near]}: differs only in "
                    "case, spacing or punctuation (dropped in training)",
                )
            )
        exact.setdefault(key, example.line)
        loose.setdefault(near, example.line)
    return out


def _token_stats(
    examples: list[Example], tokenizer: Any, settings: Settings
) -> tuple[list[Finding], dict[str, Any]]:
    from training_scripts.data import DataError, encode

    findings: list[Finding] = []
    lengths: list[int] = []
    trained: list[int] = []
    for example in examples:
        try:
            encoded = encode(example, tokenizer, settings.train_on)
        except DataError as exc:
            findings.append(Finding("error", example.line, exc.problems[0].message))
            continue
        except Exception as exc:  # the model's own chat template (Jinja) refused the row
            reason = shorten(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            findings.append(
                Finding("error", example.line, f"the chat template cannot render it: {reason}")
            )
            continue
        if len(encoded) > settings.max_seq_len:
            findings.append(
                Finding(
                    "warning",
                    example.line,
                    f"{len(encoded)} tokens, over max_seq_len "
                    f"{settings.max_seq_len} (dropped in training)",
                )
            )
            continue
        if not encoded.trained_tokens:
            findings.append(Finding("warning", example.line, "no token to train on (dropped)"))
            continue
        lengths.append(len(encoded))
        trained.append(encoded.trained_tokens)
    total = sum(lengths)
    stats = {
        "tokenizer": settings.base,
        "examples_kept": len(lengths),
        "tokens_per_example": _spread(lengths),
        "assistant_tokens_per_example": _spread(trained),
        "tokens": total,
        "epochs": settings.epochs,
        "training_tokens": round(total * settings.epochs),
    }
    return findings, stats


def _spread(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def pct(q: float) -> float:
        return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])

    return {
        "min": float(ordered[0]),
        "p10": pct(0.10),
        "median": float(statistics.median(ordered)),
        "p90": pct(0.90),
        "max": float(ordered[-1]),
    }


def load_tokenizer(base: str) -> Any | None:
    """The recipe's tokenizer, or None when the train extra is not installed."""
    try:
        from training_scripts.modeling import load_tokenizer as load
        from training_scripts.modeling import resolve_base
    except ImportError:
        return None
    try:
        return load(resolve_base(base), None, False)
    except ImportError:
        return None


def preview_segments(example: Example, tokenizer: Any, train_on: str) -> list[tuple[str, bool]]:
    """The rendered conversation as (text, trained) runs."""
    from training_scripts.data import IGNORE_INDEX, encode

    encoded = encode(example, tokenizer, train_on)
    runs: list[tuple[list[int], bool]] = []
    for token, label in zip(encoded.input_ids, encoded.labels, strict=True):
        flag = label != IGNORE_INDEX
        if runs and runs[-1][1] == flag:
            runs[-1][0].append(token)
        else:
            runs.append(([token], flag))
    return [(tokenizer.decode(ids), flag) for ids, flag in runs]
