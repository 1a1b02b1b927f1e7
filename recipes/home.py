"""Where this machine keeps runs and the ledger: $RECIPE_HOME, else ./runs."""

from __future__ import annotations

import os
from pathlib import Path

from recipes.errors import Problem, RecipeInputError

HOME_ENV = "RECIPE_HOME"


def runs_dir() -> Path:
    """The runs directory; an existing non-directory there is a located input error."""
    path = Path(os.environ.get(HOME_ENV, "runs")).resolve()
    if path.exists() and not path.is_dir():
        raise RecipeInputError(
            Problem(
                f"{path} is not a directory",
                file=HOME_ENV,
                hint="point RECIPE_HOME at a directory (it is created when missing)",
            )
        )
    return path
