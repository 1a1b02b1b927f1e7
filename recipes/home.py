"""Where this machine keeps runs and the ledger: $RECIPE_HOME, else ./runs."""

from __future__ import annotations

import os
from pathlib import Path

from recipes.errors import Problem, RecipeInputError, shorten

HOME_ENV = "RECIPE_HOME"


def runs_dir() -> Path:
    """The runs directory; one that cannot be a directory is a located input error.

    Nothing is created here (planning writes nothing): the nearest existing ancestor
    must be a directory this user can write to, so that creating it later works."""
    raw = os.environ.get(HOME_ENV) or "runs"
    try:
        path = Path(raw).resolve()
        existing = next(p for p in (path, *path.parents) if p.exists())
    except (OSError, RuntimeError, ValueError) as exc:  # a name too long, a NUL
        raise _bad(raw, f"is not a usable path ({getattr(exc, 'strerror', None) or exc})") from None
    if not existing.is_dir():
        where = "" if existing == path else f" ({existing} is a file)"
        raise _bad(str(path), f"is not a directory{where}")
    if existing != path and not os.access(existing, os.W_OK | os.X_OK):
        raise _bad(str(path), f"cannot be created: {existing} is not writable")
    return path


def _bad(path: str, message: str) -> RecipeInputError:
    return RecipeInputError(
        Problem(
            f"{shorten(path, 200)} {message}",
            file=HOME_ENV,
            hint="point RECIPE_HOME at a directory; it is created when missing",
        )
    )
