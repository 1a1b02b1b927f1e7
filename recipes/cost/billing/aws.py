"""AWS Cost and Usage Reports: CUR 2.0 (Data Exports) and the legacy CUR.

Sources of the column rules:
- CUR 2.0, table COST_AND_USAGE_REPORT, snake_case columns:
  https://docs.aws.amazon.com/cur/latest/userguide/table-dictionary-cur2.html and its pages
  for line item, bill, pricing, product, reservation, savings plan and resource tags columns.
  `resource_tags` is map<string, string> with keys normalized to `user_<key>` (user tags)
  and `aws_<key>` (AWS-generated); `product` is map<string, string> holding every product
  attribute that is not a static column (e.g. `product_name`). In a CSV export the maps are
  JSON text.
- Legacy CUR, `category/Name` columns and one `resourceTags/user:<key>` column per
  activated tag: https://docs.aws.amazon.com/cur/latest/userguide/data-dictionary.html.
  Its Athena-ready Parquet spells the same columns in snake case
  (`line_item_unblended_cost`, `resource_tags_user_cost_center`), read here too.
- Line item types (lineItem/LineItemType): Usage, DiscountedUsage, SavingsPlanCoveredUsage,
  SavingsPlanNegation, SavingsPlanRecurringFee, SavingsPlanUpfrontFee, RIFee, Fee, Tax,
  Credit, Refund, BundledDiscount, EdpDiscount, PrivateRateDiscount, DistributorDiscount:
  https://docs.aws.amazon.com/cur/latest/userguide/table-dictionary-cur2-line-item.html.

Effective (amortized) cost follows AWS's documented amortization
(https://docs.aws.amazon.com/cur/latest/userguide/cur-ri.html and
https://docs.aws.amazon.com/cur/latest/userguide/cur-sp.html, as the CUR query library's
"amortized cost" writes it): covered usage costs its reservation/savings-plan effective cost;
the negation and upfront fees are zero (their value is spread over the covered usage); a
recurring fee keeps only its unused part; anything else costs its unblended cost.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

from recipes.cost.billing import synthetic
from recipes.cost.billing.files import write_rows
from recipes.cost.billing.schema import (
    Table,
    columns_lower,
    cost_kind_sql,
    literal,
    quote,
    tag_column,
    utc_timestamp_sql,
)

# The CUR 2.0 name of each column we read -> its legacy CUR name.
LEGACY_NAMES = {
    "bill_payer_account_id": "bill/PayerAccountId",
    "bill_invoice_id": "bill/InvoiceId",
    "line_item_usage_account_id": "lineItem/UsageAccountId",
    "line_item_line_item_type": "lineItem/LineItemType",
    "line_item_usage_start_date": "lineItem/UsageStartDate",
    "line_item_usage_end_date": "lineItem/UsageEndDate",
    "line_item_product_code": "lineItem/ProductCode",
    "line_item_usage_type": "lineItem/UsageType",
    "line_item_operation": "lineItem/Operation",
    "line_item_resource_id": "lineItem/ResourceId",
    "line_item_usage_amount": "lineItem/UsageAmount",
    "line_item_currency_code": "lineItem/CurrencyCode",
    "line_item_unblended_cost": "lineItem/UnblendedCost",
    "line_item_line_item_description": "lineItem/LineItemDescription",
    "product_product_name": "product/ProductName",
    "product_servicecode": "product/servicecode",
    "product_region_code": "product/regionCode",
    "product_region": "product/region",
    "product_product_family": "product/productFamily",
    "pricing_public_on_demand_cost": "pricing/publicOnDemandCost",
    "pricing_term": "pricing/term",
    "pricing_unit": "pricing/unit",
    "reservation_effective_cost": "reservation/EffectiveCost",
    "reservation_reservation_a_r_n": "reservation/ReservationARN",
    "reservation_unused_amortized_upfront_fee_for_billing_period": (
        "reservation/UnusedAmortizedUpfrontFeeForBillingPeriod"
    ),
    "reservation_unused_recurring_fee": "reservation/UnusedRecurringFee",
    "savings_plan_savings_plan_effective_cost": "savingsPlan/SavingsPlanEffectiveCost",
    "savings_plan_total_commitment_to_date": "savingsPlan/TotalCommitmentToDate",
    "savings_plan_used_commitment": "savingsPlan/UsedCommitment",
}
# Enough to tell a CUR from FOCUS (BilledCost...) and from Azure/GCP exports.
REQUIRED = ("line_item_line_item_type", "line_item_unblended_cost", "line_item_usage_start_date")
LEGACY_TAG_PREFIX = "resourceTags/user:"
ATHENA_TAG_PREFIX = "resource_tags_user_"

_USAGE_TYPES = ("Usage", "DiscountedUsage", "SavingsPlanCoveredUsage", "SavingsPlanNegation")
_PURCHASE_TYPES = ("RIFee", "Fee", "SavingsPlanRecurringFee", "SavingsPlanUpfrontFee")
_DISCOUNT_TYPES = (
    "BundledDiscount",
    "EdpDiscount",
    "PrivateRateDiscount",
    "DistributorDiscount",
    "SppDiscount",
)


def cur2_tag_key(key: str) -> str:
    """A tag key as CUR 2.0 writes it in resource_tags: `user_` and the key with every
    character other than letters, digits and `_` replaced by `_`."""
    return "user_" + re.sub(r"[^A-Za-z0-9_]", "_", key)


def athena_tag_column(key: str) -> str:
    """The legacy CUR's Athena (Parquet) column of a tag: lower case, `_` for the rest."""
    return ATHENA_TAG_PREFIX + re.sub(r"[^a-z0-9_]", "_", key.lower())


# --- the rules both CUR versions share --------------------------------------------------------


def _in(expr: str, values: Sequence[str]) -> str:
    return f"{expr} IN ({', '.join(literal(v) for v in values)})"


def _num(expr: str) -> str:
    return f"coalesce(TRY_CAST({expr} AS DOUBLE), 0)"


def _timestamp(expr: str, duck_type: str) -> str:
    """A UTC TIMESTAMP from a column of any type DuckDB gave it (CSV: text with `Z`)."""
    if expr == "NULL":
        return "CAST(NULL AS TIMESTAMP)"
    return utc_timestamp_sql(expr, duck_type)


def _select(
    col: Callable[[str], str],
    col_type: Callable[[str], str],
    service_name: str,
    tags_json: str,
    tag_values: Mapping[str, str],
    relation: str,
) -> str:
    """The normalized SELECT over a CUR; `col` gives a column's SQL by its CUR 2.0 name."""
    kind = f"coalesce({col('line_item_line_item_type')}, '')"
    unblended = _num(col("line_item_unblended_cost"))
    charge_kind = (
        f"CASE WHEN {kind} = 'Tax' THEN 'Tax' WHEN {kind} = 'Credit' THEN 'Credit' "
        f"WHEN {kind} = 'Refund' THEN 'Refund' "
        f"WHEN {_in(kind, _PURCHASE_TYPES)} THEN 'Purchase' "
        f"WHEN {_in(kind, _DISCOUNT_TYPES)} THEN 'Adjustment' "
        f"WHEN {_in(kind, _USAGE_TYPES)} THEN 'Usage' ELSE 'Adjustment' END"
    )
    # FOCUS has no Refund category: a refund is a Credit there, kept apart by x_ChargeKind.
    category = f"CASE WHEN {kind} = 'Refund' THEN 'Credit' ELSE {charge_kind} END"
    reservation = f"coalesce({col('reservation_reservation_a_r_n')}, '')"
    effective = (
        f"CASE WHEN {kind} = 'SavingsPlanCoveredUsage' "
        f"THEN {_num(col('savings_plan_savings_plan_effective_cost'))} "
        f"WHEN {kind} = 'SavingsPlanRecurringFee' "
        f"THEN {_num(col('savings_plan_total_commitment_to_date'))} - {_num(col('savings_plan_used_commitment'))} "
        f"WHEN {_in(kind, ('SavingsPlanNegation', 'SavingsPlanUpfrontFee'))} THEN 0 "
        f"WHEN {kind} = 'DiscountedUsage' THEN {_num(col('reservation_effective_cost'))} "
        f"WHEN {kind} = 'RIFee' "
        f"THEN {_num(col('reservation_unused_amortized_upfront_fee_for_billing_period'))} "
        f"+ {_num(col('reservation_unused_recurring_fee'))} "
        f"WHEN {kind} = 'Fee' AND {reservation} <> '' THEN 0 "
        f"ELSE {unblended} END"
    )
    public = col("pricing_public_on_demand_cost")
    usage = _in(kind, _USAGE_TYPES)
    # No public price on a line (or no column): usage at its billed cost, other lines none.
    list_cost = (
        f"coalesce(TRY_CAST({public} AS DOUBLE), CASE WHEN {usage} THEN {unblended} ELSE 0 END)"
    )
    term = f"coalesce({col('pricing_term')}, '')"
    usage_type = col("line_item_usage_type")
    pricing = (
        f"CASE WHEN NOT ({usage}) THEN NULL "
        f"WHEN {term} = 'Spot' OR coalesce({usage_type}, '') ILIKE '%spot%' THEN 'Dynamic' "
        f"WHEN {term} IN ('Reserved', 'SavingsPlan') OR {kind} <> 'Usage' THEN 'Committed' "
        f"WHEN {term} = 'OnDemand' OR {term} = '' THEN 'Standard' ELSE 'Other' END"
    )
    description = col("line_item_line_item_description")
    unit = col("pricing_unit")
    cost_kind = (
        f"CASE WHEN {_in(kind, ('Tax', 'Credit', 'Refund'))} THEN 'other' "
        f"ELSE {cost_kind_sql(col('product_product_family'), usage_type, description, unit)} END"
    )
    invoice = col("bill_invoice_id")
    final = f"coalesce({invoice}, '') <> ''" if invoice != "NULL" else "CAST(NULL AS BOOLEAN)"
    region = (
        f"coalesce(NULLIF({col('product_region_code')}, ''), NULLIF({col('product_region')}, ''))"
    )
    tag_exprs = [f"{sql} AS {quote(tag_column(key))}" for key, sql in tag_values.items()]
    return (
        "SELECT "
        + ", ".join(
            [
                "'aws' AS ProviderName",
                f"CAST({col('bill_payer_account_id')} AS VARCHAR) AS BillingAccountId",
                f"CAST({col('line_item_usage_account_id')} AS VARCHAR) AS SubAccountId",
                f"{_timestamp(col('line_item_usage_start_date'), col_type('line_item_usage_start_date'))} AS ChargePeriodStart",
                f"{_timestamp(col('line_item_usage_end_date'), col_type('line_item_usage_end_date'))} AS ChargePeriodEnd",
                f"CAST({unblended} AS DOUBLE) AS BilledCost",
                f"CAST({effective} AS DOUBLE) AS EffectiveCost",
                f"CAST({list_cost} AS DOUBLE) AS ListCost",
                f"CAST({col('line_item_currency_code')} AS VARCHAR) AS BillingCurrency",
                f"{category} AS ChargeCategory",
                f"{charge_kind} AS x_ChargeKind",
                f"{pricing} AS PricingCategory",
                f"CAST({service_name} AS VARCHAR) AS ServiceName",
                f"CAST({region} AS VARCHAR) AS RegionId",
                f"CAST(NULLIF({col('line_item_resource_id')}, '') AS VARCHAR) AS ResourceId",
                f"CAST({description} AS VARCHAR) AS ChargeDescription",
                f"CASE WHEN {usage} THEN TRY_CAST({col('line_item_usage_amount')} AS DOUBLE) END AS ConsumedQuantity",
                f"CASE WHEN {usage} THEN CAST({unit} AS VARCHAR) END AS ConsumedUnit",
                f"{cost_kind} AS x_CostKind",
                f"{final} AS x_Final",
                f"{tags_json} AS Tags",
                *tag_exprs,
            ]
        )
        + f" FROM {relation}"
    )


def _strip_user_json(map_expr: str) -> str:
    """A MAP's entries as a JSON object, `user_` taken off user tags' keys."""
    entries = (
        f"list_transform(map_entries({map_expr}), "
        "lambda e: {'k': regexp_replace(e.key, '^user_', ''), 'v': e.value})"
    )
    return f"coalesce(CAST(to_json(map_from_entries({entries})) AS VARCHAR), '{{}}')"


def _as_map(expr: str, duck_type: str) -> str:
    """A CUR 2.0 map column (MAP in Parquet, JSON text in CSV) as MAP(VARCHAR, VARCHAR)."""
    if duck_type.startswith("MAP"):
        return expr
    text = f"CAST({expr} AS VARCHAR)"
    return (
        f"(CASE WHEN json_valid({text}) "
        f"THEN TRY_CAST(CAST({text} AS JSON) AS MAP(VARCHAR, VARCHAR)) END)"
    )


class Cur2:
    """CUR 2.0 from AWS Data Exports (table COST_AND_USAGE_REPORT), Parquet or CSV."""

    name = "aws-cur2"

    def matches(self, columns: Mapping[str, str], path: str) -> bool:
        lower = columns_lower(columns)
        if not all(c in lower for c in REQUIRED):
            return False
        # The legacy CUR's Athena Parquet shares these names but has one column per tag.
        return "resource_tags" in lower or not any(c.startswith(ATHENA_TAG_PREFIX) for c in lower)

    def describe(self, columns: Mapping[str, str], path: str) -> str:
        kind = "Parquet" if path.lower().endswith(".parquet") else "CSV"
        return f"AWS CUR 2.0 (Data Exports, {kind})"

    def select(self, table: Table, tag_keys: Sequence[str]) -> str:
        lower = columns_lower(table.columns)

        def col(name: str) -> str:
            return quote(lower[name]) if name in lower else "NULL"

        def col_type(name: str) -> str:
            return table.columns.get(lower.get(name, ""), "")

        tags = (
            _as_map(col("resource_tags"), col_type("resource_tags"))
            if "resource_tags" in lower
            else ""
        )
        product = _as_map(col("product"), col_type("product")) if "product" in lower else ""
        service_parts = [f"NULLIF({product}['product_name'], '')"] if product else []
        service_parts += [
            f"NULLIF({col('product_servicecode')}, '')",
            col("line_item_product_code"),
        ]
        values = {}
        for key in tag_keys:
            if not tags:
                values[key] = "CAST(NULL AS VARCHAR)"
                continue
            candidates = dict.fromkeys([cur2_tag_key(key), "user_" + key, key])
            values[key] = (
                "coalesce("
                + ", ".join(f"NULLIF({tags}[{literal(k)}], '')" for k in candidates)
                + ")"
            )
        tags_json = _strip_user_json(tags) if tags else "'{}'"
        return _select(
            col,
            col_type,
            f"coalesce({', '.join(service_parts)})",
            tags_json,
            values,
            table.relation,
        )


class LegacyCur:
    """The legacy Cost and Usage Report: `lineItem/UnblendedCost` columns (CSV), or their
    snake-case Athena form (Parquet), with one column per activated user tag."""

    name = "aws-cur-legacy"

    def matches(self, columns: Mapping[str, str], path: str) -> bool:
        if all(LEGACY_NAMES[c] in columns for c in REQUIRED):
            return True
        lower = columns_lower(columns)
        return (
            all(c in lower for c in REQUIRED)
            and "resource_tags" not in lower
            and any(c.startswith(ATHENA_TAG_PREFIX) for c in lower)
        )

    def describe(self, columns: Mapping[str, str], path: str) -> str:
        if LEGACY_NAMES[REQUIRED[0]] in columns:
            return "AWS Cost and Usage Report (legacy CUR)"
        return "AWS Cost and Usage Report (legacy CUR, Athena Parquet)"

    def select(self, table: Table, tag_keys: Sequence[str]) -> str:
        cols = table.columns
        lower = columns_lower(cols)

        def name_of(name: str) -> str | None:
            legacy = LEGACY_NAMES.get(name, "")
            if legacy in cols:
                return legacy
            return lower.get(name)

        def col(name: str) -> str:
            found = name_of(name)
            return quote(found) if found else "NULL"

        def col_type(name: str) -> str:
            found = name_of(name)
            return cols.get(found, "") if found else ""

        tag_cols = _legacy_tag_columns(cols)
        entries = ", ".join(
            f"{{'k': {literal(key)}, 'v': NULLIF(CAST({quote(column)} AS VARCHAR), '')}}"
            for key, column in tag_cols.items()
        )
        tags_json = (
            f"coalesce(CAST(to_json(map_from_entries(list_filter([{entries}], "
            "lambda e: e.v IS NOT NULL))) AS VARCHAR), '{}')"
            if tag_cols
            else "'{}'"
        )
        values = {}
        for key in tag_keys:
            column = tag_cols.get(key) or _athena_column(cols, key)
            values[key] = (
                f"NULLIF(CAST({quote(column)} AS VARCHAR), '')"
                if column
                else "CAST(NULL AS VARCHAR)"
            )
        service = (
            f"coalesce(NULLIF({col('product_product_name')}, ''), {col('line_item_product_code')})"
        )
        return _select(col, col_type, service, tags_json, values, table.relation)


def _legacy_tag_columns(columns: Mapping[str, str]) -> dict[str, str]:
    """Tag key -> its column: `resourceTags/user:<key>`, or the Athena `resource_tags_user_<key>`."""
    found = {}
    for name in columns:
        if name.startswith(LEGACY_TAG_PREFIX):
            found[name[len(LEGACY_TAG_PREFIX) :]] = name
        elif name.lower().startswith(ATHENA_TAG_PREFIX):
            found.setdefault(name[len(ATHENA_TAG_PREFIX) :], name)
    return found


def _athena_column(columns: Mapping[str, str], key: str) -> str | None:
    return columns_lower(columns).get(athena_tag_column(key))


# --- the synthetic writers ---------------------------------------------------------------------

# CUR 2.0 columns the writer emits, with the types of the table dictionary (string, double,
# timestamp, map<string, string>). Maps are MAP in Parquet and JSON text in CSV.
CUR2_COLUMNS: tuple[tuple[str, str], ...] = (
    ("identity_line_item_id", "VARCHAR"),
    ("identity_time_interval", "VARCHAR"),
    ("bill_invoice_id", "VARCHAR"),
    ("bill_invoicing_entity", "VARCHAR"),
    ("bill_billing_entity", "VARCHAR"),
    ("bill_bill_type", "VARCHAR"),
    ("bill_payer_account_id", "VARCHAR"),
    ("bill_payer_account_name", "VARCHAR"),
    ("bill_billing_period_start_date", "TIMESTAMP"),
    ("bill_billing_period_end_date", "TIMESTAMP"),
    ("line_item_usage_account_id", "VARCHAR"),
    ("line_item_usage_account_name", "VARCHAR"),
    ("line_item_line_item_type", "VARCHAR"),
    ("line_item_usage_start_date", "TIMESTAMP"),
    ("line_item_usage_end_date", "TIMESTAMP"),
    ("line_item_product_code", "VARCHAR"),
    ("line_item_usage_type", "VARCHAR"),
    ("line_item_operation", "VARCHAR"),
    ("line_item_availability_zone", "VARCHAR"),
    ("line_item_resource_id", "VARCHAR"),
    ("line_item_usage_amount", "DOUBLE"),
    ("line_item_currency_code", "VARCHAR"),
    ("line_item_unblended_rate", "VARCHAR"),
    ("line_item_unblended_cost", "DOUBLE"),
    ("line_item_blended_rate", "VARCHAR"),
    ("line_item_blended_cost", "DOUBLE"),
    ("line_item_net_unblended_cost", "DOUBLE"),
    ("line_item_line_item_description", "VARCHAR"),
    ("line_item_tax_type", "VARCHAR"),
    ("line_item_legal_entity", "VARCHAR"),
    ("product", "MAP(VARCHAR, VARCHAR)"),
    ("product_product_family", "VARCHAR"),
    ("product_region_code", "VARCHAR"),
    ("product_servicecode", "VARCHAR"),
    ("product_sku", "VARCHAR"),
    ("product_instance_type", "VARCHAR"),
    ("pricing_term", "VARCHAR"),
    ("pricing_unit", "VARCHAR"),
    ("pricing_rate_code", "VARCHAR"),
    ("pricing_public_on_demand_rate", "VARCHAR"),
    ("pricing_public_on_demand_cost", "DOUBLE"),
    ("reservation_reservation_a_r_n", "VARCHAR"),
    ("reservation_effective_cost", "DOUBLE"),
    ("reservation_unused_amortized_upfront_fee_for_billing_period", "DOUBLE"),
    ("reservation_unused_recurring_fee", "DOUBLE"),
    ("savings_plan_savings_plan_a_r_n", "VARCHAR"),
    ("savings_plan_savings_plan_effective_cost", "DOUBLE"),
    ("savings_plan_total_commitment_to_date", "DOUBLE"),
    ("savings_plan_used_commitment", "DOUBLE"),
    ("resource_tags", "MAP(VARCHAR, VARCHAR)"),
)


def _line_type(c: synthetic.Charge) -> str:
    return {"Usage": "Usage", "Tax": "Tax", "Credit": "Credit", "Refund": "Refund"}.get(
        c.charge_kind, "Fee"
    )


def _period(c: synthetic.Charge) -> tuple[datetime, datetime]:
    month = c.start.replace(day=1, hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    following = (
        month.replace(year=month.year + 1, month=1)
        if month.month == 12
        else month.replace(month=month.month + 1)
    )
    return month, following


def _iso(t: datetime) -> str:
    """CUR's text form of a time (CSV): 2026-10-01T09:00:00Z."""
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _product_family(c: synthetic.Charge) -> str:
    if c.charge_kind != "Usage":
        return ""
    return {
        "compute": "ML Instance" if "SageMaker" in c.service_code else "Compute Instance",
        "storage": "Storage",
        "transfer": "Data Transfer",
        "other": "",
    }[c.cost_kind]


def cur2_rows(charges: Sequence[synthetic.Charge], csv: bool) -> list[dict]:
    """AWS charges as CUR 2.0 rows; maps and times as JSON/ISO text when `csv`."""
    out = []
    for i, c in enumerate(x for x in charges if x.provider == "aws"):
        start, end = c.start.replace(tzinfo=None), c.end.replace(tzinfo=None)
        month, following = _period(c)
        usage = c.charge_kind == "Usage"
        line_type = _line_type(c)
        tags = {cur2_tag_key(k): v for k, v in c.tags.items()}
        product = (
            {"product_name": c.service, "region": c.region}
            if c.charge_kind != "Tax"
            else {"product_name": c.service}
        )
        rate = round(c.billed_cost / c.quantity, 10) if usage and c.quantity else None
        public_rate = round(c.list_cost / c.quantity, 10) if usage and c.quantity else None
        row = {
            "identity_line_item_id": f"li-{i:06d}",
            "identity_time_interval": f"{_iso(start)}/{_iso(end)}",
            "bill_invoice_id": f"EUINUS26-{start:%m}0001" if c.final else "",
            "bill_invoicing_entity": "Amazon Web Services, Inc.",
            "bill_billing_entity": "AWS",
            "bill_bill_type": "Anniversary",
            "bill_payer_account_id": c.billing_account,
            "bill_payer_account_name": "Recipe demo",
            "bill_billing_period_start_date": _iso(month) if csv else month,
            "bill_billing_period_end_date": _iso(following) if csv else following,
            "line_item_usage_account_id": c.sub_account,
            "line_item_usage_account_name": "recipe-ml",
            "line_item_line_item_type": line_type,
            "line_item_usage_start_date": _iso(start) if csv else start,
            "line_item_usage_end_date": _iso(end) if csv else end,
            "line_item_product_code": c.service_code,
            "line_item_usage_type": c.usage_type if usage else "",
            "line_item_operation": _operation(c),
            "line_item_availability_zone": "",
            "line_item_resource_id": c.resource_id,
            "line_item_usage_amount": c.quantity if usage else 0.0,
            "line_item_currency_code": c.currency,
            "line_item_unblended_rate": "" if rate is None else f"{rate}",
            "line_item_unblended_cost": c.billed_cost,
            "line_item_blended_rate": "" if rate is None else f"{rate}",
            "line_item_blended_cost": c.billed_cost,
            "line_item_net_unblended_cost": c.billed_cost,
            "line_item_line_item_description": c.description,
            "line_item_tax_type": "USSalesTax" if c.charge_kind == "Tax" else "",
            "line_item_legal_entity": "Amazon Web Services, Inc.",
            "product": json.dumps(product) if csv else product,
            "product_product_family": _product_family(c),
            "product_region_code": c.region if c.charge_kind != "Tax" else "",
            "product_servicecode": c.service_code,
            "product_sku": c.sku_id,
            "product_instance_type": c.usage_type.split(":", 1)[1]
            if usage and ":" in c.usage_type
            else "",
            "pricing_term": ("Spot" if c.pricing == "Dynamic" else "OnDemand") if usage else "",
            "pricing_unit": c.unit if usage else "",
            "pricing_rate_code": f"{c.sku_id}.JRTCKXETXF.6YS6EN2CT7" if usage else "",
            "pricing_public_on_demand_rate": "" if public_rate is None else f"{public_rate}",
            "pricing_public_on_demand_cost": c.list_cost,
            "reservation_reservation_a_r_n": "",
            "reservation_effective_cost": 0.0,
            "reservation_unused_amortized_upfront_fee_for_billing_period": 0.0,
            "reservation_unused_recurring_fee": 0.0,
            "savings_plan_savings_plan_a_r_n": "",
            "savings_plan_savings_plan_effective_cost": 0.0,
            "savings_plan_total_commitment_to_date": 0.0,
            "savings_plan_used_commitment": 0.0,
            "resource_tags": json.dumps(tags) if csv else tags,
        }
        out.append(row)
    return out


def _operation(c: synthetic.Charge) -> str:
    if c.charge_kind != "Usage":
        return ""
    if c.cost_kind == "storage":
        return "StandardStorage"
    if c.cost_kind == "transfer":
        return "InterRegionOutbound" if "Region" in c.usage_type else "DataTransferOut"
    if "Training" in c.usage_type:
        return "RunInstance"
    if "Hosting" in c.usage_type:
        return "RunInstance"
    return "RunInstances"


def write_cur2(charges: Sequence[synthetic.Charge], path: Path) -> None:
    """The AWS charges as a CUR 2.0 export part: Parquet with MAP columns, or CSV(.gz) with
    the maps as JSON text and times as ISO text, as Data Exports writes them."""
    csv = not path.name.lower().endswith(".parquet")
    columns = CUR2_COLUMNS
    if csv:
        columns = tuple(
            (n, "VARCHAR" if t.startswith(("MAP", "TIMESTAMP")) else t) for n, t in CUR2_COLUMNS
        )
    write_rows(columns, cur2_rows(charges, csv), path)


def write_legacy_cur(charges: Sequence[synthetic.Charge], path: Path) -> None:
    """The AWS charges as a legacy CUR part (CSV or gzipped CSV): `lineItem/...` columns and
    one `resourceTags/user:<key>` column per tag key in the data."""
    cur2 = cur2_rows(charges, csv=True)
    aws = [c for c in charges if c.provider == "aws"]
    tag_keys = sorted({k for c in aws for k in c.tags})
    legacy_types = {
        "identity_line_item_id": "identity/LineItemId",
        "identity_time_interval": "identity/TimeInterval",
        "bill_bill_type": "bill/BillType",
        "bill_billing_period_start_date": "bill/BillingPeriodStartDate",
        "bill_billing_period_end_date": "bill/BillingPeriodEndDate",
    }
    names = {**legacy_types, **LEGACY_NAMES}
    types = dict(CUR2_COLUMNS)
    columns: list[tuple[str, str]] = []
    for snake, legacy in names.items():
        if snake in ("product_region",):
            columns.append((legacy, "VARCHAR"))
            continue
        duck = types.get(snake, "VARCHAR")
        columns.append((legacy, "VARCHAR" if duck.startswith(("MAP", "TIMESTAMP")) else duck))
    columns += [(LEGACY_TAG_PREFIX + k, "VARCHAR") for k in tag_keys]
    rows = []
    for c, row in zip(aws, cur2, strict=True):
        legacy = {names[k]: v for k, v in row.items() if k in names}
        legacy["product/ProductName"] = c.service
        legacy["product/region"] = row["product_region_code"]
        for k in tag_keys:
            legacy[LEGACY_TAG_PREFIX + k] = c.tags.get(k, "")
        rows.append(legacy)
    write_rows(columns, rows, path)


CUR2 = Cur2()
LEGACY_CUR = LegacyCur()
