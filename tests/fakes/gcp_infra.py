"""A Google Cloud project as `recipe infra check --provider gcp` reads it, for the real SDKs:
Cloud Storage's JSON API (buckets.get, buckets.getIamPolicy) for google-cloud-storage,
BigQuery's REST API (datasets.get, tables.list) for google-cloud-bigquery, and the REST
APIs read through an authorized session: IAM (projects.serviceAccounts.get), Resource
Manager (projects.getIamPolicy), Cloud KMS (cryptoKeys.get) and Cloud Billing Budgets v1
(billingAccounts.budgets.list). All on one loopback server; answers follow each API's REST
reference, errors as {"error": {"code", "message", "status"}}.

`good_project()` is a project as infra/gcp/*.tf leaves it (after the billing export was
turned on in the console); tests plant gaps by editing its fields.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.gcp import error
from tests.fakes.http import FakeServer, Reply, Seen, Served, json_reply

PROJECT = "recipe-ml-dev"
REGION = "us-central1"
PREFIX = "support-triage"
BILLING_ACCOUNT = "01A2B3-C4D5E6-F7A8B9"
COST_CENTER = "cc-4711"
BUCKET = f"{PREFIX}-{PROJECT}-recipe"
SERVICE_ACCOUNT = f"{PREFIX}-jobs@{PROJECT}.iam.gserviceaccount.com"
KEY = f"projects/{PROJECT}/locations/{REGION}/keyRings/{PREFIX}-recipe/cryptoKeys/{PREFIX}-storage"
DATASET = "support_triage_billing_export"
MEMBER = f"serviceAccount:{SERVICE_ACCOUNT}"


def good_project() -> dict[str, Any]:
    """Every resource the template makes, as the APIs answer for them."""
    return {
        "bucket": {
            "kind": "storage#bucket",
            "name": BUCKET,
            "location": "US-CENTRAL1",
            "labels": {"cost_center": COST_CENTER, "project": "support-triage"},
            "encryption": {"defaultKmsKeyName": KEY},
            "iamConfiguration": {
                "uniformBucketLevelAccess": {"enabled": True},
                "publicAccessPrevention": "enforced",
            },
            "versioning": {"enabled": True},
        },
        "bucket_bindings": [{"role": "roles/storage.objectAdmin", "members": [MEMBER]}],
        "key": {
            "name": KEY,
            "purpose": "ENCRYPT_DECRYPT",
            "rotationPeriod": "7776000s",
            "primary": {"name": f"{KEY}/cryptoKeyVersions/1", "state": "ENABLED"},
        },
        "service_account": {
            "name": f"projects/{PROJECT}/serviceAccounts/{SERVICE_ACCOUNT}",
            "email": SERVICE_ACCOUNT,
            "projectId": PROJECT,
        },
        "project_bindings": [
            {"role": role, "members": [MEMBER, "user:someone@example.com"]}
            for role in (
                "roles/aiplatform.user",
                "roles/artifactregistry.reader",
                "roles/logging.logWriter",
                "roles/monitoring.viewer",
            )
        ],
        "budgets": [
            {  # someone else's budget first: the check must pick the cost center's
                "name": f"billingAccounts/{BILLING_ACCOUNT}/budgets/other",
                "displayName": "all spend",
                "amount": {"specifiedAmount": {"currencyCode": "USD", "units": "90000"}},
                "thresholdRules": [{"thresholdPercent": 0.9, "spendBasis": "CURRENT_SPEND"}],
            },
            {
                "name": f"billingAccounts/{BILLING_ACCOUNT}/budgets/0b1c2d",
                "displayName": f"{PREFIX} cost center {COST_CENTER}",
                "budgetFilter": {
                    "labels": {"cost_center": [COST_CENTER]},  # map of ListValue in JSON
                    "calendarPeriod": "MONTH",
                    "creditTypesTreatment": "INCLUDE_ALL_CREDITS",
                },
                "amount": {"specifiedAmount": {"currencyCode": "USD", "units": "2500"}},
                "thresholdRules": [
                    {"thresholdPercent": 0.8, "spendBasis": "CURRENT_SPEND"},
                    {"thresholdPercent": 1, "spendBasis": "FORECASTED_SPEND"},
                ],
                "notificationsRule": {"schemaVersion": "1.0"},
                "etag": "abc",
            },
        ],
        "dataset": {
            "kind": "bigquery#dataset",
            "id": f"{PROJECT}:{DATASET}",
            "datasetReference": {"projectId": PROJECT, "datasetId": DATASET},
            "location": "US",
            "labels": {"cost_center": COST_CENTER},
        },
        "tables": [
            f"gcp_billing_export_resource_v1_{BILLING_ACCOUNT.replace('-', '_')}",
            f"gcp_billing_export_v1_{BILLING_ACCOUNT.replace('-', '_')}",
        ],
    }


@dataclass
class FakeGcpAccount(Served):
    """One project and billing account. A resource set to None answers 404. `budget_page`
    is how many budgets a page of budgets.list holds (to exercise paging)."""

    state: dict[str, Any] = field(default_factory=good_project)
    budget_page: int = 1
    server: FakeServer = field(default_factory=FakeServer)

    def __post_init__(self) -> None:
        s = self.server
        s.route("GET", r"/storage/v1/b/(?P<bucket>[^/]+)", self._bucket)
        s.route("GET", r"/storage/v1/b/(?P<bucket>[^/]+)/iam", self._bucket_iam)
        s.route("GET", r"/v1/projects/(?P<p>[^/]+)/serviceAccounts/(?P<sa>[^/]+)", self._sa)
        s.route("POST", r"/v1/projects/(?P<p>[^/:]+):getIamPolicy", self._project_iam)
        s.route("GET", r"/v1/(?P<key>projects/.+/cryptoKeys/[^/]+)", self._key)
        s.route("GET", r"/v1/billingAccounts/(?P<account>[^/]+)/budgets", self._budgets)
        bq = r"/bigquery/v2/projects/(?P<p>[^/]+)/datasets/(?P<d>[^/]+)"
        s.route("GET", bq, self._dataset)
        s.route("GET", bq + "/tables", self._tables)

    def _bucket(self, _: Seen, match: re.Match[str]) -> Reply:
        bucket = self.state["bucket"]
        if bucket is None or match["bucket"] != bucket["name"]:
            return error(404, "NOT_FOUND", "The specified bucket does not exist.")
        return json_reply(200, bucket)

    def _bucket_iam(self, request: Seen, match: re.Match[str]) -> Reply:
        assert request.query.get("optionsRequestedPolicyVersion") == ["3"], request.query
        return json_reply(
            200, {"kind": "storage#policy", "version": 3, "etag": "CAE=",
                  "bindings": self.state["bucket_bindings"]},
        )  # fmt: skip

    def _sa(self, _: Seen, match: re.Match[str]) -> Reply:
        account = self.state["service_account"]
        if account is None or match["sa"] != account["email"]:
            return error(404, "NOT_FOUND", f"Unknown service account {match['sa']}")
        return json_reply(200, account)

    def _project_iam(self, request: Seen, match: re.Match[str]) -> Reply:
        assert request.json() == {"options": {"requestedPolicyVersion": 3}}
        return json_reply(
            200, {"version": 3, "etag": "BwX=", "bindings": self.state["project_bindings"]}
        )

    def _key(self, _: Seen, match: re.Match[str]) -> Reply:
        key = self.state["key"]
        if key is None or match["key"] != key["name"]:
            return error(404, "NOT_FOUND", f"{match['key']} not found.")
        return json_reply(200, key)

    def _budgets(self, request: Seen, match: re.Match[str]) -> Reply:
        if match["account"] != BILLING_ACCOUNT:
            return error(403, "PERMISSION_DENIED", "The caller does not have permission")
        budgets = self.state["budgets"]
        start = int((request.query.get("pageToken") or ["0"])[0])
        page: dict[str, Any] = {"budgets": budgets[start : start + self.budget_page]}
        if start + self.budget_page < len(budgets):
            page["nextPageToken"] = str(start + self.budget_page)
        return json_reply(200, page)

    def _dataset(self, _: Seen, match: re.Match[str]) -> Reply:
        dataset = self.state["dataset"]
        if dataset is None or match["d"] != dataset["datasetReference"]["datasetId"]:
            return error(404, "NOT_FOUND", f"Not found: Dataset {match['p']}:{match['d']}")
        return json_reply(200, dataset)

    def _tables(self, _: Seen, match: re.Match[str]) -> Reply:
        tables = [
            {
                "kind": "bigquery#table",
                "id": f"{match['p']}:{match['d']}.{t}",
                "tableReference": {"projectId": match["p"], "datasetId": match["d"], "tableId": t},
                "type": "TABLE",
            }
            for t in self.state["tables"]
        ]
        return json_reply(
            200, {"kind": "bigquery#tableList", "tables": tables, "totalItems": len(tables)}
        )

    def edit(self, **changes: Any) -> FakeGcpAccount:
        """The same project with some resources replaced (None: deleted)."""
        self.state = {**copy.deepcopy(self.state), **changes}
        return self


def gcp_infra(fake: FakeGcpAccount, **more: Any) -> Any:
    """providers.gcp.infra.GcpInfra with the real SDK clients aimed at the fake."""
    from google.auth.transport.requests import AuthorizedSession
    from google.cloud import bigquery, storage

    from providers.gcp.infra import GcpInfra
    from tests.fakes.gcp import fake_token

    credentials = fake_token()
    options = {"api_endpoint": fake.url}
    return GcpInfra(
        storage=storage.Client(project=PROJECT, credentials=credentials, client_options=options),
        bigquery=bigquery.Client(project=PROJECT, credentials=credentials, client_options=options),
        session=AuthorizedSession(credentials),
        rest_endpoint=fake.url,
        **more,
    )
