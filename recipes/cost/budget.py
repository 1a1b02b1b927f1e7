"""The budget guard: `run` refuses when the plan's estimate exceeds budget.max_usd."""

from __future__ import annotations

from dataclasses import dataclass

from recipes.cost.estimate import Estimate, expected_cost
from recipes.errors import Problem, RecipeInputError
from recipes.schema import Recipe


@dataclass(frozen=True)
class BudgetCheck:
    within: bool
    figures: str  # the estimate against the budget, for a message or a warning


def check_budget(recipe: Recipe, est: Estimate, override: bool) -> BudgetCheck:
    """Raise when the expected cost exceeds the budget, unless overridden (then say so)."""
    if recipe.budget is None:
        return BudgetCheck(True, "")
    cost = expected_cost(recipe, est)
    if cost <= recipe.budget.max_usd:
        return BudgetCheck(True, "")
    kind = "spot" if recipe.compute.spot and est.spot_usd is not None else "on-demand"
    figures = (
        f"estimate ${cost:,.2f} {kind} ({est.hours:g} h; on demand ${est.on_demand_usd:,.2f}"
        + (f", spot ${est.spot_usd:,.2f}" if est.spot_usd is not None else "")
        + f") exceeds budget.max_usd ${recipe.budget.max_usd:,.2f}"
    )
    if override:
        return BudgetCheck(False, figures)
    raise RecipeInputError(
        Problem(
            figures,
            field="budget.max_usd",
            hint=f"basis: {est.basis}. Raise the budget, shrink the job, or pass --override-budget",
        )
    )
