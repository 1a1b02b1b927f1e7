"""Use cases for runs: validate, plan, run (budget and preflight first), status, logs,
cancel, list. Plain functions a release script, a notebook or the CLI can call; they
return data and raise the typed errors of recipes.errors, and never print.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from providers import registry
from providers.base import JobBackend, Plan, RunIdentity, RunRef, RunStatus, State
from providers.staging import cloud_identity
from recipes.app.ledger import Ledger, run_estimate
from recipes.app.preflight import check_local_data
from recipes.cost.budget import check_budget
from recipes.errors import Problem, RecipeInputError
from recipes.loader import LoadedRecipe, load_recipe
from recipes.runid import new_run_id
from recipes.tags import TagPolicy

POLL_SECONDS = 1.0


# --- validate and plan -----------------------------------------------------------------------


@dataclass(frozen=True)
class Validated:
    path: str
    name: str
    method: str


@dataclass(frozen=True)
class Validation:
    valid: list[Validated]
    problems: list[Problem]  # of every file at once; raise RecipeInputError(problems)


def validate(paths: list[str], overrides: list[str] | None = None) -> Validation:
    """Every file against the schema, the cross-field rules and RECIPE_TAG_POLICY."""
    if not paths:
        raise RecipeInputError("FILE: give at least one recipe file")
    policy = TagPolicy.from_env()
    problems: list[Problem] = []
    valid = []
    for path in paths:
        try:
            loaded = load_recipe(path, overrides or [])
            _check_policy(loaded, policy)
        except RecipeInputError as exc:
            problems += exc.problems
            continue
        recipe = loaded.recipe
        valid.append(Validated(str(path), recipe.name, recipe.method.kind))
    return Validation(valid, problems)


@dataclass(frozen=True)
class Prepared:
    loaded: LoadedRecipe
    backend: JobBackend
    plan: Plan


def prepare(
    file: Path | str,
    overrides: list[str] | None = None,
    provider: str = "local",
    attempt: int = 1,
    backend: JobBackend | None = None,
) -> Prepared:
    """Load, validate and plan: exactly what `run` would send. No network."""
    loaded = load_recipe(file, overrides or [])
    recipe = loaded.resolved()
    backend = backend or registry.for_recipe(provider, recipe)
    if backend.capabilities.idempotent:
        identity = cloud_identity(recipe.name, loaded.content_hash, attempt)
    else:
        identity = RunIdentity(new_run_id(recipe.name), recipe.name, loaded.content_hash)
    try:
        _check_policy(loaded, TagPolicy.from_env())
        plan = backend.plan(recipe, identity)
    except RecipeInputError as exc:
        raise loaded.locate(exc) from None
    return Prepared(loaded, backend, plan)


def _check_policy(loaded: LoadedRecipe, policy: TagPolicy | None) -> None:
    if policy is None:
        return
    try:
        policy.check(dict(loaded.recipe.tags))
    except RecipeInputError as exc:
        raise loaded.locate(exc) from None


# --- run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Launched:
    ref: RunRef
    state: State
    existing: bool = False  # the job was already there: nothing was launched
    warnings: tuple[str, ...] = ()


def run(
    file: Path | str,
    overrides: list[str] | None = None,
    provider: str = "local",
    *,
    override_budget: bool = False,
    new_attempt: bool = False,
    backend: JobBackend | None = None,
) -> Launched:
    """Plan, check the budget and every local data row, then submit exactly the plan.

    On a cloud the job name comes from the recipe's content: the same recipe again
    reports the existing job (`existing`), unless `new_attempt` asks for attempt N+1.
    """
    ledger = Ledger()  # a bad RECIPE_HOME is refused before anything is created
    prepared = prepare(file, overrides, provider, backend=backend)
    loaded, backend, plan = prepared.loaded, prepared.backend, prepared.plan
    recipe = loaded.resolved()
    warnings = []
    try:
        budget = check_budget(recipe, plan.estimate, override_budget)
    except RecipeInputError as exc:
        raise loaded.locate(exc) from None
    if not budget.within:
        warnings.append(f"{budget.figures}; launching anyway (--override-budget)")
    check_local_data(recipe)  # bad rows cost no job and leave nothing behind
    if new_attempt and backend.capabilities.idempotent:
        latest = backend.latest_attempt(plan)
        plan = prepare(file, overrides, provider, attempt=latest + 1, backend=backend).plan
    submitted = backend.submit(plan)
    # Absolute: `recipe endpoint` reads it again, perhaps from another directory.
    ledger.record(submitted.ref, recipe.name, str(Path(file).resolve()), State.QUEUED)
    ledger.record_estimate(run_estimate(plan))
    state = State.QUEUED
    if submitted.existing:
        state = backend.status(submitted.ref).state
        ledger.update_state(submitted.ref.run_id, state)
    return Launched(submitted.ref, state, submitted.existing, tuple(warnings))


# --- following a run -------------------------------------------------------------------------


def find(run_id: str) -> tuple[JobBackend, RunRef]:
    """The backend and reference of a run launched from here (the ledger)."""
    ref = Ledger().get(run_id).ref
    return registry.for_run(ref), ref


def status(run_id: str) -> RunStatus:
    backend, ref = find(run_id)
    current = backend.status(ref)
    Ledger().update_state(run_id, current.state)
    return current


def logs(run_id: str, follow: bool = False) -> Iterator[str]:
    backend, ref = find(run_id)
    return backend.logs(ref, follow=follow)


def cancel(run_id: str) -> RunStatus:
    backend, ref = find(run_id)
    final = backend.cancel(ref)
    Ledger().update_state(run_id, final.state)
    return final


def wait(
    run_id: str,
    on_update: Callable[[RunStatus], None] = lambda _: None,
    poll_s: float = POLL_SECONDS,
) -> RunStatus:
    """Poll until the run ends, calling on_update with each status; records the end."""
    backend, ref = find(run_id)
    while True:
        current = backend.status(ref)
        on_update(current)
        if current.state.terminal:
            Ledger().update_state(run_id, current.state)
            return current
        time.sleep(poll_s)


@dataclass
class RunRow:
    run_id: str
    provider: str
    recipe: str
    state: str
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Listing:
    rows: list[RunRow]
    warnings: list[str] = field(default_factory=list)  # runs whose backend could not answer


def list_runs(limit: int = 20) -> Listing:
    """Runs launched from here, newest first; unfinished ones are asked for their state."""
    ledger = Ledger()
    listing = Listing(rows=[])
    for entry in ledger.list(limit):
        state = entry.state
        if not state.terminal:
            try:
                state = registry.for_run(entry.ref).status(entry.ref).state
                ledger.update_state(entry.ref.run_id, state)
            except Exception as exc:  # a listing must not die on one unreachable run
                listing.warnings.append(f"{entry.ref.run_id}: {exc}")
        listing.rows.append(
            RunRow(
                entry.ref.run_id,
                entry.ref.provider,
                entry.recipe_name,
                state.value,
                entry.created_at,
            )
        )
    return listing
