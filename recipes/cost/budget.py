"""The budget guard: `run` refuses when the plan's estimate exceeds budget.max_usd."""

from __future__ import annotations

import sys
from typing import Any

from providers.base import Plan
from recipes.cost.estimate import expected_cost
from recipes.errors import Problem, RecipeInputError


def check_budget(loaded: Any, plan: Plan, override: bool) -> None:
    recipe = loaded.resolved()
    if recipe.budget is None:
        return
    est = plan.estimate
    cost = expected_cost(recipe, est)
    if cost <= recipe.budget.max_usd:
        return
    kind = "spot" if recipe.compute.spot and est.spot_usd is not None else "on-demand"
    figures = (
        f"estimate ${cost:,.2f} {kind} ({est.hours:g} h; on demand ${est.on_demand_usd:,.2f}"
        + (f", spot ${est.spot_usd:,.2f}" if est.spot_usd is not None else "")
        + f") exceeds budget.max_usd ${recipe.budget.max_usd:,.2f}"
    )
    if override:
        print(f"warning: {figures}; launching anyway (--override-budget)", file=sys.stderr)
        return
    error = RecipeInputError(
        Problem(
            figures,
            field="budget.max_usd",
            hint=f"basis: {est.basis}. Raise the budget, shrink the job, or pass --override-budget",
        )
    )
    raise loaded.locate(error) from None
