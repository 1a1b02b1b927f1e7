"""What travels into every job: one JSON file, the same on every backend.

The training script reads `recipe.json` and nothing else from the orchestrator;
no recipe field is flattened into hyperparameters or environment variables.
"""

from __future__ import annotations

from typing import Any

from providers.base import RunIdentity
from recipes.errors import Problem, RecipeInputError
from recipes.schema import Recipe

CONTRACT_VERSION = 1  # training_scripts checks it when it loads recipe.json
ENTRY_MODULE = "training_scripts.train"
PREPROCESS_MODULE = "training_scripts.preprocess"
# Every cloud job starts here: it resolves secrets, installs what the image lacks,
# tokenizes once per node, then starts one training process per device.
LAUNCH_MODULE = "training_scripts.launch"


def launch_command(config: str, *options: str) -> str:
    """The one entry command of a cloud job, as a shell word list joined by spaces."""
    return " ".join(["python", "-m", LAUNCH_MODULE, "--config", config, *options])


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


def check_global_batch(recipe: Recipe, processes: int, field: str) -> None:
    """batch_size = micro_batch_size x accumulation x processes, with a whole accumulation."""
    t = recipe.training
    if t.batch_size % (t.micro_batch_size * processes):
        raise RecipeInputError(
            Problem(
                f"training.batch_size {t.batch_size} must be a multiple of "
                f"micro_batch_size x processes ({t.micro_batch_size} x {processes})",
                field=field,
            )
        )
