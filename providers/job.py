"""What travels into every job: one JSON file, the same on every backend.

The training script reads `recipe.json` and nothing else from the orchestrator;
no recipe field is flattened into hyperparameters or environment variables.
"""

from __future__ import annotations

from typing import Any

from providers.base import RunIdentity
from recipes.schema import Recipe

CONTRACT_VERSION = 1
ENTRY_MODULE = "training_scripts.train"
PREPROCESS_MODULE = "training_scripts.preprocess"


def job_config(recipe: Recipe, identity: RunIdentity, provider: str) -> dict[str, Any]:
    return {
        "contract": CONTRACT_VERSION,
        "run": {
            "id": identity.run_id,
            "provider": provider,
            "recipe_name": identity.recipe_name,
            "recipe_hash": identity.recipe_hash,
            "tags": run_tags(recipe, identity),
        },
        "recipe": recipe.model_dump(mode="json"),
    }


def run_tags(recipe: Recipe, identity: RunIdentity) -> dict[str, str]:
    """The recipe's tags plus the run's identity: what everything the run creates carries."""
    return {
        **recipe.tags,
        "recipe": identity.recipe_name,
        "recipe_hash": identity.recipe_hash[:12],
        "run_id": identity.run_id,
    }
