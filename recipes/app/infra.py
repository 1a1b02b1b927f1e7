"""Account bootstrap: the templates under infra/<cloud>/ filled from a recipe's tags, cost
center and budget, then planned (no network), applied through the cloud's own engine, or
checked against an account.

Parameters come from, in order: `--set KEY=VALUE` flags, the recipe (tags, cost center,
budget, compute.<cloud> settings), defaults. Without a recipe, the cost center and the
budget must be given with --set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers import registry
from providers.base import Finding, InfraParams, InfraPlan
from recipes.errors import Problem, RecipeInputError
from recipes.loader import load_recipe
from recipes.schema import Recipe

CLOUDS = ("aws", "azure", "gcp")
# The smallest monthly budget the templates take (AWS: the template's MinValue; Azure and
# GCP take whole units).
MIN_BUDGET = 1.0
# Settings each cloud's template reads, from the recipe's compute.<cloud> block.
RECIPE_SETTINGS = {
    "aws": ("region",),
    "azure": ("subscription", "resource_group", "workspace", "region"),
    "gcp": ("project", "region"),
}
# Keys --set takes besides a cloud's settings.
COMMON_KEYS = ("prefix", "region", "cost_center", "monthly_budget", "currency", "alert_email")
SETTING_KEYS = {
    "aws": ("account_id", "billing_resources"),
    "azure": ("subscription", "resource_group", "workspace"),
    "gcp": ("project", "billing_account"),
}
_PREFIX = re.compile(r"^[a-z][a-z0-9-]{1,18}[a-z0-9]$")
# S3 bucket names may not start with xn-- or sthree- (S3 naming rules); GCS names may not
# start with goog or contain google (Cloud Storage naming guidelines).
_RESERVED_PREFIXES = ("xn--", "sthree-", "goog")
_COST_CENTER = re.compile(r"^[\w .+=@/-]{1,64}$")
# Shapes of the settings, checked before they reach a name, a URL or a template.
_SETTING_SHAPES = {
    "region": (
        r"^[a-z]{2,}(-[a-z0-9]+)*[0-9]?$|^[a-z]+[0-9]?$",
        "a region id such as us-east-1, eastus or us-central1",
    ),
    "account_id": (r"^\d{12}$", "a 12-digit AWS account id"),
    "billing_resources": (r"^(true|false)$", "true or false"),
    "subscription": (
        r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        "a subscription id (a GUID)",
    ),
    "resource_group": (
        r"^[-\w.()]{1,89}[-\w()]$|^[-\w()]$",
        "a resource group name (letters, digits, -_.())",
    ),
    "workspace": (r"^[A-Za-z0-9][\w-]{2,32}$", "an Azure ML workspace name"),
    "currency": (r"^[A-Za-z]{3}$", "an ISO 4217 code such as USD"),
    "alert_email": (
        r"^[^@\s,]{1,64}@[^@\s,]{1,255}\.[a-z]{2,}(,[^@\s,]{1,64}@[^@\s,]{1,255}\.[a-z]{2,}){0,9}$",
        "up to 10 comma-separated e-mail addresses",
    ),
}


@dataclass(frozen=True)
class Checked:
    provider: str
    findings: list[Finding]

    @property
    def missing(self) -> list[Finding]:
        return [f for f in self.findings if f.status != "ok"]


def params(provider: str, recipe_file: str | Path | None, sets: Sequence[str]) -> InfraParams:
    """The template's parameters from the recipe and --set flags; every problem at once."""
    if provider not in CLOUDS:
        raise RecipeInputError(
            Problem(
                f"{provider!r} needs no account set-up" if provider == "local" else
                f"unknown provider {provider!r}",
                file="command line",
                field="--provider",
                hint="aws, azure or gcp",
            )
        )  # fmt: skip
    given = _sets(provider, sets)
    recipe = load_recipe(recipe_file, check_files=False).resolved() if recipe_file else None
    problems: list[Problem] = []
    tags = dict(recipe.tags) if recipe else {}
    cost_center = given.pop("cost_center", None) or tags.get("cost_center")
    if not cost_center:
        problems.append(_need("cost_center", "the budget filters on the cost_center tag", recipe))
    else:
        tags["cost_center"] = cost_center
    if cost_center and not _COST_CENTER.match(str(cost_center)):
        problems.append(
            Problem(
                f"cost center {str(cost_center)[:40]!r} is not 1-64 letters, digits, spaces "
                "and _ . - + = @ /",
                file="command line",
                field="--set cost_center (or tags.cost_center)",
                hint="it names the budget, which AWS Budgets limits to these characters",
            )
        )
    budget = _budget(given.pop("monthly_budget", None), recipe, problems)
    settings = _settings(provider, recipe, given)
    prefix = given.pop("prefix", None) or _prefix_of(recipe, tags)
    if not _PREFIX.match(prefix) or prefix.startswith(_RESERVED_PREFIXES) or "google" in prefix:
        problems.append(
            Problem(
                f"prefix {prefix!r} is not 3-20 lower-case letters, digits and hyphens, or is "
                "one the clouds reserve",
                file="command line",
                field="--set prefix",
                hint="e.g. --set prefix=ml-support (bucket and key names start with it; not "
                "xn--, sthree-, goog or google)",
            )
        )
    problems += _check_settings(provider, {**settings, **given})
    if problems:
        raise RecipeInputError(problems)
    emails = tuple(e for e in given.pop("alert_email", "").split(",") if e)
    return InfraParams(
        prefix=prefix,
        region=given.pop("region", None) or settings.pop("region", _DEFAULT_REGION[provider]),
        tags=tags,
        cost_center=str(cost_center),
        monthly_budget=budget or 0.0,
        currency=given.pop("currency", "USD").upper(),
        alert_emails=emails,
        settings={**settings, **given},
    )


_DEFAULT_REGION = {"aws": "us-east-1", "azure": "eastus", "gcp": "us-central1"}


def _sets(provider: str, sets: Sequence[str]) -> dict[str, str]:
    allowed = (*COMMON_KEYS, *SETTING_KEYS[provider])
    out: dict[str, str] = {}
    problems = []
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or key not in allowed or not value:
            problems.append(
                Problem(
                    f"{item[:60]!r} is not KEY=VALUE with a key {provider} takes",
                    file="command line",
                    field="--set",
                    hint="keys: " + ", ".join(allowed),
                )
            )
            continue
        if key in out:
            problems.append(
                Problem(
                    f"{key} is given twice",
                    file="command line",
                    field=f"--set {key}",
                    hint="give each key once",
                )
            )
        out[key] = value
    if problems:
        raise RecipeInputError(problems)
    return out


def _check_settings(provider: str, values: Mapping[str, str]) -> list[Problem]:
    problems = []
    for key, value in values.items():
        shape = _SETTING_SHAPES.get(key)
        if shape and not re.match(shape[0], value):
            problems.append(
                Problem(
                    f"{value[:60]!r} is not {shape[1]}",
                    file="command line",
                    field=f"--set {key}",
                )
            )
    return problems


def _need(key: str, why: str, recipe: Recipe | None) -> Problem:
    return Problem(
        f"no {key}: {why}",
        file="command line",
        field=f"--set {key}",
        hint=f"--set {key}=VALUE"
        + ("" if recipe else ", or --recipe R (its tags and budget fill it)"),
    )


def _budget(text: str | None, recipe: Recipe | None, problems: list[Problem]) -> float | None:
    if text is not None:
        try:
            value = float(text)
            if MIN_BUDGET <= value < 1e9:
                return round(value, 2)
        except ValueError:
            pass
        problems.append(
            Problem(
                f"{text[:30]!r} is not an amount from {MIN_BUDGET:g} to 1e9",
                file="command line",
                field="--set monthly_budget",
                hint="a number, e.g. --set monthly_budget=2500",
            )
        )
        return None
    budget = recipe.budget if recipe else None
    if budget is not None:
        # The monthly endpoint budget is the better fit; a run's max_usd otherwise.
        value = budget.max_monthly_usd or budget.max_usd
        if value >= MIN_BUDGET:
            return round(value, 2)
        problems.append(
            Problem(
                f"the recipe's budget ({value:g}) is below {MIN_BUDGET:g}, too little for a "
                "monthly budget alarm",
                file="command line",
                field="--set monthly_budget",
                hint="--set monthly_budget=AMOUNT",
            )
        )
        return None
    problems.append(
        _need(
            "monthly_budget",
            "the budget alarm needs a limit (the recipe has no budget block)",
            recipe,
        )
    )
    return None


def _settings(provider: str, recipe: Recipe | None, given: dict[str, str]) -> dict[str, str]:
    block = getattr(recipe.compute, provider, None) if recipe else None
    out = {}
    for key in RECIPE_SETTINGS[provider]:
        value = getattr(block, key, None) if block else None
        if value and key not in given:
            out[key] = str(value)
    return out


def _prefix_of(recipe: Recipe | None, tags: Mapping[str, str]) -> str:
    base = tags.get("project") or (recipe.name if recipe else "recipe")
    slug = re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-")[:20].rstrip("-")
    return slug if len(slug) >= 3 else "recipe"


# --- the use cases ----------------------------------------------------------------------------


def plan(
    provider: str, recipe_file: str | Path | None, sets: Sequence[str], **clients: Any
) -> InfraPlan:
    return registry.infra_backend(provider, **clients).plan(params(provider, recipe_file, sets))


def apply(the_plan: InfraPlan, **clients: Any) -> list[str]:
    """Apply exactly the plan that was shown."""
    return registry.infra_backend(the_plan.provider, **clients).apply(the_plan)


def check(
    provider: str, recipe_file: str | Path | None, sets: Sequence[str], **clients: Any
) -> Checked:
    backend = registry.infra_backend(provider, **clients)
    return Checked(provider, backend.check(params(provider, recipe_file, sets)))
