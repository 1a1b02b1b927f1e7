"""Use cases for data files: check every row, preview the trained tokens."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers import registry
from recipes.app import datacheck
from recipes.errors import Problem, RecipeInputError
from recipes.loader import load_recipe


@dataclass(frozen=True)
class DataCheck:
    reports: list[datacheck.Report]
    with_tokens: bool  # token statistics need the train extra (a tokenizer)

    def failing(self, strict: bool) -> bool:
        return any(r.errors or (strict and r.warnings) for r in self.reports)


def settings_for(recipe: Path | str | None) -> datacheck.Settings:
    """Format, PII policy, max_seq_len, train_on and tokenizer from a recipe, or defaults."""
    return datacheck.Settings.from_recipe(load_recipe(recipe).resolved() if recipe else None)


def check(files: list[str], recipe: Path | str | None = None) -> DataCheck:
    """Read every row of each file (local, or a cloud URI read through its SDK)."""
    settings = settings_for(recipe)
    tokenizer = datacheck.load_tokenizer(settings.base)
    reports = []
    with tempfile.TemporaryDirectory(prefix="recipe-data-") as scratch:
        for location in files:
            remote = "://" in location
            path = registry.read_remote(location, Path(scratch)) if remote else None
            report = datacheck.check(path or Path(location), settings, tokenizer)
            report.file = location  # name the file as the user did, not the temporary copy
            reports.append(report)
    return DataCheck(reports, tokenizer is not None)


@dataclass(frozen=True)
class Preview:
    line: int
    segments: list[tuple[str, bool]]  # text, trained?


def preview(file: Path, recipe: Path | str | None = None, count: int = 3) -> list[Preview]:
    """The first `count` examples as the model sees them, trained tokens flagged."""
    from training_scripts.rows import DataError, read_examples

    if count < 1:
        raise RecipeInputError(Problem(f"must be at least 1; got {count}", field="--count"))
    settings = settings_for(recipe)
    tokenizer = datacheck.load_tokenizer(settings.base)
    if tokenizer is None:
        raise RecipeInputError("preview needs the train extra: pip install '.[train]'")
    try:
        examples = read_examples(file, settings.format)[:count]
    except DataError as exc:
        raise RecipeInputError([_row_problem(p) for p in exc.problems]) from None
    return [
        Preview(e.line, datacheck.preview_segments(e, tokenizer, settings.train_on))
        for e in examples
    ]


def _row_problem(problem: Any) -> Problem:
    return Problem(problem.message, file=problem.file, line=problem.line)
