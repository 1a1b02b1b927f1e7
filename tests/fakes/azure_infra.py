"""Azure Resource Manager for `recipe infra --provider azure`, for the real SDKs
(azure-mgmt-resource-deployments' DeploymentsMgmtClient, azure-mgmt-resource's
ResourceManagementClient): subscription-scope deployments as ARM long-running operations, and
reads of the resources the template makes.

Shapes, from ARM's REST reference ("Deployments - Create Or Update At Subscription Scope",
"Async operations": learn.microsoft.com/azure/azure-resource-manager/management/
async-operations):
- PUT /subscriptions/{sub}/providers/Microsoft.Resources/deployments/{name}: 201 with the
  deployment (provisioningState Accepted) and an Azure-AsyncOperation header naming
  .../deployments/{name}/operationStatuses/{id}; that URL answers {"status": "Running"}, then
  "Succeeded" or "Failed" with {"error": {code, message, details}}; after success the SDK GETs
  the deployment itself (properties.provisioningState, properties.outputs {name: {type, value}});
- GET of a resource by id: its JSON, or 404 {"error": {"code": "ResourceNotFound"}};
- lists (role assignments at a scope with $filter=principalId eq '...', budgets and exports of
  the subscription): {"value": [...]}.
"""

from __future__ import annotations

import re
from typing import Any

from tests.fakes.azure import SUB
from tests.fakes.http import FakeServer, Reply, Seen, Served, json_reply

RESOURCE_GROUP = "rg-ml"
PRINCIPAL = "11111111-2222-3333-4444-555555555555"  # the jobs identity's principal id
_ROLE = "/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}"


def _not_found(path: str) -> Reply:
    return json_reply(
        404,
        {"error": {"code": "ResourceNotFound", "message": f"The Resource '{path}' was not found."}},
        {"x-ms-error-code": "ResourceNotFound"},
    )


class FakeArm(Served):
    """Deployments (`polls_running` Running answers before the outcome, `failure` an ARM error
    to end with instead of success), resources by id, role assignments, budgets, exports."""

    def __init__(self) -> None:
        self.deployments: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, Any] = {}
        self.polls_running = 2
        self.failure: dict[str, Any] | None = None
        self._polls = 0
        self.resources: dict[str, dict[str, Any]] = {}  # lower-cased id -> JSON
        self.assignments: list[dict[str, str]] = []  # {scope, principalId, role guid}
        self.budgets: list[dict[str, Any]] = []
        self.exports: list[dict[str, Any]] = []
        self.server = FakeServer()
        r = self.server.route
        deployment = r"/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.Resources/deployments/(?P<name>[^/]+)"
        r("PUT", deployment, self.put_deployment)
        r("GET", deployment + r"/operationStatuses/(?P<op>[^/]+)", self.operation)
        r("GET", deployment, self.get_deployment)
        r("GET", r"(?P<scope>/.+)/providers/Microsoft\.Authorization/roleAssignments", self.roles)
        subscription = r"/subscriptions/[^/]+/providers/"
        r("GET", subscription + r"Microsoft\.Consumption/budgets", self.list_of(self.budgets))
        r("GET", subscription + r"Microsoft\.CostManagement/exports", self.list_of(self.exports))
        r("GET", r"/subscriptions/.+", self.get_resource)

    def deployment_puts(self) -> list[Seen]:
        return self.seen("PUT", r"/providers/Microsoft\.Resources/deployments/[^/]+$")

    # deployments
    def put_deployment(self, request: Seen, match: re.Match[str]) -> Reply:
        body = request.json()
        self.deployments[match["name"]] = body
        self._polls = 0
        status_url = (
            f"{self.url}{request.path}/operationStatuses/08584?api-version="
            f"{request.query['api-version'][0]}"
        )
        return json_reply(
            201,
            self._deployment(request.path, match["name"], "Accepted"),
            {"Azure-AsyncOperation": status_url, "Retry-After": "0"},
        )

    def operation(self, _: Seen, __: re.Match[str]) -> Reply:
        self._polls += 1
        if self._polls <= self.polls_running:
            return json_reply(200, {"status": "Running"}, {"Retry-After": "0"})
        if self.failure:
            return json_reply(200, {"status": "Failed", "error": self.failure})
        return json_reply(200, {"status": "Succeeded"})

    def get_deployment(self, request: Seen, match: re.Match[str]) -> Reply:
        if match["name"] not in self.deployments:
            return _not_found(request.path)
        state = "Failed" if self.failure else "Succeeded"
        return json_reply(200, self._deployment(request.path, match["name"], state))

    def _deployment(self, path: str, name: str, state: str) -> dict[str, Any]:
        body = self.deployments[name]
        outputs = {k: {"type": "String", "value": v} for k, v in self.outputs.items()}
        return {
            "id": path,
            "name": name,
            "type": "Microsoft.Resources/deployments",
            "location": body.get("location"),
            "tags": body.get("tags") or {},
            "properties": {
                "provisioningState": state,
                "mode": body["properties"]["mode"],
                "outputs": outputs if state == "Succeeded" else {},
                "timestamp": "2026-11-23T10:00:00Z",
            },
        }

    # reads
    def get_resource(self, request: Seen, _: re.Match[str]) -> Reply:
        found = self.resources.get(request.path.lower())
        return json_reply(200, found) if found is not None else _not_found(request.path)

    def roles(self, request: Seen, match: re.Match[str]) -> Reply:
        wanted = re.search(r"principalId eq '([^']+)'", (request.query.get("$filter") or [""])[0])
        scope = match["scope"].lower()
        value = [
            {
                "id": f"{a['scope']}/providers/Microsoft.Authorization/roleAssignments/{i}",
                "type": "Microsoft.Authorization/roleAssignments",
                "properties": {
                    "roleDefinitionId": _ROLE.format(sub=SUB, guid=a["role"]),
                    "principalId": a["principalId"],
                    "principalType": "ServicePrincipal",
                    "scope": a["scope"],
                },
            }
            for i, a in enumerate(self.assignments)
            # ARM lists the assignments at the scope and above it (inherited ones)
            if scope.startswith(a["scope"].lower())
            and (not wanted or a["principalId"] == wanted[1])
        ]
        return json_reply(200, {"value": value})

    @staticmethod
    def list_of(items: list[dict[str, Any]]) -> Any:
        def answer(_: Seen, __: re.Match[str]) -> Reply:
            return json_reply(200, {"value": items})

        return answer

    # an account as the template leaves it
    def put(self, resource_id: str, properties: dict[str, Any], **extra: Any) -> None:
        self.resources[resource_id.lower()] = {
            "id": resource_id,
            "name": resource_id.rsplit("/", 1)[-1],
            "properties": properties,
            **extra,
        }


def good_account(fake: FakeArm, n: Any, cost_center: str, workspace: str = "") -> None:
    """Every resource account.json makes, as ARM answers for them (n: infra.Names)."""
    fake.put(
        n.storage_id,
        {
            "allowBlobPublicAccess": False,
            "supportsHttpsTrafficOnly": True,
            "minimumTlsVersion": "TLS1_2",
            "encryption": {
                "keySource": "Microsoft.Keyvault",
                "keyvaultproperties": {"keyname": n.key, "keyvaulturi": f"https://{n.vault}/"},
                "services": {"blob": {"enabled": True, "keyType": "Account"}},
            },
        },
        kind="StorageV2",
        type="Microsoft.Storage/storageAccounts",
        location="eastus",
    )
    for container in ("recipes", "cost-exports"):
        fake.put(
            f"{n.storage_id}/blobServices/default/containers/{container}", {"publicAccess": "None"}
        )
    fake.put(
        n.vault_id,
        {"enablePurgeProtection": True, "enableRbacAuthorization": True, "enableSoftDelete": True},
        type="Microsoft.KeyVault/vaults",
        location="eastus",
    )
    fake.put(f"{n.vault_id}/keys/{n.key}", {"kty": "RSA-HSM", "keySize": 3072})
    fake.put(
        n.identity_id,
        {"principalId": PRINCIPAL, "clientId": "c0ffee00-0000-0000-0000-000000000000"},
        type="Microsoft.ManagedIdentity/userAssignedIdentities",
        location="eastus",
    )
    fake.assignments.append(
        {
            "scope": n.storage_id,
            "principalId": PRINCIPAL,
            "role": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
        }
    )
    if workspace:
        ws = n.id("Microsoft.MachineLearningServices/workspaces", workspace)
        fake.assignments.append(
            {"scope": ws, "principalId": PRINCIPAL, "role": "f6c7c914-8db3-469d-8ca1-694a8f32e121"}
        )
    fake.budgets.append(
        {
            "id": f"{n.scope}/providers/Microsoft.Consumption/budgets/{n.budget}",
            "name": n.budget,
            "type": "Microsoft.Consumption/budgets",
            "properties": {
                "category": "Cost",
                "amount": 2500,
                "timeGrain": "Monthly",
                "filter": {
                    "tags": {"name": "cost_center", "operator": "In", "values": [cost_center]}
                },
                "notifications": {
                    "actual_80_percent": {
                        "enabled": True,
                        "operator": "GreaterThanOrEqualTo",
                        "threshold": 80,
                        "thresholdType": "Actual",
                        "contactEmails": ["finops@example.com"],
                    }
                },
            },
        }
    )
    fake.exports.append(
        {
            "id": f"{n.scope}/providers/Microsoft.CostManagement/exports/{n.export}",
            "name": n.export,
            "type": "Microsoft.CostManagement/exports",
            "properties": {
                "format": "Parquet",
                "definition": {"type": "FocusCost", "timeframe": "MonthToDate"},
                "deliveryInfo": {
                    "destination": {
                        "type": "AzureBlob",
                        "resourceId": n.storage_id,
                        "container": "cost-exports",
                        "rootFolderPath": "focus",
                    }
                },
                "schedule": {"status": "Active", "recurrence": "Daily"},
            },
        }
    )


def arm_clients(fake: FakeArm) -> dict[str, Any]:
    """Real DeploymentsMgmtClient and ResourceManagementClient on the fake, through
    providers.azure.sdk: a fake credential, plain HTTP allowed (azure-core's bearer policy
    refuses http:// unless the request's context says otherwise), no long waits."""
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    from providers.azure import sdk
    from tests.fakes.azure import FakeCredential

    class AllowHttp(SansIOHTTPPolicy):  # type: ignore[type-arg]
        def on_request(self, request: Any) -> None:
            request.context["enforce_https"] = False

    options = {
        "base_url": fake.url,
        "credential": FakeCredential(),
        "per_call_policies": [AllowHttp()],
        "retry_backoff_factor": 0.01,
        "polling_interval": 0.01,
    }
    return {
        "deployments": sdk.deployments_client(SUB, **options),
        "resources": sdk.resources_client(SUB, **options),
    }


__all__ = ["RESOURCE_GROUP", "FakeArm", "arm_clients", "good_account"]
