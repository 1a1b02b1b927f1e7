"""`recipe infra --provider azure`: infra/azure/account.json read as data (tags, public
access, the budget's filter, API versions), the plan filled from a catalog recipe, apply
through the real DeploymentsMgmtClient against an HTTP fake of ARM, and check through the real
ResourceManagementClient against a good account and against planted gaps."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from providers.azure.infra import TEMPLATE, AzureInfra, names
from providers.base import Finding, InfraParams
from recipes.app import infra
from recipes.errors import ProviderError, RecipeInputError
from tests.conftest import CATALOG, REPO
from tests.fakes.azure import SUB
from tests.fakes.azure_infra import FakeArm, arm_clients, good_account

A100 = CATALOG / "support-triage-a100.yaml"
TODAY = date(2026, 11, 23)
# Resource types whose ARM schema has a `tags` property (ARM template reference of each):
# they must all carry the recipe's tags. The others have none (budgets and exports are proxy
# resources; containers, blob services and role assignments take no tags).
TAGGABLE = {
    "Microsoft.Resources/deployments",
    "Microsoft.ManagedIdentity/userAssignedIdentities",
    "Microsoft.KeyVault/vaults",
    "Microsoft.KeyVault/vaults/keys",
    "Microsoft.Storage/storageAccounts",
}
UNTAGGABLE = {
    "Microsoft.Storage/storageAccounts/blobServices",
    "Microsoft.Storage/storageAccounts/blobServices/containers",
    "Microsoft.Authorization/roleAssignments",
    "Microsoft.Consumption/budgets",
    "Microsoft.CostManagement/exports",
}


def template() -> dict[str, Any]:
    return json.loads((REPO / TEMPLATE).read_text())


def resources(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every resource, nested deployments' inline templates included."""
    for resource in node.get("resources", []):
        yield resource
        inner = (resource.get("properties") or {}).get("template")
        if inner:
            yield from resources(inner)


def of_type(kind: str) -> list[dict[str, Any]]:
    return [r for r in resources(template()) if r["type"] == kind]


def params(*sets: str) -> InfraParams:
    return infra.params("azure", A100, list(sets))


@pytest.fixture
def arm() -> Iterator[FakeArm]:
    with FakeArm() as fake:
        yield fake


def backend(fake: FakeArm) -> AzureInfra:
    return AzureInfra(**arm_clients(fake), today=lambda: TODAY, poll_timeout_s=20)


# --- the template ----------------------------------------------------------------------------


def test_every_taggable_resource_carries_the_tags_parameter() -> None:
    found = list(resources(template()))
    assert {r["type"] for r in found} <= TAGGABLE | UNTAGGABLE, "decide: taggable or not?"
    for resource in found:
        if resource["type"] in TAGGABLE:
            assert resource.get("tags") == "[parameters('tags')]", resource["name"]
        else:
            assert "tags" not in resource, resource["type"]
    nested = of_type("Microsoft.Resources/deployments")[0]["properties"]["parameters"]
    assert nested["tags"] == {"value": "[parameters('tags')]"}  # passed down, not rebuilt


def test_nothing_is_public_and_the_storage_is_encrypted_with_the_vaults_key() -> None:
    (account,) = of_type("Microsoft.Storage/storageAccounts")
    props = account["properties"]
    assert account["kind"] == "StorageV2"
    assert props["allowBlobPublicAccess"] is False
    assert props["supportsHttpsTrafficOnly"] is True and props["minimumTlsVersion"] == "TLS1_2"
    assert props["encryption"]["keySource"] == "Microsoft.Keyvault"
    containers = of_type("Microsoft.Storage/storageAccounts/blobServices/containers")
    assert len(containers) == 2 and all(
        c["properties"]["publicAccess"] == "None" for c in containers
    )
    (vault,) = of_type("Microsoft.KeyVault/vaults")
    v = vault["properties"]
    assert v["enableRbacAuthorization"] and v["enablePurgeProtection"] and v["enableSoftDelete"]
    assert v["networkAcls"]["defaultAction"] == "Deny"
    (key,) = of_type("Microsoft.KeyVault/vaults/keys")
    assert key["properties"]["kty"].startswith("RSA") and key["properties"]["keySize"] in (
        2048,
        3072,
    )


def test_the_budget_filters_on_cost_center_and_alerts_at_80_actual_and_100_forecast() -> None:
    (budget,) = of_type("Microsoft.Consumption/budgets")
    assert budget["properties"]["filter"]["tags"] == {
        "name": "cost_center",
        "operator": "In",
        "values": ["[parameters('costCenter')]"],
    }
    notifications = budget["properties"]["notifications"]
    for expected in ("'threshold', 80, 'thresholdType', 'Actual'",
                     "'threshold', 100, 'thresholdType', 'Forecasted'"):  # fmt: skip
        assert expected in notifications
    assert "parameters('alertEmails')" in notifications


def test_the_export_is_focus_into_the_cost_export_container() -> None:
    (export,) = of_type("Microsoft.CostManagement/exports")
    props = export["properties"]
    assert props["definition"]["type"] == "FocusCost"
    assert props["deliveryInfo"]["destination"]["container"] == "cost-exports"
    assert props["schedule"]["status"] == "Active"
    names_in_template = [c["name"] for c in of_type(
        "Microsoft.Storage/storageAccounts/blobServices/containers")]  # fmt: skip
    assert any("costExportsContainer" in n for n in names_in_template)


def test_every_resource_names_an_api_version_and_the_parameters_are_the_briefs() -> None:
    for resource in resources(template()):
        assert len(resource["apiVersion"]) >= 10, resource["type"]  # YYYY-MM-DD[-preview]
    assert {"prefix", "location", "tags", "costCenter", "monthlyBudget", "alertEmails",
            "budgetStartDate"} <= set(template()["parameters"])  # fmt: skip


# --- plan ------------------------------------------------------------------------------------


def test_plan_fills_the_parameters_from_the_recipe() -> None:
    plan = AzureInfra(today=lambda: TODAY).plan(params())
    p = plan.parameters
    assert p["costCenter"] == "cc-4711" and p["monthlyBudget"] == 2500
    assert p["tags"] == {
        "project": "support-triage", "cost_center": "cc-4711", "owner": "ml-platform", "env": "dev"
    }  # fmt: skip
    assert (p["location"], p["resourceGroupName"], p["workspaceName"]) == (
        "eastus",
        "rg-ml",
        "ws-ml",
    )
    assert p["budgetStartDate"] == "2026-11-01T00:00:00Z"
    assert (p["exportStartDate"], p["exportEndDate"]) == (
        "2026-11-24T00:00:00Z",
        "2031-11-24T00:00:00Z",
    )
    assert p["alertEmails"] == [] and any("no alert e-mail" in note for note in plan.notes)
    assert set(p) == set(template()["parameters"])  # every parameter filled, none extra
    n = names(params())
    assert 3 <= len(p["storageAccountName"]) <= 24 and p["storageAccountName"].isalnum()
    assert len(p["keyVaultName"]) <= 24 and p["keyVaultName"] == n.vault


def test_plan_is_one_subscription_scope_deployment_put_with_the_exact_body() -> None:
    plan = AzureInfra(today=lambda: TODAY).plan(params("alert_email=finops@example.com"))
    (step,) = plan.steps
    assert step.api == (
        f"arm:PUT /subscriptions/{SUB}/providers/Microsoft.Resources/deployments/"
        "recipe-account-support-triage"
    )
    body = step.body
    assert body["location"] == "eastus" and body["tags"]["cost_center"] == "cc-4711"
    assert body["properties"]["mode"] == "Incremental"
    assert body["properties"]["template"] == template()
    assert body["properties"]["parameters"]["alertEmails"] == {"value": ["finops@example.com"]}
    assert plan.engine == "arm" and plan.template_path == "infra/azure/account.json"
    assert "secret" not in json.dumps(plan.to_dict()).lower()


def test_plan_without_a_subscription_names_the_setting() -> None:
    p = infra.params("azure", None, ["cost_center=cc-1", "monthly_budget=10"])
    with pytest.raises(RecipeInputError) as err:
        AzureInfra().plan(p)
    assert err.value.problems[0].field == "--set subscription"


def test_tags_azure_refuses_are_refused_in_the_plan() -> None:
    p = params()
    bad = InfraParams(**{**p.__dict__, "tags": {**p.tags, "azure-owner": "x"}})
    with pytest.raises(RecipeInputError, match="reserves"):
        AzureInfra().plan(bad)


# --- apply -----------------------------------------------------------------------------------


def test_apply_puts_exactly_the_planned_body_and_waits_for_arm(arm: FakeArm) -> None:
    arm.outputs = {"storageAccountId": "/subscriptions/x/st", "jobsIdentityClientId": "c0ffee"}
    azure = backend(arm)
    plan = azure.plan(params())
    done = azure.apply(plan)
    (put,) = arm.deployment_puts()
    assert put.json() == plan.steps[0].body
    assert put.path == plan.steps[0].api.removeprefix("arm:PUT ")
    polls = arm.seen("GET", r"/operationStatuses/")
    assert len(polls) == arm.polls_running + 1  # Running, Running, Succeeded
    assert done[0].endswith("Succeeded") and "  jobsIdentityClientId: c0ffee" in done


def test_a_failed_deployment_names_arms_reasons(arm: FakeArm) -> None:
    arm.failure = {
        "code": "DeploymentFailed",
        "message": "At least one resource deployment operation failed.",
        "details": [{"code": "VaultAlreadyExists", "message": "The vault name is already in use."}],
    }
    azure = backend(arm)
    with pytest.raises(ProviderError) as err:
        azure.apply(azure.plan(params()))
    assert "DeploymentFailed" in err.value.message and "VaultAlreadyExists" in err.value.message


def test_apply_refuses_a_step_it_does_not_know(arm: FakeArm) -> None:
    azure = backend(arm)
    plan = azure.plan(params())
    forged = plan.__class__(**{**plan.__dict__, "steps": (plan.steps[0].__class__("shell", {}),)})
    with pytest.raises(ProviderError, match="not an ARM deployment step"):
        azure.apply(forged)
    assert not arm.deployment_puts()


# --- check -----------------------------------------------------------------------------------


def by_item(findings: list[Finding]) -> dict[str, Finding]:
    return {f.item: f for f in findings}


def test_check_a_good_account_is_all_ok(arm: FakeArm) -> None:
    p = params()
    good_account(arm, names(p), "cc-4711", workspace="ws-ml")
    found = by_item(backend(arm).check(p))
    assert {f.status for f in found.values()} == {"ok"}, [
        f for f in found.values() if f.status != "ok"
    ]
    assert set(found) == {
        "storage account", "storage public access", "storage encryption", "storage https",
        "key vault", "key vault key", "jobs identity", "jobs identity storage role",
        "jobs identity workspace role", "budget", "cost export",
    }  # fmt: skip
    reads = [s for s in arm.server.seen if s.method == "GET"]
    assert all(s.query.get("api-version") for s in reads)  # every read names its version


def test_check_finds_planted_gaps(arm: FakeArm) -> None:
    p = params()
    n = names(p)
    good_account(arm, n, "cc-4711", workspace="ws-ml")
    arm.resources[n.storage_id.lower()]["properties"]["allowBlobPublicAccess"] = True
    arm.resources[n.storage_id.lower()]["properties"]["encryption"] = {
        "keySource": "Microsoft.Storage"
    }
    arm.resources[n.vault_id.lower()]["properties"]["enablePurgeProtection"] = False
    arm.budgets.clear()
    arm.assignments[:] = [a for a in arm.assignments if "workspaces" in a["scope"]]
    arm.exports[0]["properties"]["schedule"]["status"] = "Inactive"
    found = by_item(backend(arm).check(p))
    assert found["storage public access"].status == "weak"
    assert "allowBlobPublicAccess is True" in found["storage public access"].detail
    assert found["storage encryption"].status == "weak"
    assert found["key vault"].status == "weak" and "purge protection" in found["key vault"].detail
    assert found["budget"].status == "missing" and "cc-4711" in found["budget"].detail
    assert found["jobs identity storage role"].status == "missing"
    assert found["cost export"].status == "weak" and "Inactive" in found["cost export"].detail
    assert all(f.fix for f in found.values() if f.status != "ok")
    assert found["storage https"].status == "ok" and found["jobs identity"].status == "ok"


def test_check_an_empty_subscription_reports_each_thing_missing(arm: FakeArm) -> None:
    found = by_item(backend(arm).check(params()))
    assert {k: f.status for k, f in found.items()} == {
        "storage account": "missing", "key vault": "missing", "jobs identity": "missing",
        "budget": "missing", "cost export": "missing",
    }  # fmt: skip


def test_a_budget_on_another_cost_center_or_without_alerts_is_not_enough(arm: FakeArm) -> None:
    p = params()
    good_account(arm, names(p), "cc-9999")
    assert by_item(backend(arm).check(p))["budget"].status == "missing"
    arm.budgets[0]["properties"]["filter"]["tags"]["values"] = ["cc-4711"]
    arm.budgets[0]["properties"]["notifications"] = {}
    budget = by_item(backend(arm).check(p))["budget"]
    assert budget.status == "weak" and "alert_email" in budget.fix


def test_the_names_check_reads_are_the_names_the_template_makes() -> None:
    """check() finds resources by the names names() computes; the template builds the same
    ones from the prefix (a rename on either side fails here, not in an account)."""
    t = template()
    inner = of_type("Microsoft.Resources/deployments")[0]["properties"]["template"]["variables"]
    p = params()
    n = names(p)

    def made(expression: str) -> str:
        fmt = re.fullmatch(r"\[format\('([^']*)', parameters\('prefix'\)\)\]", expression)
        assert fmt, expression
        return fmt[1].replace("{0}", p.prefix)

    assert made(inner["jobsIdentityName"]) == n.jobs_identity
    assert made(inner["cmkIdentityName"]) == n.cmk_identity
    assert made(inner["keyName"]) == n.key
    assert made(t["variables"]["budgetName"]) == n.budget
    assert made(t["variables"]["exportName"]) == n.export
    assert inner["costExportsContainer"] == "cost-exports"
