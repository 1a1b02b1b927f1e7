"""Google Cloud's Cloud Billing export to BigQuery, standard and detailed, as files
exported from BigQuery (Parquet with the nested columns kept, or newline-delimited JSON).

Sources of the column rules:
- Standard usage cost table (`gcp_billing_export_v1_<ACCOUNT>`):
  https://cloud.google.com/billing/docs/how-to/export-data-bigquery-tables/standard-usage
- Detailed usage cost table (`gcp_billing_export_resource_v1_<ACCOUNT>`): the standard
  fields plus `resource{name,global_name}` and `price{...}`:
  https://cloud.google.com/billing/docs/how-to/export-data-bigquery-tables/detailed-usage
- BigQuery's exports: nested and repeated fields kept in JSON and Parquet, INT64 written
  as JSON strings: https://cloud.google.com/bigquery/docs/exporting-data

How rows map:
- `cost` is the gross cost of the row; `credits` (an array of {name, amount, full_name, id,
  type}) are the row's credits, negative. Each credit becomes its own Credit row (UNNEST),
  never netted into the usage row, as the export keeps them apart.
- `cost_type`: regular (usage), tax, adjustment, rounding error. An adjustment whose
  `adjustment_info.description` says refund is a Refund; a rounding error is an Adjustment.
- `cost_at_list` (the row's cost at list prices, where the table has it) is ListCost;
  credits have no list cost (0).
- Spot and preemptible usage is told by the SKU description ("Spot Preemptible ...").
- Label keys are GCP label keys (lower case), so a requested tag key is looked up as
  `schema.gcp_label_key(key)`.
- The export has no invoice-final flag (rows keep changing until the month's invoice):
  x_Final is NULL.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from recipes.cost.billing import synthetic
from recipes.cost.billing.files import connect, copy
from recipes.cost.billing.schema import (
    Table,
    cost_kind_sql,
    gcp_label_key,
    literal,
    quote,
    tag_column,
    utc_timestamp_sql,
)

# In both tables; enough to tell the export from FOCUS (BilledCost...) and the others.
REQUIRED = ("billing_account_id", "service", "sku", "usage_start_time", "cost", "currency")
# The export's columns the writer emits, as BigQuery types them (DuckDB spelling); the
# detailed table adds DETAILED_EXTRA. Types follow the schema pages above.
LABEL = 'STRUCT("key" VARCHAR, "value" VARCHAR)[]'
CREDIT = 'STRUCT("name" VARCHAR, amount DOUBLE, full_name VARCHAR, id VARCHAR, "type" VARCHAR)[]'
COLUMNS_STANDARD: tuple[tuple[str, str], ...] = (
    ("billing_account_id", "VARCHAR"),
    ("service", "STRUCT(id VARCHAR, description VARCHAR)"),
    ("sku", "STRUCT(id VARCHAR, description VARCHAR)"),
    ("usage_start_time", "TIMESTAMPTZ"),
    ("usage_end_time", "TIMESTAMPTZ"),
    (
        "project",
        f"STRUCT(id VARCHAR, number VARCHAR, name VARCHAR, labels {LABEL}, ancestry_numbers VARCHAR)",
    ),
    ("labels", LABEL),
    ("system_labels", LABEL),
    ("location", "STRUCT(location VARCHAR, country VARCHAR, region VARCHAR, zone VARCHAR)"),
    ("export_time", "TIMESTAMPTZ"),
    ("cost", "DOUBLE"),
    ("currency", "VARCHAR"),
    ("currency_conversion_rate", "DOUBLE"),
    (
        "usage",
        "STRUCT(amount DOUBLE, unit VARCHAR, amount_in_pricing_units DOUBLE, pricing_unit VARCHAR)",
    ),
    ("credits", CREDIT),
    ("invoice", "STRUCT(month VARCHAR)"),
    ("cost_type", "VARCHAR"),
    ("adjustment_info", 'STRUCT(id VARCHAR, description VARCHAR, "mode" VARCHAR, "type" VARCHAR)'),
    ("cost_at_list", "DOUBLE"),
    ("transaction_type", "VARCHAR"),
    ("seller_name", "VARCHAR"),
)
DETAILED_EXTRA: tuple[tuple[str, str], ...] = (
    ("resource", "STRUCT(name VARCHAR, global_name VARCHAR)"),
    (
        "price",
        "STRUCT(effective_price DOUBLE, tier_start_amount DOUBLE, unit VARCHAR, pricing_unit_quantity DOUBLE)",
    ),
)
COLUMNS_DETAILED = COLUMNS_STANDARD + DETAILED_EXTRA


def has_field(type_text: str, name: str) -> bool:
    """Whether a DuckDB STRUCT type (as DESCRIBE prints it) has a field of that name."""
    return re.search(r'[(,]\s*"?' + re.escape(name) + r'"?\s', type_text) is not None


def is_struct_list(type_text: str) -> bool:
    # A JSON export whose arrays are all empty reads as JSON[]: no labels or credits there.
    return type_text.startswith("STRUCT") and type_text.endswith("[]")


def timestamp_sql(expr: str, type_text: str) -> str:
    """A UTC TIMESTAMP from the export's TIMESTAMP as Parquet (TIMESTAMPTZ) or JSON
    ("2026-10-01 09:00:00 UTC") gives it."""
    return utc_timestamp_sql(expr, type_text)


class GcpExport:
    """One of the two export tables; `detailed` is told by the `resource` column."""

    def __init__(self, name: str, detailed: bool):
        self.name = name
        self.detailed = detailed

    def matches(self, columns: Mapping[str, str], path: str) -> bool:
        if not all(c in columns for c in REQUIRED) or "BilledCost" in columns:
            return False
        return ("resource" in columns) == self.detailed

    def describe(self, columns: Mapping[str, str], path: str) -> str:
        table = "detailed usage cost" if self.detailed else "standard usage cost"
        return f"Google Cloud Billing export to BigQuery ({table})"

    def select(self, table: Table, tag_keys: Sequence[str]) -> str:
        cols = table.columns
        shared = _shared_columns(cols, self.detailed)
        labels = cols.get("labels", "")
        tags = _tags_sql(labels)
        tag_exprs = [f"{_label_sql(labels, key)} AS {quote(tag_column(key))}" for key in tag_keys]
        common = [*shared, f"{tags} AS Tags", *tag_exprs]
        usage = _usage_columns(cols)
        parts = [f"SELECT {', '.join(common + usage)} FROM {table.relation} AS src"]
        if is_struct_list(cols.get("credits", "")):
            credit = _credit_columns(cols["credits"])
            # One row per credit: UNNEST in a subquery keeps the usage row's other columns.
            exploded = f"(SELECT *, unnest(credits) AS credit FROM {table.relation}) AS src"
            parts.append(f"SELECT {', '.join(common + credit)} FROM {exploded}")
        return " UNION ALL ".join(parts)


def _col(cols: Mapping[str, str], name: str, field: str | None = None) -> str:
    """`name` or `name.field` if the file has it, else NULL (older tables lack fields)."""
    if name not in cols:
        return "NULL"
    if field is None:
        return f"src.{quote(name)}"
    if not has_field(cols[name], field):
        return "NULL"
    return f"src.{quote(name)}.{quote(field)}"


def _shared_columns(cols: Mapping[str, str], detailed: bool) -> list[str]:
    """What a usage row and its credits have in common."""
    start = timestamp_sql(_col(cols, "usage_start_time"), cols.get("usage_start_time", ""))
    end = timestamp_sql(_col(cols, "usage_end_time"), cols.get("usage_end_time", ""))
    resource = (
        f"CAST(coalesce({_col(cols, 'resource', 'global_name')}, {_col(cols, 'resource', 'name')}) AS VARCHAR)"
        if detailed
        else "CAST(NULL AS VARCHAR)"
    )
    region = f"coalesce({_col(cols, 'location', 'region')}, {_col(cols, 'location', 'location')})"
    cost_kind = cost_kind_sql(
        _col(cols, "service", "description"),
        _col(cols, "sku", "description"),
        _col(cols, "usage", "pricing_unit"),
    )
    return [
        "'gcp' AS ProviderName",
        f"CAST({_col(cols, 'billing_account_id')} AS VARCHAR) AS BillingAccountId",
        f"CAST({_col(cols, 'project', 'id')} AS VARCHAR) AS SubAccountId",
        f"{start} AS ChargePeriodStart",
        f"{end} AS ChargePeriodEnd",
        f"CAST({_col(cols, 'currency')} AS VARCHAR) AS BillingCurrency",
        f"CAST({_col(cols, 'service', 'description')} AS VARCHAR) AS ServiceName",
        f"CAST({region} AS VARCHAR) AS RegionId",
        f"{resource} AS ResourceId",
        f"{cost_kind} AS x_CostKind",
        "CAST(NULL AS BOOLEAN) AS x_Final",
    ]


def _usage_columns(cols: Mapping[str, str]) -> list[str]:
    """The row's own cost: usage, tax or an adjustment, by cost_type."""
    cost_type = f"lower(coalesce(CAST({_col(cols, 'cost_type')} AS VARCHAR), 'regular'))"
    adjustment_text = (
        f"coalesce(CAST({_col(cols, 'adjustment_info', 'description')} AS VARCHAR), '') || ' ' || "
        f"coalesce(CAST({_col(cols, 'adjustment_info', 'type')} AS VARCHAR), '')"
    )
    kind = (
        f"CASE WHEN {cost_type} = 'tax' THEN 'Tax' "
        f"WHEN {cost_type} = 'adjustment' AND {adjustment_text} ILIKE '%refund%' THEN 'Refund' "
        f"WHEN {cost_type} IN ('adjustment', 'rounding error', 'rounding_error') THEN 'Adjustment' "
        "ELSE 'Usage' END"
    )
    category = f"CASE WHEN {cost_type} = 'tax' THEN 'Tax' WHEN {cost_type} = 'regular' THEN 'Usage' ELSE 'Adjustment' END"
    sku = _col(cols, "sku", "description")
    pricing = (
        f"CASE WHEN {cost_type} <> 'regular' THEN NULL "
        f"WHEN coalesce(CAST({sku} AS VARCHAR), '') ILIKE '%spot%' "
        f"OR coalesce(CAST({sku} AS VARCHAR), '') ILIKE '%preemptible%' THEN 'Dynamic' "
        "ELSE 'Standard' END"
    )
    cost = f"CAST({_col(cols, 'cost')} AS DOUBLE)"
    listed = f"CAST(coalesce({_col(cols, 'cost_at_list')}, {_col(cols, 'cost')}) AS DOUBLE)"
    description = (
        f"CAST(coalesce({_col(cols, 'adjustment_info', 'description')}, {sku}) AS VARCHAR)"
        if "adjustment_info" in cols
        else f"CAST({sku} AS VARCHAR)"
    )
    return [
        f"{cost} AS BilledCost",
        f"{cost} AS EffectiveCost",
        f"{listed} AS ListCost",
        f"{category} AS ChargeCategory",
        f"{kind} AS x_ChargeKind",
        f"{pricing} AS PricingCategory",
        f"{description} AS ChargeDescription",
        # Pricing units (hours, GiB-months), the units list prices and estimates use.
        f"CAST({_col(cols, 'usage', 'amount_in_pricing_units')} AS DOUBLE) AS ConsumedQuantity",
        f"CAST({_col(cols, 'usage', 'pricing_unit')} AS VARCHAR) AS ConsumedUnit",
    ]


def _credit_columns(credit_type: str) -> list[str]:
    """One credit of a row (`credit`, from UNNEST) as its own Credit row."""
    amount = "CAST(credit.amount AS DOUBLE)"
    names = [f"credit.{quote(f)}" for f in ("full_name", "name") if has_field(credit_type, f)]
    description = f"CAST(coalesce({', '.join(names)}) AS VARCHAR)" if names else "NULL"
    committed = (
        "CASE WHEN credit.\"type\" LIKE 'COMMITTED_USAGE_DISCOUNT%' THEN 'Committed' END"
        if has_field(credit_type, "type")
        else "NULL"
    )
    return [
        f"{amount} AS BilledCost",
        f"{amount} AS EffectiveCost",
        "CAST(0 AS DOUBLE) AS ListCost",  # a credit has no list price
        "'Credit' AS ChargeCategory",
        "'Credit' AS x_ChargeKind",
        f"{committed} AS PricingCategory",
        f"{description} AS ChargeDescription",
        "CAST(NULL AS DOUBLE) AS ConsumedQuantity",
        "CAST(NULL AS VARCHAR) AS ConsumedUnit",
    ]


def _label_sql(labels_type: str, key: str) -> str:
    if not is_struct_list(labels_type):
        return "CAST(NULL AS VARCHAR)"
    keys = "[" + ", ".join(literal(k) for k in dict.fromkeys([gcp_label_key(key), key])) + "]"
    return f'CAST((list_filter(src.labels, lambda l: list_contains({keys}, l."key")))[1]."value" AS VARCHAR)'


def _tags_sql(labels_type: str) -> str:
    if not is_struct_list(labels_type):
        return "'{}'"
    entries = "list_transform(src.labels, lambda l: {'k': l.\"key\", 'v': l.\"value\"})"
    return f"CAST(to_json(map_from_entries(coalesce({entries}, []))) AS VARCHAR)"


# --- the synthetic writers -----------------------------------------------------------------

STANDARD = GcpExport("gcp-standard", detailed=False)
DETAILED = GcpExport("gcp-detailed", detailed=True)
_PROJECT_NUMBER = "482915730146"
_CREDIT_TYPE = "PROMOTION"  # the standard-usage page's credits.type for promotional credits


def _labels(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": gcp_label_key(k), "value": v} for k, v in tags.items()]


def _base_row(c: synthetic.Charge, detailed: bool) -> dict[str, Any]:
    usage = c.charge_kind in ("Usage", "Purchase")
    cost_type = {"Tax": "tax", "Refund": "adjustment", "Adjustment": "adjustment"}.get(
        c.charge_kind, "regular"
    )
    row: dict[str, Any] = {
        "billing_account_id": c.billing_account,
        "service": {"id": c.sku_id[:4] or "6F81-5844-456A", "description": c.service},
        "sku": {"id": c.sku_id or None, "description": c.usage_type if usage else c.description},
        "usage_start_time": c.start,
        "usage_end_time": c.end,
        "project": {
            "id": c.sub_account,
            "number": _PROJECT_NUMBER,
            "name": c.sub_account,
            "labels": [],
            "ancestry_numbers": f"/{_PROJECT_NUMBER}/",
        },
        "labels": _labels(c.tags),
        "system_labels": [],
        "location": {"location": c.region, "country": "US", "region": c.region, "zone": None},
        "export_time": c.end,
        "cost": c.billed_cost,
        "currency": c.currency,
        "currency_conversion_rate": 1.0,
        "usage": {
            "amount": round(c.quantity * 3600, 6) if c.unit == "hour" else c.quantity,
            "unit": "seconds" if c.unit == "hour" else c.unit,
            "amount_in_pricing_units": c.quantity,
            "pricing_unit": c.unit or None,
        },
        "credits": [],
        "invoice": {"month": f"{c.start:%Y%m}"},
        "cost_type": cost_type,
        "adjustment_info": (
            {
                "id": f"adj-{c.start:%Y%m%d}",
                "description": c.description,
                "mode": "MANUAL_ADJUSTMENT",
                "type": "GENERAL_ADJUSTMENT",
            }
            if cost_type == "adjustment"
            else None
        ),
        "cost_at_list": c.list_cost,
        "transaction_type": "GOOGLE",
        "seller_name": None,
    }
    if detailed:
        row["resource"] = (
            {"name": c.resource_id.rsplit("/", 1)[-1], "global_name": c.resource_id}
            if c.resource_id
            else {"name": None, "global_name": None}
        )
        row["price"] = (
            {
                "effective_price": round(c.billed_cost / c.quantity, 6),
                "tier_start_amount": 0.0,
                "unit": c.unit,
                "pricing_unit_quantity": 1.0,
            }
            if usage and c.quantity
            else None
        )
    return row


def rows(charges: Sequence[synthetic.Charge], detailed: bool) -> list[dict[str, Any]]:
    """Charges as export rows. A synthetic Credit is a promotional credit attached to a usage
    row with the same period and labels (the export lists a row's credits in its `credits`
    array: standard-usage page, `credits`), or to a zero-cost row carrying it if there is
    none, so that credits stay apart from usage as the export keeps them."""
    out: list[dict[str, Any]] = []
    credits = []
    for c in charges:
        if c.charge_kind == "Credit":
            credits.append(c)
        else:
            out.append(_base_row(c, detailed))
    for c in credits:
        credit = {
            "name": c.description,
            "amount": c.billed_cost,
            "full_name": c.description,
            "id": f"promo-{c.start:%Y%m}",
            "type": _CREDIT_TYPE,
        }
        host = next(
            (
                r
                for r in out
                if r["cost_type"] == "regular"
                and r["usage_start_time"] == c.start
                and r["usage_end_time"] == c.end
                and r["labels"] == _labels(c.tags)
                and r["project"]["id"] == c.sub_account
            ),
            None,
        )
        if host is None:
            host = _base_row(c, detailed)
            host.update(cost=0.0, cost_at_list=0.0, cost_type="regular")
            out.append(host)
        host["credits"].append(credit)
    return out


def _bq_json(value: Any) -> Any:
    """A value as BigQuery's JSON export writes it (TIMESTAMP as "... UTC")."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, dict):
        return {k: _bq_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_bq_json(v) for v in value]
    return value


def _write(charges: Sequence[synthetic.Charge], path: Path, detailed: bool) -> None:
    records = rows(charges, detailed)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name.lower()
    if name.endswith((".jsonl", ".json")):
        path.write_text("".join(json.dumps(_bq_json(r)) + "\n" for r in records))
        return
    if not name.endswith(".parquet"):
        # BigQuery cannot export nested and repeated fields to CSV (exporting-data page).
        raise ValueError(f"the BigQuery export is Parquet or JSON lines, not {path.name}")
    # Nested types exactly as declared: JSON lines read back with the columns' types.
    columns = COLUMNS_DETAILED if detailed else COLUMNS_STANDARD
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "rows.jsonl"
        iso = [
            {k: v.isoformat() if isinstance(v, datetime) else v for k, v in r.items()}
            for r in records
        ]
        staged.write_text("".join(json.dumps(r) + "\n" for r in iso))
        spec = "{" + ", ".join(f"{literal(n)}: {literal(t)}" for n, t in columns) + "}"
        con = connect()
        source = f"(SELECT * FROM read_json({literal(str(staged))}, format = 'newline_delimited', columns = {spec}))"
        copy(con, source, path)
        con.close()


def write_standard(charges: Sequence[synthetic.Charge], path: Path) -> None:
    _write(charges, path, detailed=False)


def write_detailed(charges: Sequence[synthetic.Charge], path: Path) -> None:
    _write(charges, path, detailed=True)
