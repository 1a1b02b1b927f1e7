"""Errors that are part of the interface: each names file, line, column, field and expectation.

Bad input never produces a traceback. Everything that can go wrong with what a
user wrote is collected as `Problem`s and raised together as one `RecipeInputError`,
which the CLI prints and turns into exit code 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located as precisely as we can."""

    message: str
    file: str | None = None
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    field: str | None = None  # dotted path, e.g. "training.epochs"
    hint: str | None = None  # e.g. "did you mean 'epochs'?"

    def location(self) -> str:
        parts = [self.file or "<input>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def render(self) -> str:
        head = self.location()
        field = f" {self.field}:" if self.field else ""
        text = f"{head}:{field} {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class RecipeInputError(Exception):
    """Bad user input: a recipe, an override, a data file or a CLI flag. Exit code 2."""

    exit_code = 2

    def __init__(self, problems: Sequence[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        # File order first, command-line problems after: the order a reader fixes them in.
        self.problems: list[Problem] = sorted(
            problems,
            key=lambda p: (p.file == "command line", p.file or "", p.line or 0, p.column or 0),
        )
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(p.render() for p in self.problems)


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A "did you mean" hint for a misspelled key or value, or None."""
    choices = list(choices)
    # A prefix ("A100" for "A100-80GB") is a better clue than edit distance.
    prefixed = [c for c in choices if c.lower().startswith(word.lower()) and word]
    close = prefixed or difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(f"'{c}'" for c in close[:3]) + "?"


def path_str(path: Sequence[str | int]) -> str:
    """("training", "epochs") -> "training.epochs"; list indices as [i]."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
