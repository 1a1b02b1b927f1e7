"""Cost of an endpoint before it exists, and the guard that refuses an expensive one.

An endpoint bills its instances around the clock whether or not anyone calls it:
hourly = price per instance-hour x replicas; monthly = hourly x 730 (AWS's and
Azure's pricing pages use 730 hours a month). min_replicas is what always runs,
max_replicas what autoscaling may reach; the guard bounds the latter.

Prices are the hardware catalog's (recipes/cost/hardware.yaml): the managed training
list rate of the same instance. SageMaker real-time inference, Azure ML managed
online endpoints (billed at the VM rate) and Vertex AI prediction nodes list their
own rates, within roughly +/-15% of those; the basis says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from recipes.cost.catalog import Offer
from recipes.errors import Problem, RecipeInputError
from recipes.schema import Recipe

HOURS_PER_MONTH = 730


@dataclass(frozen=True)
class EndpointEstimate:
    """Hourly and monthly cost: price x replicas."""

    instance_type: str
    hourly_usd: float  # at min_replicas: what runs around the clock
    monthly_usd: float
    max_monthly_usd: float  # at max_replicas: the most autoscaling can cost
    currency: str = "USD"
    basis: str = ""


def estimate_endpoint(
    offer: Offer, region: str, min_replicas: int, max_replicas: int, catalog_version: str
) -> EndpointEstimate:
    price = offer.price(region)
    assert price is not None, "catalog.resolve only returns offers priced in the region"
    hourly = price.on_demand * min_replicas
    return EndpointEstimate(
        instance_type=offer.instance_type,
        hourly_usd=round(hourly, 2),
        monthly_usd=round(hourly * HOURS_PER_MONTH, 2),
        max_monthly_usd=round(price.on_demand * max_replicas * HOURS_PER_MONTH, 2),
        basis=(
            f"{min_replicas}-{max_replicas} x {offer.instance_type} at ${price.on_demand:.3f}/h "
            f"on demand in {region}, {HOURS_PER_MONTH} h/month (catalog {catalog_version}, "
            f"prices as of {offer.as_of}; the training list rate of the instance: serving "
            "list rates differ by up to ~15%)"
        ),
    )


def check_endpoint_budget(recipe: Recipe, est: EndpointEstimate, override: bool) -> str:
    """Raise when max_replicas would cost more a month than budget.max_monthly_usd, unless
    overridden; returns the warning to show when overridden ("" when within)."""
    limit = recipe.budget.max_monthly_usd if recipe.budget else None
    if limit is None or est.max_monthly_usd <= limit:
        return ""
    figures = (
        f"endpoint estimate ${est.max_monthly_usd:,.2f}/month at max_replicas "
        f"(${est.monthly_usd:,.2f}/month at min_replicas) exceeds budget.max_monthly_usd "
        f"${limit:,.2f}"
    )
    if override:
        return f"{figures}; deploying anyway (--override-budget)"
    raise RecipeInputError(
        Problem(
            figures,
            field="budget.max_monthly_usd",
            hint=f"basis: {est.basis}. Raise the budget, lower deploy.max_replicas or pick a "
            "smaller deploy.accelerator, or pass --override-budget",
        )
    )
