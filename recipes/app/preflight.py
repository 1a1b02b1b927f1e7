"""Checks run before anything is launched, so bad data costs no job and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

from recipes import rules
from recipes.errors import Problem, RecipeInputError
from recipes.schema import Recipe


def check_local_data(recipe: Recipe) -> None:
    """Every row of every local data file is well formed (torch-free, no tokenizer)."""
    from training_scripts.data import DataError, read_examples

    problems: list[Problem] = []
    for field, location in (
        ("data.train", recipe.data.train),
        ("data.validation", recipe.data.validation),
        ("eval.golden", recipe.eval.golden),
    ):
        if not isinstance(location, str) or rules.is_remote(location):
            continue
        try:
            read_examples(Path(location))
        except DataError as exc:
            problems += [
                Problem(p.message, file=p.file, line=p.line, field=field) for p in exc.problems
            ]
    if problems:
        raise RecipeInputError(problems)
