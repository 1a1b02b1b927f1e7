"""`recipe infra`: parameters from a recipe and --set, the plan through the CLI for every
cloud (the acceptance), and bad input."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from recipes.app import infra
from recipes.cli import app
from recipes.errors import RecipeInputError
from tests.conftest import CATALOG, CLI

A100 = CATALOG / "support-triage-a100.yaml"


@pytest.mark.parametrize("cloud", ["aws", "azure", "gcp"])
def test_parameters_come_from_the_recipe(cloud: str) -> None:
    p = infra.params(cloud, A100, [])
    assert p.cost_center == "cc-4711"
    assert p.monthly_budget == 2500  # budget.max_monthly_usd
    assert p.tags["project"] == "support-triage" and p.tags["cost_center"] == "cc-4711"
    assert p.prefix == "support-triage"


def test_set_flags_win_over_the_recipe() -> None:
    p = infra.params(
        "gcp",
        A100,
        ["cost_center=cc-9", "monthly_budget=120", "prefix=ml-team", "billing_account=0A-1B"],
    )
    assert (p.cost_center, p.monthly_budget, p.prefix) == ("cc-9", 120.0, "ml-team")
    assert p.tags["cost_center"] == "cc-9" and p.settings["billing_account"] == "0A-1B"


def test_without_a_recipe_every_missing_value_is_named_at_once() -> None:
    with pytest.raises(RecipeInputError) as err:
        infra.params("aws", None, [])
    fields = {p.field for p in err.value.problems}
    assert fields == {"--set cost_center", "--set monthly_budget"}
    p = infra.params("aws", None, ["cost_center=cc-1", "monthly_budget=50"])
    assert p.prefix == "recipe" and p.tags == {"cost_center": "cc-1"}


@pytest.mark.parametrize(
    ("sets", "field"),
    [
        (["monthly_budget=lots"], "--set monthly_budget"),
        (["prefix=Not_OK"], "--set prefix"),
        (["colour=blue"], "--set"),
        (["billing_account=0A"], "--set"),  # a gcp key, asked of aws
        (["region"], "--set"),
    ],
)
def test_bad_set_flags(sets: list[str], field: str) -> None:
    with pytest.raises(RecipeInputError) as err:
        infra.params("aws", A100, sets)
    assert field in {p.field for p in err.value.problems}


def test_local_and_unknown_providers_are_refused() -> None:
    for provider, text in (("local", "needs no account set-up"), ("oci", "unknown provider")):
        with pytest.raises(RecipeInputError, match=text):
            infra.params(provider, A100, [])


@pytest.mark.parametrize("cloud", ["aws", "azure", "gcp"])
def test_plan_prints_the_filled_template_with_the_recipes_tags_and_budget(
    cli: CLI, cloud: str
) -> None:
    sets = {
        "aws": [],
        "azure": ["--set", "subscription=00000000-0000-0000-0000-000000000000",
                  "--set", "resource_group=rg-ml"],
        "gcp": [],  # the recipe's compute.gcp.project; the billing account is shown unset
    }[cloud]  # fmt: skip
    text = cli("infra", "plan", "--provider", cloud, "--recipe", A100, *sets)
    assert text.returncode == 0, text.stderr
    assert "cc-4711" in text.stdout and "2500" in text.stdout and "support-triage" in text.stdout
    plan = json.loads(cli("infra", "plan", "-p", cloud, "-r", A100, *sets, "-f", "json").stdout)
    assert plan["provider"] == cloud and plan["steps"] and plan["template"]
    flat = json.dumps(plan["parameters"])
    assert "cc-4711" in flat and "2500" in flat


def test_apply_asks_first_and_refuses_without_a_terminal(cli: CLI) -> None:
    result = cli("infra", "apply", "--provider", "aws", "--recipe", A100)
    assert result.returncode == 2 and "--yes" in result.stderr


def test_a_recipe_without_a_budget_block_asks_for_one(write_recipe, tmp_path) -> None:
    import yaml

    recipe = yaml.safe_load(A100.read_text())
    recipe.pop("budget")
    path = write_recipe(recipe, "nobudget.yaml")
    with pytest.raises(RecipeInputError) as err:
        infra.params("aws", path, [])
    assert {p.field for p in err.value.problems} == {"--set monthly_budget"}
    assert infra.params("aws", path, ["monthly_budget=75.5"]).monthly_budget == 75.5


@pytest.mark.parametrize(
    ("sets", "field"),
    [
        (["monthly_budget=0.5"], "--set monthly_budget"),
        (["prefix=xn--abc"], "--set prefix"),
        (["prefix=goog-ml"], "--set prefix"),
        (["prefix=my-google"], "--set prefix"),
        (["cost_center=a:b"], "--set cost_center (or tags.cost_center)"),
        (["region=US-EAST-1"], "--set region"),
        (["account_id=abc"], "--set account_id"),
        (["alert_email=not-an-address"], "--set alert_email"),
        (["prefix=abc", "prefix=xyz"], "--set prefix"),
    ],
)
def test_values_the_clouds_would_refuse_are_refused_at_plan(sets: list[str], field: str) -> None:
    with pytest.raises(RecipeInputError) as err:
        infra.params("aws", A100, sets)
    assert field in {p.field for p in err.value.problems}


def test_azure_settings_are_checked_before_they_reach_a_url() -> None:
    with pytest.raises(RecipeInputError) as err:
        infra.params("azure", A100, ["subscription=not-a-guid", "resource_group=rg/../x"])
    assert {p.field for p in err.value.problems} == {"--set subscription", "--set resource_group"}


def test_aws_budget_amounts_keep_their_cents() -> None:
    from providers.aws.infra import AwsInfra

    plan = AwsInfra().plan(infra.params("aws", A100, ["monthly_budget=1234567.89"]))
    assert plan.parameters["MonthlyBudget"] == "1234567.89"


# --- any flags: a plan or one message, never a traceback --------------------------------------

KEYS = st.sampled_from(
    ["prefix", "region", "cost_center", "monthly_budget", "currency", "alert_email",
     "account_id", "billing_resources", "subscription", "resource_group", "workspace",
     "project", "billing_account", "colour", ""]
)  # fmt: skip
VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["1e400", "nan", "-1", "0.5", "2500", "us-east-1", "a@b.io", "x" * 300]),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.sampled_from(["aws", "azure", "gcp"]),
    st.lists(st.tuples(KEYS, VALUES), max_size=4),
    st.booleans(),
)
def test_any_set_flags_give_a_plan_or_one_message(
    cloud: str, pairs: list[tuple[str, str]], with_recipe: bool
) -> None:
    args = ["infra", "plan", "--provider", cloud, "-f", "json"]
    if with_recipe:
        args += ["--recipe", str(A100)]
    for key, value in pairs:
        args += ["--set", f"{key}={value}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code in (0, 2), (args, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), args
    if result.exit_code == 0:
        assert json.loads(result.stdout)["provider"] == cloud
