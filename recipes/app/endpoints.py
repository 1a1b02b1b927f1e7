"""Use cases for endpoints: serve here, plan, deploy, status, invoke, delete, list.

A run becomes an endpoint on the backend it was trained on: its artifact is found
from the run record (the ledger, then the backend's own status), and only a run
that succeeded, with its gates passed, may be deployed. The recipe's `deploy:`
block says how; the plan shows the exact requests and the monthly cost before
anything is created, and `deploy` sends exactly that plan.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers import registry, serving
from providers.base import (
    Artifact,
    Deployed,
    EndpointBackend,
    EndpointPlan,
    EndpointStatus,
    State,
)
from recipes.app.ledger import EndpointEntry, Ledger
from recipes.app.ledger import Entry as LedgerEntry
from recipes.cost.serving import check_endpoint_budget
from recipes.errors import ErrorKind, Problem, ProviderError, RecipeInputError
from recipes.loader import LoadedRecipe, load_recipe
from recipes.schema import Recipe

# --- the artifact of a run -------------------------------------------------------------------


def artifact_of(run_id: str, recipe: Recipe) -> Artifact:
    """Where a finished run's output is, on its own backend; refused unless it succeeded."""
    entry = Ledger().get(run_id)
    backend = registry.for_run(entry.ref)
    status = backend.status(entry.ref)
    if not status.state.terminal:
        raise RecipeInputError(
            Problem(
                f"run {run_id} is still {status.state.value}"
                + (f" ({status.message})" if status.message else "")
                + "; only a run that succeeded, with its eval gates passed, can be deployed",
                field="RUN_ID",
                hint="deploy it once `recipe status RUN_ID` says succeeded",
            )
        )
    if status.state != State.SUCCEEDED:
        why = f": {status.message}" if status.message else ""
        raise RecipeInputError(
            Problem(
                f"run {run_id} {status.state.value}{why}; only a run that succeeded, with "
                "its eval gates passed, can be deployed",
                field="RUN_ID",
                hint="`recipe status RUN_ID` and `recipe logs RUN_ID` show why",
            )
        )
    trained = _trained(entry, recipe)
    kind = _kind(trained, recipe)
    if "run_dir" in entry.ref.ids:
        uri = _local_output(run_id, Path(entry.ref.ids["run_dir"]), kind)
    else:
        uri = status.artifacts.get("model", "")
        if not uri:
            raise RecipeInputError(
                Problem(
                    f"{entry.ref.provider} reports no model output for run {run_id}",
                    field="RUN_ID",
                    hint="the job ended without writing its output; see `recipe logs RUN_ID`",
                )
            )
    return Artifact(
        run_id=run_id,
        provider=entry.ref.provider,
        uri=uri,
        kind=kind,
        base_model=trained.model.base,
        name=trained.name,
        lora_rank=getattr(trained.method, "r", None),
    )


def _trained(entry: LedgerEntry, recipe: Recipe) -> Recipe:
    """What the run trained: a local run's own recipe.json; a cloud run's recipe file,
    which must still name the run's recipe (its job records what it trained)."""
    if "run_dir" in entry.ref.ids:
        path = Path(entry.ref.ids["run_dir"]) / "recipe.json"
        try:
            return Recipe.model_validate(json.loads(path.read_text())["recipe"])
        except (OSError, ValueError, KeyError, TypeError):
            raise RecipeInputError(
                Problem(
                    f"run {entry.ref.run_id} has no readable recipe.json",
                    file=str(path),
                    hint="the run directory is damaged; deploy another run",
                )
            ) from None
    if recipe.name != entry.recipe_name:
        raise RecipeInputError(
            Problem(
                f"the recipe file names '{recipe.name}' but run {entry.ref.run_id} trained "
                f"'{entry.recipe_name}'",
                field="name",
                hint="give the run's own recipe with --recipe",
            )
        )
    return recipe


def _kind(trained: Recipe, recipe: Recipe) -> str:
    """full (the run trained every weight), merged (deploy.merge) or adapter."""
    if trained.method.kind == "full":
        return "full"
    return "merged" if recipe.deploy and recipe.deploy.merge else "adapter"


def _local_output(run_id: str, run_dir: Path, kind: str) -> str:
    report = run_dir / "eval_report.json"
    if report.is_file():
        try:
            passed = json.loads(report.read_text()).get("passed")
        except (OSError, json.JSONDecodeError):
            passed = None
        if passed is False:
            raise RecipeInputError(
                Problem(f"run {run_id} failed its eval gates", field="RUN_ID", file=str(report))
            )
    wanted = {"full": "model", "merged": "merged", "adapter": "adapter"}[kind]
    if not (run_dir / wanted).is_dir():
        hint = (
            f"write it with `recipe export {run_id} --merge`"
            if wanted == "merged"
            else "did the run finish?"
        )
        raise RecipeInputError(
            Problem(f"run {run_id} has no {wanted}/ in {run_dir}", field="RUN_ID", hint=hint)
        )
    return str(run_dir)


# --- plan and deploy -------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointPrepared:
    loaded: LoadedRecipe
    backend: EndpointBackend
    plan: EndpointPlan


# What a deploy may change of the run's recipe: how it is served, where, who pays. The
# model, data, method and name are what the run trained.
DEPLOY_OVERRIDES = ("deploy.", "budget.", "tags.", "compute.")


def _recipe_for(run_id: str, recipe_file: str | Path | None, overrides: list[str]) -> LoadedRecipe:
    for override in overrides:
        key = override.split("=", 1)[0].strip()
        if not key.startswith(DEPLOY_OVERRIDES):
            raise RecipeInputError(
                Problem(
                    f"'{key}' cannot change for a deploy: the model is what run {run_id} trained",
                    field=key,
                    hint="override only " + ", ".join(p + "*" for p in DEPLOY_OVERRIDES),
                )
            )
    path = recipe_file or Ledger().get(run_id).recipe_path
    if not Path(path).is_file():
        raise RecipeInputError(
            Problem(
                f"the recipe of run {run_id} is no longer at {path}",
                field="--recipe",
                hint="name the recipe file with --recipe FILE",
            )
        )
    return load_recipe(path, overrides)


def prepare(
    run_id: str,
    provider: str | None = None,
    recipe_file: str | Path | None = None,
    overrides: list[str] | None = None,
    backend: EndpointBackend | None = None,
) -> EndpointPrepared:
    """Plan the run's endpoint: exact requests, hardware and monthly cost; no network
    beyond reading the run's status from its backend."""
    loaded = _recipe_for(run_id, recipe_file, overrides or [])
    recipe = loaded.resolved()
    try:
        serving.deploy_block(recipe)
    except RecipeInputError as exc:
        raise loaded.locate(exc) from None
    artifact = artifact_of(run_id, recipe)  # errors name RUN_ID, not a line of the file
    if provider is not None:
        registry.info(provider)  # an unknown name is said as such, with the known ones
    provider = provider or artifact.provider
    if provider != artifact.provider:
        raise RecipeInputError(
            Problem(
                f"run {run_id} was trained on {artifact.provider}; its artifact is served "
                "from there",
                field="--provider",
                hint=f"use --provider {artifact.provider}",
            )
        )
    backend = backend or registry.endpoint_backend(provider)
    try:
        plan = backend.plan_endpoint(recipe, artifact)
    except RecipeInputError as exc:
        raise loaded.locate(exc) from None
    return EndpointPrepared(loaded, backend, plan)


@dataclass(frozen=True)
class DeployResult:
    plan: EndpointPlan
    deployed: Deployed
    warnings: tuple[str, ...] = ()


def deploy(
    run_id: str,
    provider: str | None = None,
    recipe_file: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    override_budget: bool = False,
    backend: EndpointBackend | None = None,
) -> DeployResult:
    """Plan, check the monthly budget, then send exactly the plan (idempotent)."""
    prepared = prepare(run_id, provider, recipe_file, overrides, backend)
    recipe, plan = prepared.loaded.resolved(), prepared.plan
    try:
        warning = check_endpoint_budget(recipe, plan.estimate, override_budget)
    except RecipeInputError as exc:
        raise prepared.loaded.locate(exc) from None
    deployed = prepared.backend.deploy(plan)
    Ledger().record_endpoint(deployed.ref, run_id, plan.to_dict())
    return DeployResult(plan, deployed, (warning,) if warning else ())


# --- an endpoint after deploy ----------------------------------------------------------------


def find(endpoint: str, provider: str | None = None) -> tuple[EndpointBackend, EndpointEntry]:
    entry = Ledger().find_endpoint(endpoint, provider)
    return registry.endpoint_backend(entry.ref.provider), entry


def status(endpoint: str, provider: str | None = None) -> EndpointStatus:
    backend, entry = find(endpoint, provider)
    return backend.endpoint_status(entry.ref)


def invoke(
    endpoint: str,
    message: str,
    provider: str | None = None,
    max_tokens: int = 64,
    model: str | None = None,
) -> dict[str, Any]:
    """One OpenAI chat request to the endpoint; the response body."""
    backend, entry = find(endpoint, provider)
    served = model or entry.plan.get("serving", {}).get("served_name") or endpoint
    return backend.invoke(entry.ref, serving.chat_request(served, message, max_tokens))


def delete(endpoint: str, provider: str | None = None) -> EndpointEntry:
    backend, entry = find(endpoint, provider)
    backend.delete_endpoint(entry.ref)
    Ledger().forget_endpoint(entry.ref.provider, entry.ref.endpoint)
    return entry


def list_endpoints() -> list[EndpointEntry]:
    return Ledger().endpoints()


# --- recipe serve: a run or a model directory, here --------------------------------------------


def serve_source(source: str) -> str:
    """A run id (from the ledger) becomes its run directory; anything else is kept as is."""
    if Path(source).exists() or source.startswith("builtin:"):
        return source
    ledger = Ledger()  # a RECIPE_HOME that cannot be used is said as such
    if source not in ledger.run_ids():
        if "/" in source and not source.startswith((".", "/")):
            return source  # a hub id such as Qwen/Qwen2.5-0.5B-Instruct
        raise RecipeInputError(
            Problem(
                f"'{source}' is neither a run id, a directory nor builtin:tiny-chat",
                field="SOURCE",
                hint="`recipe runs` lists run ids",
            )
        )
    entry = ledger.get(source)
    if "run_dir" not in entry.ref.ids:
        raise RecipeInputError(
            Problem(
                f"run {source} ran on {entry.ref.provider}; `recipe serve` serves local runs "
                "and model directories",
                field="SOURCE",
                hint=f"deploy it there: recipe endpoint deploy {source}",
            )
        )
    return entry.ref.ids["run_dir"]


def serve(
    source: str,
    *,
    on_ready: Callable[[str], None] | None = None,
    **settings: Any,
) -> None:
    """Serve a run, a model directory or a base model here until interrupted (blocking).

    settings: adapters, host, port, api_key, max_batch, max_queue, max_model_len (see
    the local server's ServeConfig)."""
    source = serve_source(source)  # a bad source is refused before torch is imported
    try:
        server = registry.local_server()
    except ImportError as exc:  # fastapi, uvicorn, torch...: the serve and train extras
        raise ProviderError(
            f"recipe serve needs {exc.name or 'its extras'}: pip install '.[serve,train]' "
            "(or pip install 'recipe-ft[serve,train]')",
            ErrorKind.MISSING_EXTRA,
        ) from None
    config = server.ServeConfig(source=source, **settings)
    server.check(config)
    server.serve(config, on_ready=on_ready)
