"""Errors that are part of the interface, in one place.

- `RecipeInputError`: bad input (a recipe, an override, a data file, a flag). Each
  `Problem` names file, line, column, field and expectation; all of them are
  raised together. Exit code 2.
- `ProviderError`: a backend failed or refused. It carries a `kind` (auth, not
  found, conflict, throttled, quota, missing extra, unreachable, api) so callers
  decide on data, never on message text; the message is one line. Exit code 3.

Bad input never produces a traceback: the CLI prints these and exits with their code.
"""

from __future__ import annotations

import difflib
import enum
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
        # A last bound on what is echoed: values are shortened where they are quoted,
        # this keeps a message readable even when a huge key or value slips through.
        head = shorten(self.location(), 300)
        field = f" {shorten(self.field, 200)}:" if self.field else ""
        text = f"{head}:{field} {shorten(self.message, 2000)}"
        if self.hint:
            text += f" ({shorten(self.hint, 1000)})"
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
            out += ("." if out else "") + shorten(str(part), 60)
    return out


ECHO_LIMIT = 100  # characters of a user's value quoted back in a message


def shorten(text: str, limit: int = ECHO_LIMIT, count: bool = True) -> str:
    """`text`, or its first `limit` characters and "…" (with the full length) when longer."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…" + (f" ({len(text):,} characters)" if count else "")


def short_repr(value: object, limit: int = ECHO_LIMIT) -> str:
    """repr() of a value the user gave, bounded: a 1 MB string is echoed as its start."""
    if isinstance(value, str) and len(value) > limit:
        quoted = repr(value[:limit])
        body = quoted[1:-1][:limit]  # escapes can make the repr longer than the text
        return f"{quoted[0]}{body}…{quoted[-1]} ({len(value):,} characters)"
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # ints past the digit limit; absurd nesting
        return f"<a {type(value).__name__} too large to show>"
    return shorten(text, limit)


class ErrorKind(str, enum.Enum):
    """Why a backend call failed, as data (what a retry, a rollback or a message needs)."""

    AUTH = "auth"  # no credentials, rejected or expired ones, or not allowed
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"  # exists already, or in a state that forbids the call
    THROTTLED = "throttled"  # still throttled after the SDK's own retries
    QUOTA = "quota"  # a service limit or quota
    MISSING_EXTRA = "missing_extra"  # the provider's SDK is not installed
    UNREACHABLE = "unreachable"  # no connection to the service
    API = "api"  # any other refusal or failure


class ProviderError(Exception):
    """A backend failed or refused. Exit code 3, whatever the kind (README: exit codes)."""

    exit_code = 3

    def __init__(self, message: str, kind: ErrorKind = ErrorKind.API):
        self.kind = kind
        self.message = message
        super().__init__(message)

    def with_suffix(self, text: str) -> ProviderError:
        """The same error with more to say (e.g. what a failed submit left behind)."""
        return ProviderError(self.message + text, self.kind)


_HTTP_KINDS = {
    401: ErrorKind.AUTH,
    403: ErrorKind.AUTH,
    404: ErrorKind.NOT_FOUND,
    409: ErrorKind.CONFLICT,
    429: ErrorKind.THROTTLED,
}


def kind_for_status(status: int | None) -> ErrorKind:
    """The kind of an HTTP error answer (RFC 9110 status codes)."""
    return _HTTP_KINDS.get(status or 0, ErrorKind.API)


def missing_extra(provider: str, packages: str) -> ProviderError:
    """The one message for a provider whose extra is not installed."""
    return ProviderError(
        f"the {provider} provider needs {packages}: pip install '.[{provider}]' "
        f"(or pip install 'recipe-ft[{provider}]')",
        ErrorKind.MISSING_EXTRA,
    )
