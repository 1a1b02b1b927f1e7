"""Google Cloud's billing data for `recipe cost report`: the Cloud Billing export to
BigQuery, as files exported to Cloud Storage (gs://) or queried in BigQuery (bq:).

- gs://BUCKET/PREFIX: every Parquet / JSON lines file under the prefix (a BigQuery
  `EXPORT DATA` or extract job writes several parts), read by
  recipes.cost.billing.gcp.
- bq:PROJECT.DATASET.TABLE: the export table itself, aggregated in BigQuery by day,
  service, SKU, region, cost_type, currency and the requested label keys; usage costs and
  credits come back as separate rows, so credits are never netted into usage.
  The table's columns are those of
  https://cloud.google.com/billing/docs/how-to/export-data-bigquery-tables/standard-usage
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from providers.base import BillingQuery, BillingRows
from providers.gcp import sdk
from providers.gcp.storage import split_gs
from recipes.cost.billing.files import kind_of
from recipes.cost.billing.schema import api_row, gcp_label_key
from recipes.errors import Problem, RecipeInputError

# BigQuery names: project ids (6-30 chars, lower case, may hold a domain prefix
# "example.com:proj"), dataset ids (letters, digits, underscores, up to 1024) and table ids
# (letters, digits, underscores, dashes; no dots or backticks). The id is the only text
# put into the SQL, so it is checked strictly and quoted with backticks.
_PROJECT = r"(?:[a-z][a-z0-9.\-]*:)?[a-z][a-z0-9\-]{4,28}[a-z0-9]"
_DATASET = r"[A-Za-z0-9_]{1,1024}"
_TABLE = r"[A-Za-z0-9_\-]{1,1024}"
TABLE_ID = re.compile(rf"(?P<project>{_PROJECT})\.(?P<dataset>{_DATASET})\.(?P<table>{_TABLE})")
TABLE_HINT = "expected bq:PROJECT.DATASET.TABLE, e.g. bq:my-project.billing.gcp_billing_export_v1_01A2B3_C4D5E6_F7A8B9"


def table_id(source: str) -> str:
    """The validated PROJECT.DATASET.TABLE of a `bq:` source."""
    text = source.removeprefix("bq:").strip().strip("`")
    if not TABLE_ID.fullmatch(text):
        raise RecipeInputError(Problem("not a BigQuery table id", file=source, hint=TABLE_HINT))
    return text


def aggregate_sql(table: str, label_count: int) -> str:
    """The aggregation, run in BigQuery. Only the validated table id is in the text: the
    period and the label keys are the query parameters @start, @end, @label_<i>."""
    labels = [
        f"(SELECT l.value FROM UNNEST(labels) AS l WHERE l.key = @label_{i} LIMIT 1) AS label_{i}"
        for i in range(label_count)
    ]
    label_lines = "".join(f"{label},\n    " for label in labels)
    keys = [
        "day",
        "billing_account_id",
        "project_id",
        "service",
        "sku",
        "region",
        "cost_type",
        "currency",
        "refund",
    ] + [f"label_{i}" for i in range(label_count)]
    group = ", ".join(keys)
    return f"""
WITH billed AS (
  SELECT
    DATE(usage_start_time) AS day,
    billing_account_id,
    project.id AS project_id,
    service.description AS service,
    sku.description AS sku,
    IFNULL(location.region, location.location) AS region,
    cost_type,
    currency,
    IFNULL(LOWER(adjustment_info.description), '') LIKE '%refund%' AS refund,
    {label_lines}cost,
    IFNULL(cost_at_list, cost) AS cost_at_list,
    credits
  FROM `{table}`
  WHERE usage_start_time >= @start AND usage_start_time < @end
)
SELECT {group}, 'cost' AS line, CAST(NULL AS STRING) AS credit_type,
  SUM(cost) AS amount, SUM(cost_at_list) AS list_amount
FROM billed GROUP BY {group}
UNION ALL
SELECT {group}, 'credit' AS line, c.type AS credit_type,
  SUM(c.amount) AS amount, 0.0 AS list_amount
FROM billed, UNNEST(credits) AS c GROUP BY {group}, credit_type
"""


class GcpBilling:
    name = "gcp"
    schemes = ("gs://",)
    api_schemes = ("bq:",)

    def __init__(self, storage: Any = None, bigquery: Any = None, project: str | None = None):
        self._storage = storage
        self._bigquery = bigquery
        self._project = project

    # --- gs:// ----------------------------------------------------------------------------

    def download(self, uri: str, directory: Path) -> list[Path]:
        bucket, prefix = split_gs(uri)
        if not bucket:
            raise RecipeInputError(Problem("expected gs://BUCKET/PREFIX", file=uri))
        client = sdk.Clients(storage=self._storage).storage(self._project)
        blobs = sdk.call(
            lambda: list(
                client.list_blobs(bucket, prefix=prefix or None, retry=sdk.storage_retry())
            ),
            f"list {uri}",
        )
        wanted = [b for b in blobs if not b.name.endswith("/") and kind_of(PurePosixPath(b.name))]
        if not wanted:
            raise RecipeInputError(
                Problem(
                    "no billing files there",
                    file=uri,
                    hint="expected the BigQuery billing export written as Parquet or JSON lines "
                    "(EXPORT DATA ... format='PARQUET' or 'JSON')",
                )
            )
        return [self._fetch(uri, prefix, blob, directory) for blob in wanted]

    def _fetch(self, uri: str, prefix: str, blob: Any, directory: Path) -> Path:
        # Keep the path below the prefix: export parts of several folders share names.
        relative = (
            blob.name[len(prefix) :].lstrip("/")
            if blob.name != prefix
            else PurePosixPath(blob.name).name
        )
        target = directory.joinpath(*PurePosixPath(relative).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        sdk.call(
            lambda: blob.download_to_filename(str(target), retry=sdk.storage_retry()),
            f"read gs://{blob.bucket.name}/{blob.name}",
        )
        return target

    # --- bq: ------------------------------------------------------------------------------

    def query(self, source: str, query: BillingQuery) -> BillingRows:
        table = table_id(source)
        project = self._project or table.split(".")[0].split(":")[-1]
        client = self._bigquery or sdk.bigquery_client(project)
        keys = list(query.tag_keys)
        parameters: list[tuple[str, str, Any]] = [
            ("start", "TIMESTAMP", _midnight(query.start)),
            ("end", "TIMESTAMP", _midnight(query.end)),
            *[(f"label_{i}", "STRING", gcp_label_key(k)) for i, k in enumerate(keys)],
        ]
        found = sdk.bigquery_rows(
            client, aggregate_sql(table, len(keys)), parameters, f"query {source}"
        )
        rows = [normalized(r, keys) for r in found]
        by = ", ".join(keys) if keys else "no labels"
        return BillingRows(
            source=source,
            format=f"Cloud Billing export in BigQuery (daily, by service, SKU and label {by})",
            rows=rows,
            notes=("BigQuery's export has no invoice-final flag: x_Final is unknown",),
        )


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=timezone.utc)


def normalized(row: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """One aggregated BigQuery row as the normalized columns (plus `tag:<key>`)."""
    day = row["day"]
    start = (
        datetime.combine(day, time(0))
        if isinstance(day, date)
        else datetime.fromisoformat(str(day))
    )
    credit = row["line"] == "credit"
    cost_type = (row.get("cost_type") or "regular").lower()
    amount = float(row["amount"] or 0.0)
    tags = {k: row[f"label_{i}"] for i, k in enumerate(keys) if row.get(f"label_{i}") is not None}
    kind, category = _kinds(cost_type, bool(row.get("refund")), credit)
    sku = row.get("sku") or ""
    spot = any(w in sku.lower() for w in ("spot", "preemptible"))
    return api_row(
        ProviderName="gcp",
        BillingAccountId=row.get("billing_account_id"),
        SubAccountId=row.get("project_id"),
        ChargePeriodStart=start,
        ChargePeriodEnd=start + timedelta(days=1),
        BilledCost=amount,
        EffectiveCost=amount,
        ListCost=float(row["list_amount"] or 0.0),
        BillingCurrency=row.get("currency"),
        ChargeCategory=category,
        x_ChargeKind=kind,
        PricingCategory=None if kind != "Usage" else ("Dynamic" if spot else "Standard"),
        ServiceName=row.get("service"),
        RegionId=row.get("region"),
        ChargeDescription=f"{sku} ({row.get('credit_type')})" if credit else sku,
        x_CostKind=_cost_kind(f"{row.get('service') or ''} {sku}"),
        Tags=tags,
        **{f"tag:{k}": tags.get(k) for k in keys},
    )


def _kinds(cost_type: str, refund: bool, credit: bool) -> tuple[str, str]:
    """(x_ChargeKind, ChargeCategory), by the rules of recipes.cost.billing.gcp."""
    if credit:
        return "Credit", "Credit"
    if cost_type == "tax":
        return "Tax", "Tax"
    if cost_type == "adjustment":
        return ("Refund" if refund else "Adjustment"), "Adjustment"
    if cost_type in ("rounding error", "rounding_error"):
        return "Adjustment", "Adjustment"
    return "Usage", "Usage"


def _cost_kind(text: str) -> str:
    """The same words as schema.cost_kind_sql, for rows that never pass through DuckDB."""
    text = text.lower()
    if re.search(
        r"datatransfer|data transfer|egress|bandwidth|network|inter-region|internet", text
    ):
        return "transfer"
    if re.search(r"storage|volume|disk|capacity|snapshot", text):
        return "storage"
    if re.search(r"hour|instance|vcpu|core|gpu|ram|compute|training|inference|node|vm", text):
        return "compute"
    return "other"
