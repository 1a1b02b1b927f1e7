"""Azure billing for the real SDKs: Cost Management exports in an Azure ML datastore
(azure-ai-ml + azure-storage-blob, with Blob storage's List Blobs), and the Cost Management
Query API (azure-mgmt-costmanagement) answering from synthetic charges.

The Query API's shapes (REST reference "Query - Usage", learn.microsoft.com/rest/api/
cost-management/query/usage, and the SDK's models QueryDefinition / QueryResult):
- request: POST /{scope}/providers/Microsoft.CostManagement/query?api-version=2025-03-01,
  body {type, timeframe, timePeriod {from, to}, dataset {granularity, aggregation, grouping}};
- answer: {id, name, type: Microsoft.CostManagement/query, properties {nextLink, columns
  [{name, type}], rows [[...]]}}; daily rows carry UsageDate as a number (20261001), the
  aggregated column under its column name (Cost), the groupings' columns (TagKey and TagValue
  for a tag, the dimension's name otherwise) and Currency;
- more rows: nextLink, the same URL with $skiptoken, POSTed again with the same body;
- throttled: 429 with Retry-After (and x-ms-ratelimit-* headers).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from recipes.cost.billing.synthetic import Charge
from tests.fakes.azure import CONTAINER, RETRY_AFTER, azureml_datastore_reads
from tests.fakes.http import FakeServer, Reply, Seen, Served, json_reply

ACCOUNT = "stmlworkspace"  # the storage account azureml_datastore_reads answers for
# What the Query API groups by ChargeType: Cost Management's data has no credits or taxes
# (they are applied on the invoice).
QUERY_CHARGE_TYPES = ("Usage", "Purchase", "Refund")


def datastore_exports(blobs: dict[str, bytes]) -> FakeServer:
    """azureml_datastore_reads (datastore get, listSecrets, blob reads) and List Blobs of
    its container (GET ?restype=container&comp=list&prefix=, the EnumerationResults XML of
    the Blob REST API, one page)."""
    server = azureml_datastore_reads(blobs)

    def list_blobs(request: Seen, _: re.Match[str]) -> Reply:
        assert request.query.get("comp") == ["list"], request.query
        prefix = (request.query.get("prefix") or [""])[0]
        names = sorted(n for n in blobs if n.startswith(prefix))
        items = "".join(
            f"<Blob><Name>{n}</Name><Properties><Content-Length>{len(blobs[n])}</Content-Length>"
            "<BlobType>BlockBlob</BlobType></Properties></Blob>"
            for n in names
        )
        body = (
            '<?xml version="1.0" encoding="utf-8"?><EnumerationResults '
            f'ServiceEndpoint="http://127.0.0.1/{ACCOUNT}/" ContainerName="{CONTAINER}">'
            f"<Prefix>{prefix}</Prefix><Blobs>{items}</Blobs><NextMarker /></EnumerationResults>"
        )
        return 200, {"Content-Type": "application/xml"}, body.encode()

    server.route("GET", rf"/{ACCOUNT}/{CONTAINER}", list_blobs)
    return server


def manifest(dataset: str, blob_names: Sequence[str]) -> bytes:
    """An export run's manifest.json as Cost Management writes it (exportConfig.type is the
    dataset)."""
    return json.dumps(
        {
            "manifestVersion": "2024-04-01",
            "blobCount": len(blob_names),
            "exportConfig": {
                "exportName": "recipe-costs",
                "dataVersion": "2023-12-01-preview",
                "apiVersion": "2023-07-01-preview",
                "type": dataset,
                "timeFrame": "MonthToDate",
                "granularity": "Daily",
            },
            "blobs": [{"blobName": n} for n in blob_names],
        }
    ).encode()


class FakeCostManagement(Served):
    """The Query API of one scope over synthetic Azure charges; `fail` queues statuses to
    answer first (429 with Retry-After), `page_size` rows per page."""

    def __init__(self, charges: Sequence[Charge], page_size: int = 40) -> None:
        self.charges = [c for c in charges if c.provider == "azure"]
        self.page_size = page_size
        self.fail: list[int] = []
        self.server = FakeServer()
        self.server.route(
            "POST", r"/(?P<scope>.+)/providers/Microsoft\.CostManagement/query", self.query
        )

    def queries(self) -> list[Seen]:
        return self.seen("POST", r"/providers/Microsoft\.CostManagement/query$")

    def query(self, request: Seen, match: re.Match[str]) -> Reply:
        if self.fail:
            status = self.fail.pop(0)
            return json_reply(
                status,
                {"error": {"code": "429", "message": "Too many requests. Please retry."}},
                {
                    "Retry-After": RETRY_AFTER,
                    "x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after": RETRY_AFTER,
                },
            )
        if request.query.get("api-version") != ["2025-03-01"]:
            return _bad(f"unsupported api-version {request.query.get('api-version')}")
        body = request.json()
        problem = _check(body)
        if problem:
            return _bad(problem)
        rows = self.rows(body)
        start = int((request.query.get("$skiptoken") or ["0"])[0])
        page = rows[start : start + self.page_size]
        following = start + self.page_size
        next_link = (
            f"{self.url}/{match['scope']}/providers/Microsoft.CostManagement/query"
            f"?api-version=2025-03-01&$skiptoken={following}"
            if following < len(rows)
            else None
        )
        grouping = body["dataset"].get("grouping") or []
        columns = [{"name": "Cost", "type": "Number"}, {"name": "UsageDate", "type": "Number"}]
        for g in grouping:
            if g["type"] == "TagKey":
                columns += [
                    {"name": "TagKey", "type": "String"},
                    {"name": "TagValue", "type": "String"},
                ]
            else:
                columns.append({"name": g["name"], "type": "String"})
        columns.append({"name": "Currency", "type": "String"})
        return json_reply(
            200,
            {
                "id": f"{match['scope']}/providers/Microsoft.CostManagement/query/fake-{start}",
                "name": f"fake-{start}",
                "type": "Microsoft.CostManagement/query",
                "properties": {"nextLink": next_link, "columns": columns, "rows": page},
            },
        )

    def rows(self, body: dict[str, Any]) -> list[list[Any]]:
        """The charges in the period, summed by day and the groupings, in the column order
        of the answer."""
        period = body["timePeriod"]
        start = _time(period["from"])
        end = _time(period["to"])
        amortized = body["type"] == "AmortizedCost"
        grouping = body["dataset"].get("grouping") or []
        sums: dict[tuple, float] = {}
        for c in self.charges:
            if c.charge_kind not in QUERY_CHARGE_TYPES or not start <= c.start <= end:
                continue
            key: tuple = (int(c.start.strftime("%Y%m%d")),)
            for g in grouping:
                if g["type"] == "TagKey":
                    value = c.tags.get(g["name"], "")
                    key += (g["name"] if value else "", value)
                else:
                    key += ({"ChargeType": c.charge_kind}[g["name"]],)
            key += (c.currency,)
            sums[key] = sums.get(key, 0.0) + (c.effective_cost if amortized else c.billed_cost)
        return [[round(cost, 6), *key] for key, cost in sorted(sums.items())]


def _check(body: dict[str, Any]) -> str:
    """What the service refuses, checked against the SDK's own model of the body."""
    from azure.mgmt.costmanagement import models

    definition = models.QueryDefinition(body)
    if definition.type not in ("ActualCost", "AmortizedCost", "Usage"):
        return f"unknown query type {definition.type}"
    if definition.timeframe == "Custom" and definition.time_period is None:
        return "timePeriod is required for a Custom timeframe"
    dataset = definition.dataset
    if len(dataset.grouping or []) > 2 or len(dataset.aggregation or {}) > 2:
        return "a query takes at most 2 groupings and 2 aggregations"
    expected = "PreTaxCost" if definition.type == "Usage" else "Cost"
    for alias, aggregation in (dataset.aggregation or {}).items():
        if aggregation.name not in (expected, expected + "USD"):
            return f"aggregation {alias}: column {aggregation.name} is not one of {definition.type}"
    for g in dataset.grouping or []:
        if g.type == "Dimension" and g.name != "ChargeType":
            return f"this fake groups by the ChargeType dimension only, not {g.name}"
    return ""


def _bad(message: str) -> Reply:
    return json_reply(
        400,
        {"error": {"code": "BadRequest", "message": message}},
        {"x-ms-error-code": "BadRequest"},
    )


def _time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def cost_client(fake: FakeCostManagement) -> Any:
    """A real CostManagementClient on the fake, through providers.azure.sdk: a fake
    credential, plain HTTP allowed (azure-core's bearer policy refuses http:// unless the
    request's context says otherwise), and no long back-off between retries."""
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    from providers.azure import sdk
    from tests.fakes.azure import FakeCredential

    class AllowHttp(SansIOHTTPPolicy):  # type: ignore[type-arg]
        def on_request(self, request: Any) -> None:
            request.context["enforce_https"] = False

    return sdk.cost_client(
        base_url=fake.url,
        credential=FakeCredential(),
        per_call_policies=[AllowHttp()],
        retry_backoff_factor=0.01,
    )
