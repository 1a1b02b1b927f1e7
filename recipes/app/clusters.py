"""Use cases for clusters (HyperPod): plan, create, status, delete, from a recipe."""

from __future__ import annotations

from pathlib import Path

from providers import registry
from providers.base import ClusterBackend, ClusterInfo, ClusterPlan, RunIdentity
from recipes.errors import RecipeInputError
from recipes.loader import load_recipe


def plan(
    file: Path | str, provider: str = "aws", backend: ClusterBackend | None = None
) -> tuple[ClusterBackend, ClusterPlan]:
    """The cluster the recipe implies, and the backend that manages it. No network."""
    loaded = load_recipe(file)
    recipe = loaded.resolved()
    identity = RunIdentity(run_id="", recipe_name=recipe.name, recipe_hash=loaded.content_hash)
    try:
        backend = backend or registry.cluster_backend(provider, recipe)
        return backend, backend.plan_cluster(recipe, identity)
    except RecipeInputError as exc:
        raise loaded.locate(exc) from None


def create(file: Path | str, provider: str = "aws") -> str:
    backend, cluster = plan(file, provider)
    return backend.create_cluster(cluster)


def status(file: Path | str, provider: str = "aws") -> ClusterInfo:
    backend, cluster = plan(file, provider)
    return backend.cluster_status(cluster)


def delete(file: Path | str, provider: str = "aws") -> ClusterPlan:
    backend, cluster = plan(file, provider)
    backend.delete_cluster(cluster)
    return cluster
