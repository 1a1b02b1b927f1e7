"""Is a recipe within what a backend can do? One error listing every gap, with its reason."""

from __future__ import annotations

from providers.base import Capabilities
from recipes import rules
from recipes.errors import Problem, RecipeInputError
from recipes.schema import Recipe


def check(provider: str, caps: Capabilities, recipe: Recipe, target: str) -> None:
    """Raise one RecipeInputError naming each field the backend cannot honour."""
    gaps: list[Problem] = []

    def gap(field_path: str, message: str, feature: str) -> None:
        gaps.append(
            Problem(
                f"{provider} cannot {message}", field=field_path, hint=caps.why_not.get(feature)
            )
        )

    compute = recipe.compute
    if recipe.method.kind not in caps.methods:
        gap("method.kind", f"train with method {recipe.method.kind}", "methods")
    if caps.accelerators and compute.accelerator not in caps.accelerators:
        gap("compute.accelerator", f"provide {compute.accelerator}", "accelerators")
    if compute.spot and not caps.spot:
        gap("compute.spot", "run on spot capacity", "spot")
    if compute.nodes > 1 and not caps.multi_node:
        gap("compute.nodes", f"run on {compute.nodes} nodes", "multi_node")
    processes, field_path = _processes_per_node(provider, recipe)
    if processes > caps.max_processes_per_node:
        gap(
            field_path,
            f"run {processes} processes per node (at most {caps.max_processes_per_node})",
            "max_processes_per_node",
        )
    if caps.targets and target not in caps.targets:
        gap(f"compute.{provider}.target", f"run target {target}", "targets")
    for field_path, location in (
        ("data.train", recipe.data.train),
        ("data.validation", recipe.data.validation),
        ("eval.golden", recipe.eval.golden),
    ):
        remote = isinstance(location, str) and rules.is_remote(location)
        if remote and not location.startswith(caps.remote_data):  # type: ignore[union-attr]
            gap(field_path, f"read {location.split('://')[0]}:// data", "remote_data")  # type: ignore[union-attr]
    if gaps:
        raise RecipeInputError(gaps)


def _processes_per_node(provider: str, recipe: Recipe) -> tuple[int, str]:
    """One training process per GPU on a cloud node; compute.local.processes locally."""
    if provider == "local":
        return recipe.compute.local.processes, "compute.local.processes"
    return max(1, recipe.compute.gpus_per_node), "compute.gpus_per_node"
