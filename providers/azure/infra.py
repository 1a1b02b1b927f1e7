"""An Azure subscription's bootstrap for recipes: infra/azure/account.json (ARM JSON) filled
from the recipe, deployed at subscription scope through ARM, and checked by reading the
resources back.

One deployment holds everything: the budget and the FOCUS cost export live at subscription
scope (a resource-group budget or export sees only that group's costs, and jobs, endpoints and
their disks may sit elsewhere), and a nested deployment puts the storage account, Key Vault,
key, identities and role assignments into the existing resource group of the workspace.
ARM JSON rather than Bicep: the SDK deploys it as is, with no compiler to download.

Names are computed here, not with ARM's uniqueString(), so that `check` finds the same
resources without reading the deployment: globally unique names (storage account, vault) end
with a hash of the subscription and resource group.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from providers.azure import sdk
from providers.base import Finding, InfraParams, InfraPlan, Request
from recipes.errors import Problem, ProviderError, RecipeInputError
from recipes.tags import AZURE as AZURE_TAG_RULES
from recipes.tags import map_tags

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = Path("infra") / "azure" / "account.json"
DEPLOY_API = "arm:PUT {scope}/providers/Microsoft.Resources/deployments/{name}"
_DEPLOY = re.compile(
    r"arm:PUT (?P<scope>/subscriptions/[^/]+)/providers/Microsoft\.Resources/deployments/"
    r"(?P<name>[^/]+)"
)
COST_CENTER_TAG = "cost_center"  # what the template's budget filters on
RECIPES_CONTAINER, EXPORTS_CONTAINER = "recipes", "cost-exports"
EXPORT_YEARS = 5  # how long the export's daily schedule runs before it must be renewed
POLL_TIMEOUT_S = 1800.0  # a first deployment (vault, HSM key, CMK storage) takes minutes

# Built-in role definitions (learn.microsoft.com/azure/role-based-access-control/built-in-roles).
BLOB_DATA_ROLES = {
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
}
ML_DATA_SCIENTIST = "f6c7c914-8db3-469d-8ca1-694a8f32e121"  # AzureML Data Scientist

# API versions of the reads (the template's own, so check reads what apply wrote).
API = {
    "storage": "2023-05-01",
    "vault": "2023-07-01",
    "identity": "2023-01-31",
    "roles": "2022-04-01",
    "budgets": "2024-08-01",
    "exports": "2025-03-01",
}


@dataclass(frozen=True)
class Names:
    subscription: str
    resource_group: str
    storage: str
    vault: str
    key: str
    jobs_identity: str
    cmk_identity: str
    budget: str
    export: str
    deployment: str

    @property
    def scope(self) -> str:
        return f"/subscriptions/{self.subscription}"

    @property
    def group(self) -> str:
        return f"{self.scope}/resourceGroups/{self.resource_group}"

    def id(self, kind: str, name: str) -> str:
        return f"{self.group}/providers/{kind}/{name}"

    @property
    def storage_id(self) -> str:
        return self.id("Microsoft.Storage/storageAccounts", self.storage)

    @property
    def vault_id(self) -> str:
        return self.id("Microsoft.KeyVault/vaults", self.vault)

    @property
    def identity_id(self) -> str:
        return self.id("Microsoft.ManagedIdentity/userAssignedIdentities", self.jobs_identity)


def names(params: InfraParams) -> Names:
    """Every resource's name, as the template builds them (its variables and parameters)."""
    subscription, group = _setting(params, "subscription"), _setting(params, "resource_group")
    suffix = hashlib.sha256(f"{subscription}/{group}".lower().encode()).hexdigest()[:6]
    prefix = params.prefix
    compact = re.sub(r"[^a-z0-9]", "", prefix)[:16]
    vault_prefix = re.sub(r"-+", "-", prefix)[:14].rstrip("-")
    return Names(
        subscription=subscription,
        resource_group=group,
        storage=f"st{compact}{suffix}",  # 3-24 lower-case letters and digits
        vault=f"kv-{vault_prefix}-{suffix}",  # 3-24, letters, digits, single hyphens
        key=f"{prefix}-storage",
        jobs_identity=f"{prefix}-jobs",
        cmk_identity=f"{prefix}-storage-cmk",
        budget=f"{prefix}-budget",
        export=f"{prefix}-focus",
        deployment=f"recipe-account-{prefix}",
    )


def _setting(params: InfraParams, key: str) -> str:
    value = params.settings.get(key, "")
    if not value:
        raise RecipeInputError(
            Problem(
                f"no Azure {key.replace('_', ' ')}: the account's resources go there",
                file="command line",
                field=f"--set {key}",
                hint=f"--set {key}=VALUE, or compute.azure.{key} in the recipe (--recipe R)",
            )
        )
    return value


class AzureInfra:
    name = "azure"

    def __init__(self, **clients: Any) -> None:
        """`deployments`: a DeploymentsMgmtClient; `resources`: a ResourceManagementClient
        (both of the plan's subscription; made from DefaultAzureCredential when not given);
        `today`: the date plan fills budget and export dates from; `poll_timeout_s`."""
        self.clients = clients
        self._today: Callable[[], date] = clients.get("today") or (
            lambda: datetime.now(timezone.utc).date()
        )
        self.poll_timeout_s = float(clients.get("poll_timeout_s") or POLL_TIMEOUT_S)

    # --- plan ------------------------------------------------------------------------------

    def plan(self, params: InfraParams) -> InfraPlan:
        """The template filled from the recipe and the one ARM deployment PUT that applies it;
        no network."""
        n = names(params)
        text = (REPO / TEMPLATE).read_text()
        tags = map_tags(dict(params.tags), AZURE_TAG_RULES).tags
        filled = self._parameters(params, n, tags)
        body = {
            "location": params.region,
            "tags": tags,
            "properties": {
                "mode": "Incremental",
                "template": json.loads(text),
                "parameters": {k: {"value": v} for k, v in filled.items()},
            },
        }
        step = Request(api=DEPLOY_API.format(scope=n.scope, name=n.deployment), body=body)
        return InfraPlan(
            provider=self.name,
            engine="arm",
            template_path=str(TEMPLATE),
            template=text,
            parameters=filled,
            steps=(step,),
            notes=self._notes(params, n),
        )

    def _parameters(self, params: InfraParams, n: Names, tags: dict[str, str]) -> dict[str, Any]:
        today = self._today()
        start = today + timedelta(days=1)  # Cost Management wants the schedule to start later
        return {
            "prefix": params.prefix,
            "location": params.region,
            "resourceGroupName": n.resource_group,
            "tags": tags,
            "costCenter": params.cost_center,
            # ARM template parameters have no decimals; budgets are whole amounts anyway.
            "monthlyBudget": max(1, round(params.monthly_budget)),
            "alertEmails": list(params.alert_emails),
            "budgetStartDate": f"{today:%Y-%m}-01T00:00:00Z",
            "exportStartDate": f"{start:%Y-%m-%d}T00:00:00Z",
            "exportEndDate": f"{_years_after(start, EXPORT_YEARS):%Y-%m-%d}T00:00:00Z",
            "storageAccountName": n.storage,
            "keyVaultName": n.vault,
            "workspaceName": params.settings.get("workspace", ""),
        }

    @staticmethod
    def _notes(params: InfraParams, n: Names) -> tuple[str, ...]:
        notes = [
            f"deploys at subscription scope {n.scope} (budget, FOCUS export) and into the "
            f"existing resource group {n.resource_group} (storage, Key Vault, identities)",
            f"budget {round(params.monthly_budget)} a month in the subscription's billing "
            f"currency (the recipe says {params.currency}), on costs tagged "
            f"{COST_CENTER_TAG}={params.cost_center}",
        ]
        if not params.alert_emails:
            notes.append(
                "no alert e-mail: the budget has no notifications (Azure needs a contact "
                "e-mail for each); --set alert_email=a@example.com,b@example.com adds them"
            )
        if not params.settings.get("workspace"):
            notes.append(
                "no workspace: the jobs identity gets no AzureML Data Scientist role "
                "(--set workspace=NAME, a workspace in the same resource group)"
            )
        notes.append(
            "the jobs identity is not given the workspace's own storage and registry "
            "(AcrPull): attach it to the compute cluster and grant those where they live"
        )
        return tuple(notes)

    # --- apply -----------------------------------------------------------------------------

    def apply(self, plan: InfraPlan) -> list[str]:
        """The plan's deployment PUT through ARM, waited for; ARM keeps what succeeded and
        names each resource that failed (a deployment has no rollback: re-apply after a fix)."""
        done = []
        for step in plan.steps:
            where = _DEPLOY.fullmatch(step.api)
            if not where:
                raise ProviderError(f"not an ARM deployment step: {step.api}")
            subscription = where["scope"].rsplit("/", 1)[-1]
            client = self.clients.get("deployments") or sdk.deployments_client(subscription)
            outputs = sdk.deploy_at_subscription(
                client, where["name"], step.body, self.poll_timeout_s
            )
            done.append(f"ARM deployment {where['name']} at {where['scope']}: Succeeded")
            done.extend(f"  {key}: {value}" for key, value in sorted(outputs.items()))
        return done

    # --- check -----------------------------------------------------------------------------

    def check(self, params: InfraParams) -> list[Finding]:
        n = names(params)
        client = self.clients.get("resources") or sdk.resources_client(n.subscription)
        findings = _storage(client, n)
        findings += _vault(client, n)
        findings += _identity(client, n, params.settings.get("workspace", ""))
        findings.append(_budget(client, n, params.cost_center))
        findings.append(_export(client, n))
        return findings


def _years_after(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


APPLY = "recipe infra apply --provider azure"


def _storage(client: Any, n: Names) -> list[Finding]:
    account = sdk.arm_resource(client, n.storage_id, API["storage"])
    if account is None:
        return [Finding("storage account", "missing", f"no storage account {n.storage}", APPLY)]
    props = account.get("properties") or {}
    found = [Finding("storage account", "ok", f"{n.storage} in {n.resource_group}")]
    public = [
        c
        for c in (RECIPES_CONTAINER, EXPORTS_CONTAINER)
        if (_container(client, n, c) or {}).get("publicAccess", "None") != "None"
    ]
    if props.get("allowBlobPublicAccess") is not False or public:
        found.append(
            Finding(
                "storage public access",
                "weak",
                f"{n.storage}: allowBlobPublicAccess is {props.get('allowBlobPublicAccess')}"
                + (f", public containers: {', '.join(public)}" if public else ""),
                "set allowBlobPublicAccess false and containers to publicAccess None: " + APPLY,
            )
        )
    else:
        found.append(Finding("storage public access", "ok", f"{n.storage}: blocked"))
    found.append(_encryption(n, props.get("encryption") or {}))
    https = props.get("supportsHttpsTrafficOnly") is True
    tls = props.get("minimumTlsVersion") in ("TLS1_2", "TLS1_3")
    found.append(
        Finding("storage https", "ok", f"{n.storage}: HTTPS only, {props['minimumTlsVersion']}")
        if https and tls
        else Finding(
            "storage https",
            "weak",
            f"{n.storage}: supportsHttpsTrafficOnly {props.get('supportsHttpsTrafficOnly')}, "
            f"minimumTlsVersion {props.get('minimumTlsVersion')}",
            "HTTPS only and TLS 1.2: " + APPLY,
        )
    )
    return found


def _container(client: Any, n: Names, name: str) -> dict[str, Any] | None:
    found = sdk.arm_resource(
        client, f"{n.storage_id}/blobServices/default/containers/{name}", API["storage"]
    )
    return None if found is None else found.get("properties") or {}


def _encryption(n: Names, encryption: dict[str, Any]) -> Finding:
    source = encryption.get("keySource")
    if source == "Microsoft.Keyvault":
        key = (encryption.get("keyvaultproperties") or {}).get("keyname")
        return Finding("storage encryption", "ok", f"{n.storage}: customer-managed key {key}")
    return Finding(
        "storage encryption",
        "weak",
        f"{n.storage}: encrypted with {source or 'no stated'} keys, not the vault's key",
        f"encrypt with the key {n.key} of {n.vault}: " + APPLY,
    )


def _vault(client: Any, n: Names) -> list[Finding]:
    vault = sdk.arm_resource(client, n.vault_id, API["vault"])
    if vault is None:
        return [Finding("key vault", "missing", f"no Key Vault {n.vault}", APPLY)]
    props = vault.get("properties") or {}
    gaps = [
        label
        for label, key in (
            ("purge protection", "enablePurgeProtection"),
            ("RBAC authorization", "enableRbacAuthorization"),
        )
        if props.get(key) is not True
    ]
    if props.get("enableSoftDelete") is False:
        gaps.append("soft delete")
    found = [
        Finding(
            "key vault",
            "weak",
            f"{n.vault}: no {', no '.join(gaps)}",
            "purge protection cannot be turned off once on; enable it and RBAC: " + APPLY,
        )
        if gaps
        else Finding("key vault", "ok", f"{n.vault}: purge protection, RBAC, soft delete")
    ]
    key = sdk.arm_resource(client, f"{n.vault_id}/keys/{n.key}", API["vault"])
    kprops = (key or {}).get("properties") or {}
    if key is None:
        found.append(Finding("key vault key", "missing", f"no key {n.key} in {n.vault}", APPLY))
    elif str(kprops.get("kty", "")).startswith("RSA") and int(kprops.get("keySize") or 0) >= 2048:
        found.append(
            Finding("key vault key", "ok", f"{n.key}: {kprops['kty']} {kprops['keySize']}")
        )
    else:
        found.append(
            Finding(
                "key vault key",
                "weak",
                f"{n.key}: {kprops.get('kty')} {kprops.get('keySize')}",
                "an RSA key of 2048 bits or more (the template makes RSA-HSM 3072)",
            )
        )
    return found


def _identity(client: Any, n: Names, workspace: str) -> list[Finding]:
    identity = sdk.arm_resource(client, n.identity_id, API["identity"])
    if identity is None:
        return [
            Finding("jobs identity", "missing", f"no managed identity {n.jobs_identity}", APPLY)
        ]
    principal = str((identity.get("properties") or {}).get("principalId") or "")
    found = [Finding("jobs identity", "ok", f"{n.jobs_identity} (principal {principal})")]
    roles = _roles(client, n.storage_id, principal)
    granted = sorted(BLOB_DATA_ROLES[r] for r in roles if r in BLOB_DATA_ROLES)
    found.append(
        Finding("jobs identity storage role", "ok", f"{', '.join(granted)} on {n.storage}")
        if granted
        else Finding(
            "jobs identity storage role",
            "missing",
            f"{n.jobs_identity} has no Storage Blob Data role on {n.storage}",
            "Storage Blob Data Contributor on the account: " + APPLY,
        )
    )
    if workspace:
        ws = n.id("Microsoft.MachineLearningServices/workspaces", workspace)
        found.append(
            Finding("jobs identity workspace role", "ok", f"AzureML Data Scientist on {workspace}")
            if ML_DATA_SCIENTIST in _roles(client, ws, principal)
            else Finding(
                "jobs identity workspace role",
                "missing",
                f"{n.jobs_identity} has no AzureML Data Scientist role on {workspace}",
                f"{APPLY} --set workspace={workspace}",
            )
        )
    return found


def _roles(client: Any, scope: str, principal: str) -> set[str]:
    """The role definition GUIDs the principal holds at the scope (inherited ones too)."""
    if not principal:
        return set()
    found = sdk.arm_list(
        client,
        f"{scope}/providers/Microsoft.Authorization/roleAssignments",
        API["roles"],
        {"$filter": f"principalId eq '{principal}'"},
    )
    return {
        str((a.get("properties") or {}).get("roleDefinitionId", "")).rsplit("/", 1)[-1].lower()
        for a in found
    }


def _budget(client: Any, n: Names, cost_center: str) -> Finding:
    budgets = sdk.arm_list(
        client, f"{n.scope}/providers/Microsoft.Consumption/budgets", API["budgets"]
    )
    mine = [b for b in budgets if cost_center in _tag_values(b, COST_CENTER_TAG)]
    if not mine:
        return Finding(
            "budget",
            "missing",
            f"no budget in {n.scope} filters on {COST_CENTER_TAG}={cost_center}",
            APPLY,
        )
    budget = next((b for b in mine if b.get("name") == n.budget), mine[0])
    props = budget.get("properties") or {}
    what = f"{budget.get('name')}: {props.get('amount')} {props.get('timeGrain', '')}".strip()
    if not props.get("notifications"):
        return Finding(
            "budget",
            "weak",
            f"{what}, with no notifications",
            f"{APPLY} --set alert_email=you@example.com",
        )
    return Finding("budget", "ok", f"{what} on {COST_CENTER_TAG}={cost_center}")


def _tag_values(budget: dict[str, Any], key: str) -> list[str]:
    """The values a budget's filter takes for a tag (its own, or inside an `and`)."""
    flt = (budget.get("properties") or {}).get("filter") or {}
    found: list[str] = []
    for part in [flt, *(flt.get("and") or [])]:
        tags = part.get("tags") or {}
        if tags.get("name") == key and tags.get("operator", "In") == "In":
            found.extend(str(v) for v in tags.get("values") or [])
    return found


def _export(client: Any, n: Names) -> Finding:
    exports = sdk.arm_list(
        client, f"{n.scope}/providers/Microsoft.CostManagement/exports", API["exports"]
    )
    usable = [e for e in exports if _export_type(e) in ("FocusCost", "ActualCost", "AmortizedCost")]
    if not usable:
        return Finding("cost export", "missing", f"no cost export in {n.scope}", APPLY)
    export = next((e for e in usable if _export_type(e) == "FocusCost"), usable[0])
    props = export.get("properties") or {}
    dest = (props.get("deliveryInfo") or {}).get("destination") or {}
    where = f"{str(dest.get('resourceId', '')).rsplit('/', 1)[-1]}/{dest.get('container', '')}"
    what = f"{export.get('name')}: {_export_type(export)} to {where}"
    status = (props.get("schedule") or {}).get("status")
    if status != "Active":
        return Finding(
            "cost export", "weak", f"{what}, schedule {status}", "set its schedule Active"
        )
    if _export_type(export) != "FocusCost":
        return Finding(
            "cost export",
            "weak",
            f"{what} (not FOCUS: effective cost needs an amortized export too)",
            APPLY,
        )
    return Finding("cost export", "ok", f"{what}, daily")


def _export_type(export: dict[str, Any]) -> str:
    return str(((export.get("properties") or {}).get("definition") or {}).get("type") or "")
