"""BigQuery's REST API (v2) as google-cloud-bigquery's query_and_wait calls it, and Cloud
Storage's object listing, for the Cloud Billing export (providers/gcp/billing.py).

REST shapes, from the client's source and the v2 reference
(https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs):
- jobs.query: POST /bigquery/v2/projects/{project}/queries with a QueryRequest
  (query, useLegacySql, parameterMode, queryParameters, maxResults, requestId); answers a
  QueryResponse (jobReference, schema.fields, rows as {"f": [{"v": ...}]} with every
  scalar as a string, totalRows as a string, pageToken, jobComplete).
- jobs.get: GET .../jobs/{jobId} (a Job with status.state DONE and configuration.query).
- jobs.getQueryResults: GET .../queries/{jobId}?pageToken=&maxResults= (the next page).
- errors: {"error": {"code", "message", "errors": [{"reason", "domain", "message"}],
  "status"}}; rate limiting is 403 with reason rateLimitExceeded
  (https://cloud.google.com/bigquery/docs/troubleshoot-quotas).

The fake does not run SQL: it answers the billing aggregation (providers/gcp/billing.py
aggregate_sql) as BigQuery would, from export rows it holds, reading the period and the
label keys from the request's query parameters, so a query that inlined them would get
nothing right.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote

from tests.fakes.gcp import gcs_reads
from tests.fakes.http import FakeServer, Reply, Seen, Served, json_reply

PROJECT = "recipe-billing"
DATASET = "billing_export"
TABLE = "gcp_billing_export_v1_01A2B3_C4D5E6_F7A8B9"

RATE_LIMITED: Reply = json_reply(
    403,
    {
        "error": {
            "code": 403,
            "message": "Exceeded rate limits: too many api requests per user per method for "
            "this user_method. For more information, see "
            "https://cloud.google.com/bigquery/docs/troubleshoot-quotas",
            "errors": [
                {
                    "message": "Exceeded rate limits: too many api requests per user per method",
                    "domain": "usageLimits",
                    "reason": "rateLimitExceeded",
                }
            ],
            "status": "PERMISSION_DENIED",
        }
    },
)

# The output columns of the aggregation and their BigQuery types.
_FIELDS = (
    ("day", "DATE"),
    ("billing_account_id", "STRING"),
    ("project_id", "STRING"),
    ("service", "STRING"),
    ("sku", "STRING"),
    ("region", "STRING"),
    ("cost_type", "STRING"),
    ("currency", "STRING"),
    ("refund", "BOOLEAN"),
)


def gcs_listing(objects: dict[str, bytes], page_size: int = 2) -> FakeServer:
    """gcs_reads plus objects.list (GET /storage/v1/b/{bucket}/o?prefix=&pageToken=), paged
    by `page_size` items (https://cloud.google.com/storage/docs/json_api/v1/objects/list)."""
    server = gcs_reads(objects)

    def listing(request: Seen, match: re.Match[str]) -> Reply:
        bucket = match["bucket"]
        prefix = request.query.get("prefix", [""])[0]
        names = sorted(k.split("/", 1)[1] for k in objects if k.startswith(bucket + "/"))
        names = [n for n in names if n.startswith(prefix)]
        start = int(request.query.get("pageToken", ["0"])[0])
        page = names[start : start + page_size]
        body: dict[str, Any] = {
            "kind": "storage#objects",
            "items": [
                {
                    "kind": "storage#object",
                    "name": n,
                    "bucket": bucket,
                    "generation": "1700000000000000",
                    "size": str(len(objects[f"{bucket}/{n}"])),
                }
                for n in page
            ],
        }
        if start + page_size < len(names):
            body["nextPageToken"] = str(start + page_size)
        return json_reply(200, body)

    # Before gcs_reads' routes: its media route would not match, but keep the order explicit.
    server.routes.insert(0, ("GET", re.compile(r"/storage/v1/b/(?P<bucket>[^/]+)/o"), listing))
    return server


def _value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc)
    text = str(value).replace(" UTC", "+00:00").replace("Z", "+00:00")
    return datetime.fromisoformat(text).astimezone(timezone.utc)


@dataclass
class FakeBigQuery(Served):
    """One billing export table (`rows`: export rows as recipes.cost.billing.gcp writes
    them, which is the export's own schema) behind jobs.query / jobs.get /
    jobs.getQueryResults. `failures[route]` answers are queued before the route's handler
    (routes: query, job, results)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    server: FakeServer = field(default_factory=FakeServer)
    failures: dict[str, list[Reply]] = field(default_factory=dict)
    results: dict[str, list[list[Any]]] = field(default_factory=dict)  # job id -> rows
    fields: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    queries: list[dict[str, Any]] = field(default_factory=list)  # QueryRequest bodies

    def __post_init__(self) -> None:
        base = r"/bigquery/v2/projects/(?P<project>[^/]+)"
        for method, pattern, name in (
            ("POST", base + r"/queries", "query"),
            ("GET", base + r"/jobs/(?P<job>[^/]+)", "job"),
            ("GET", base + r"/queries/(?P<job>[^/]+)", "results"),
        ):
            self.server.route(method, pattern, self._handler(name))

    def _handler(self, name: str) -> Any:
        def handle(request: Seen, match: re.Match[str]) -> Reply:
            queued = self.failures.get(name)
            if queued:
                return queued.pop(0)
            return getattr(self, f"_{name}")(request, match)

        return handle

    # --- the aggregation, as BigQuery would answer it --------------------------------------

    def aggregate(self, parameters: dict[str, str], label_count: int) -> list[list[Any]]:
        start = _timestamp(parameters["start"])
        end = _timestamp(parameters["end"])
        label_keys = [parameters[f"label_{i}"] for i in range(label_count)]
        sums: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for row in self.rows:
            if not start <= _timestamp(row["usage_start_time"]) < end:
                continue
            labels = {item["key"]: item["value"] for item in row.get("labels") or []}
            adjustment = (row.get("adjustment_info") or {}).get("description") or ""
            key = (
                _timestamp(row["usage_start_time"]).date().isoformat(),
                row["billing_account_id"],
                row["project"]["id"],
                row["service"]["description"],
                row["sku"]["description"],
                row["location"].get("region") or row["location"].get("location"),
                row["cost_type"],
                row["currency"],
                "refund" in adjustment.lower(),
                *[labels.get(k) for k in label_keys],
            )
            listed = row.get("cost_at_list")
            cost = sums[(*key, "cost", None)]
            cost[0] += row["cost"]
            cost[1] += row["cost"] if listed is None else listed
            for credit in row.get("credits") or []:
                sums[(*key, "credit", credit["type"])][0] += credit["amount"]
        return [[*k, amount, listed] for k, (amount, listed) in sums.items()]

    def _schema(self, label_count: int) -> list[dict[str, str]]:
        names = [
            *_FIELDS,
            *[(f"label_{i}", "STRING") for i in range(label_count)],
            ("line", "STRING"),
            ("credit_type", "STRING"),
            ("amount", "FLOAT"),
            ("list_amount", "FLOAT"),
        ]
        return [{"name": n, "type": t, "mode": "NULLABLE"} for n, t in names]

    # --- routes -----------------------------------------------------------------------------

    def _query(self, request: Seen, match: re.Match[str]) -> Reply:
        body = request.json()
        self.queries.append(body)
        assert body.get("useLegacySql") is False, body
        assert body.get("parameterMode") == "NAMED", body
        parameters = {
            p["name"]: p["parameterValue"]["value"] for p in body.get("queryParameters", [])
        }
        label_count = sum(1 for name in parameters if name.startswith("label_"))
        job_id = f"job_{len(self.results)}"
        self.results[job_id] = self.aggregate(parameters, label_count)
        self.fields[job_id] = self._schema(label_count)
        page = self._page(job_id, 0, int(body.get("maxResults") or 10000))
        return json_reply(
            200,
            {
                "kind": "bigquery#queryResponse",
                "jobReference": self._reference(match["project"], job_id),
                "jobComplete": True,
                "totalBytesProcessed": "1048576",
                "cacheHit": False,
                **page,
            },
        )

    def _reference(self, project: str, job_id: str) -> dict[str, str]:
        return {"projectId": project, "jobId": job_id, "location": "US"}

    def _page(self, job_id: str, start: int, size: int) -> dict[str, Any]:
        rows = self.results[job_id]
        page: dict[str, Any] = {
            "schema": {"fields": self.fields[job_id]},
            "totalRows": str(len(rows)),
            "rows": [{"f": [{"v": _value(v)} for v in r]} for r in rows[start : start + size]],
        }
        if start + size < len(rows):
            page["pageToken"] = f"page-{start + size}"
        return page

    def _job(self, request: Seen, match: re.Match[str]) -> Reply:
        job_id = unquote(match["job"])
        if job_id not in self.results:
            return json_reply(
                404,
                {
                    "error": {
                        "code": 404,
                        "message": f"Not found: Job {job_id}",
                        "status": "NOT_FOUND",
                    }
                },
            )
        query = self.queries[int(job_id.split("_")[1])]
        return json_reply(
            200,
            {
                "kind": "bigquery#job",
                "id": f"{match['project']}:US.{job_id}",
                "jobReference": self._reference(match["project"], job_id),
                "configuration": {
                    "jobType": "QUERY",
                    "query": {"query": query["query"], "useLegacySql": False},
                },
                "status": {"state": "DONE"},
                "statistics": {
                    "creationTime": "1795435200000",
                    "startTime": "1795435200100",
                    "endTime": "1795435201000",
                    "query": {"totalBytesProcessed": "1048576", "statementType": "SELECT"},
                },
            },
        )

    def _results(self, request: Seen, match: re.Match[str]) -> Reply:
        job_id = unquote(match["job"])
        token = request.query.get("pageToken", ["page-0"])[0]
        size = int(request.query.get("maxResults", ["10000"])[0])
        page = self._page(job_id, int(token.removeprefix("page-")), size)
        if size == 0:  # the client asks for the job's state and schema only
            page["rows"] = []
            page.pop("pageToken", None)
        return json_reply(
            200,
            {
                "kind": "bigquery#getQueryResultsResponse",
                "jobReference": self._reference(match["project"], job_id),
                "jobComplete": True,
                **page,
            },
        )


def bigquery_client(fake: FakeBigQuery) -> Any:
    """google-cloud-bigquery's Client aimed at the fake, with anonymous credentials."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    return bigquery.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": fake.url},
    )


def storage_client(server: FakeServer) -> Any:
    """google-cloud-storage's Client aimed at a loopback server."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": server.url},
    )
