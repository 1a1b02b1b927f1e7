"""Use case: write a finished local run's adapter, or the merged model."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

from recipes.app.ledger import Ledger
from recipes.errors import RecipeInputError


def export(run_id: str, merge: bool = False, output: Path | None = None) -> dict[str, Any]:
    """The adapter (or merged model) and validation loss with the adapter and after merging."""
    ref = Ledger().get(run_id).ref
    if "run_dir" not in ref.ids:
        raise RecipeInputError(
            f"RUN_ID: export works on local runs; {run_id} ran on {ref.provider}"
        )
    from training_scripts.export import export as run_export
    from training_scripts.modeling import SetupError

    try:
        # The training code logs progress to stdout; keep stdout for the caller's result.
        with contextlib.redirect_stdout(sys.stderr):
            return run_export(Path(ref.ids["run_dir"]), merge, output)
    except SetupError as exc:
        raise RecipeInputError(f"RUN_ID: {exc}") from None
