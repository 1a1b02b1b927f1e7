"""FOCUS 1.0 to 1.3, as the three clouds export it.

Sources of the column rules:
- The FOCUS specification, columns and allowed values:
  https://focus.finops.org/focus-specification/ (1.0, 1.1, 1.2, 1.3).
- AWS Data Exports, FOCUS 1.0 and 1.2 with AWS columns (`FOCUS_1_0_AWS`, `FOCUS_1_2_AWS`):
  https://docs.aws.amazon.com/cur/latest/userguide/table-dictionary-focus-1-0-aws.html;
  user-defined tags appear in `Tags` as `user:<key>`.
- Azure Cost Management's `FocusCost` export (FOCUS 1.0 / 1.0r2, x_ columns of Microsoft):
  https://learn.microsoft.com/azure/cost-management-billing/dataset-schema/cost-usage-details-focus
- Google Cloud's FOCUS BigQuery view over the billing export:
  https://cloud.google.com/billing/docs/how-to/export-data-bigquery-tables/focus

The version is told by the columns each version added: 1.1 ServiceSubcategory/SkuMeter,
1.2 InvoiceId/PricingCurrency, 1.3 ServiceProviderName/HostProviderName (which replace the
deprecated ProviderName).
`Tags` may be a JSON object (CSV, the spec's form), a MAP (AWS Parquet) or a list of
key/value structs (BigQuery).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path

from recipes.cost.billing import synthetic
from recipes.cost.billing.files import write_rows
from recipes.cost.billing.schema import (
    Table,
    cost_kind_sql,
    gcp_label_key,
    json_tag_sql,
    literal,
    map_tag_sql,
    quote,
    tag_column,
    utc_timestamp_sql,
)

# Mandatory in every FOCUS version we read; enough to tell FOCUS from a native export.
REQUIRED = ("BilledCost", "EffectiveCost", "ChargePeriodStart", "BillingCurrency", "ChargeCategory")
# AWS adds `user:` to user-defined tag keys; CUR 2.0's normalized form is `user_`.
TAG_PREFIXES = ("", "user:", "user_")

# The FOCUS 1.2 columns the writer emits (the spec's mandatory ones and the conditional
# ones we have data for), with their types.
COLUMNS_1_2: tuple[tuple[str, str], ...] = (
    ("AvailabilityZone", "VARCHAR"),
    ("BilledCost", "DECIMAL(18,6)"),
    ("BillingAccountId", "VARCHAR"),
    ("BillingAccountName", "VARCHAR"),
    ("BillingAccountType", "VARCHAR"),
    ("BillingCurrency", "VARCHAR"),
    ("BillingPeriodEnd", "TIMESTAMP"),
    ("BillingPeriodStart", "TIMESTAMP"),
    ("ChargeCategory", "VARCHAR"),
    ("ChargeClass", "VARCHAR"),
    ("ChargeDescription", "VARCHAR"),
    ("ChargeFrequency", "VARCHAR"),
    ("ChargePeriodEnd", "TIMESTAMP"),
    ("ChargePeriodStart", "TIMESTAMP"),
    ("CommitmentDiscountCategory", "VARCHAR"),
    ("CommitmentDiscountId", "VARCHAR"),
    ("CommitmentDiscountName", "VARCHAR"),
    ("CommitmentDiscountStatus", "VARCHAR"),
    ("CommitmentDiscountType", "VARCHAR"),
    ("ConsumedQuantity", "DECIMAL(18,6)"),
    ("ConsumedUnit", "VARCHAR"),
    ("ContractedCost", "DECIMAL(18,6)"),
    ("ContractedUnitPrice", "DECIMAL(18,6)"),
    ("EffectiveCost", "DECIMAL(18,6)"),
    ("InvoiceId", "VARCHAR"),
    ("InvoiceIssuerName", "VARCHAR"),
    ("ListCost", "DECIMAL(18,6)"),
    ("ListUnitPrice", "DECIMAL(18,6)"),
    ("PricingCategory", "VARCHAR"),
    ("PricingCurrency", "VARCHAR"),
    ("PricingQuantity", "DECIMAL(18,6)"),
    ("PricingUnit", "VARCHAR"),
    ("ProviderName", "VARCHAR"),
    ("PublisherName", "VARCHAR"),
    ("RegionId", "VARCHAR"),
    ("RegionName", "VARCHAR"),
    ("ResourceId", "VARCHAR"),
    ("ResourceName", "VARCHAR"),
    ("ResourceType", "VARCHAR"),
    ("ServiceCategory", "VARCHAR"),
    ("ServiceName", "VARCHAR"),
    ("ServiceSubcategory", "VARCHAR"),
    ("SkuId", "VARCHAR"),
    ("SkuMeter", "VARCHAR"),
    ("SkuPriceId", "VARCHAR"),
    ("SubAccountId", "VARCHAR"),
    ("SubAccountName", "VARCHAR"),
    ("SubAccountType", "VARCHAR"),
    ("Tags", "VARCHAR"),
)
PROVIDER_NAMES = {"aws": "AWS", "azure": "Microsoft", "gcp": "Google Cloud"}
_ACCOUNT_TYPES = {
    "aws": ("Management Account", "Member Account"),
    "azure": ("Billing Account", "Subscription"),
    "gcp": ("Billing Account", "Project"),
}


def version(columns: Mapping[str, str]) -> str:
    if "ServiceProviderName" in columns or "HostProviderName" in columns:
        return "1.3"
    if "InvoiceId" in columns or "PricingCurrency" in columns:
        return "1.2"
    if "ServiceSubcategory" in columns or "SkuMeter" in columns:
        return "1.1"
    return "1.0"


class Focus:
    name = "focus"

    def matches(self, columns: Mapping[str, str], path: str) -> bool:
        return all(c in columns for c in REQUIRED)

    def describe(self, columns: Mapping[str, str], path: str) -> str:
        flavor = ""
        if any(c.startswith("x_") for c in columns):
            if "x_ServiceCode" in columns or "x_Operation" in columns or "x_UsageType" in columns:
                flavor = " (AWS Data Exports)"
            elif "x_BillingProfileId" in columns or "x_ResourceGroupName" in columns:
                flavor = " (Azure FocusCost)"
        return f"FOCUS {version(columns)}{flavor}"

    def select(self, table: Table, tag_keys: Sequence[str]) -> str:
        cols = table.columns

        def col(name: str, default: str = "NULL") -> str:
            return quote(name) if name in cols else default

        provider_text = col("ServiceProviderName", col("ProviderName", "''"))
        provider = (
            f"CASE WHEN {provider_text} ILIKE '%amazon%' OR {provider_text} ILIKE 'aws%' THEN 'aws' "
            f"WHEN {provider_text} ILIKE '%microsoft%' OR {provider_text} ILIKE '%azure%' THEN 'azure' "
            f"WHEN {provider_text} ILIKE '%google%' OR {provider_text} ILIKE 'gcp%' THEN 'gcp' "
            f"ELSE lower({provider_text}) END"
        )
        description = col("ChargeDescription")
        charge_kind = (
            f"CASE WHEN {col('ChargeCategory')} IN ('Credit', 'Adjustment') "
            f"AND coalesce({description}, '') ILIKE '%refund%' THEN 'Refund' "
            f"ELSE {col('ChargeCategory')} END"
        )
        final = f"{col('InvoiceId')} IS NOT NULL" if "InvoiceId" in cols else "NULL"
        tags_type = cols.get("Tags", "")
        relation = table.relation
        if _is_json(tags_type) and tag_keys:
            # One JSON parse per row for every key and prefix (not one per path): on a
            # 10-million-row export this is the difference between 5 s and 2 s.
            paths = [p for key in tag_keys for p in _candidates(key)]
            listed = "[" + ", ".join(_json_path(p) for p in paths) + "]"
            relation = (
                f'(SELECT *, json_extract_string("Tags", {listed}) AS __tags FROM {relation})'
            )
            tag_exprs, i = [], 1
            for key in tag_keys:
                n = len(_candidates(key))
                items = ", ".join(f"__tags[{j}]" for j in range(i, i + n))
                tag_exprs.append(f"coalesce({items}) AS {quote(tag_column(key))}")
                i += n
        else:
            tag_exprs = [
                f"{tag_sql(tags_type, key)} AS {quote(tag_column(key))}" for key in tag_keys
            ]
        return (
            "SELECT "
            + ", ".join(
                [
                    f"{provider} AS ProviderName",
                    f"CAST({col('BillingAccountId')} AS VARCHAR) AS BillingAccountId",
                    f"CAST({col('SubAccountId')} AS VARCHAR) AS SubAccountId",
                    f"{_time(cols, 'ChargePeriodStart')} AS ChargePeriodStart",
                    f"{_time(cols, 'ChargePeriodEnd')} AS ChargePeriodEnd",
                    f"CAST({col('BilledCost')} AS DOUBLE) AS BilledCost",
                    f"CAST({col('EffectiveCost')} AS DOUBLE) AS EffectiveCost",
                    f"CAST({col('ListCost', col('BilledCost'))} AS DOUBLE) AS ListCost",
                    f"{col('BillingCurrency')} AS BillingCurrency",
                    f"{col('ChargeCategory')} AS ChargeCategory",
                    f"{charge_kind} AS x_ChargeKind",
                    f"{col('PricingCategory')} AS PricingCategory",
                    f"{col('ServiceName')} AS ServiceName",
                    f"{col('RegionId')} AS RegionId",
                    f"CAST({col('ResourceId')} AS VARCHAR) AS ResourceId",
                    f"{description} AS ChargeDescription",
                    f"CAST({col('ConsumedQuantity')} AS DOUBLE) AS ConsumedQuantity",
                    f"{col('ConsumedUnit')} AS ConsumedUnit",
                    f"{cost_kind_sql(col('ServiceCategory'), col('x_UsageType'), col('SkuMeter'), description, col('ConsumedUnit'))} AS x_CostKind",
                    f"{final} AS x_Final",
                    f"{tags_json_sql(tags_type)} AS Tags",
                    *tag_exprs,
                ]
            )
            + f" FROM {relation}"
        )


def _time(cols: Mapping[str, str], name: str) -> str:
    if name not in cols:
        return "CAST(NULL AS TIMESTAMP)"
    return utc_timestamp_sql(quote(name), cols[name])


def _is_json(tags_type: str) -> bool:
    return tags_type in ("VARCHAR", "JSON")


def _candidates(key: str) -> list[str]:
    """The spellings a tag key may have in FOCUS data: as written, with AWS's `user:`
    (or CUR's `user_`) prefix, and as a GCP label key."""
    keys = [key, gcp_label_key(key)] if gcp_label_key(key) != key else [key]
    return [p + k for k in keys for p in TAG_PREFIXES]


def _json_path(key: str) -> str:
    return literal('$."' + key.replace('"', '\\"') + '"')


def tag_sql(tags_type: str, key: str) -> str:
    """One tag key's value from a FOCUS Tags column of any of its physical types."""
    if not tags_type:
        return "CAST(NULL AS VARCHAR)"
    prefixes = _candidates(key)
    if tags_type.startswith("MAP"):
        return map_tag_sql('"Tags"', "", prefixes)
    if tags_type.startswith("STRUCT") and tags_type.endswith("[]"):
        wanted = "[" + ", ".join(literal(p) for p in prefixes) + "]"
        return f'(list_filter("Tags", lambda t: list_contains({wanted}, t.key)))[1].value'
    return json_tag_sql('"Tags"', "", prefixes)


def tags_json_sql(tags_type: str) -> str:
    """All tags as one JSON object, keys without AWS's `user:` prefix (or CUR's `user_`)."""
    if not tags_type:
        return "CAST(NULL AS VARCHAR)"
    if tags_type.startswith("MAP"):
        entries = 'map_entries("Tags")'
    elif tags_type.startswith("STRUCT") and tags_type.endswith("[]"):
        entries = '"Tags"'
    else:
        entries = 'map_entries(json_transform("Tags", \'"MAP(VARCHAR, VARCHAR)"\'))'
    stripped = (
        f"list_transform({entries}, lambda t: "
        "{'k': regexp_replace(t.key, '^user[:_]', ''), 'v': t.value})"
    )
    return f"CAST(to_json(map_from_entries({stripped})) AS VARCHAR)"


# --- the synthetic writer ------------------------------------------------------------------


def rows(charges: Sequence[synthetic.Charge]) -> list[dict]:
    """Charges as FOCUS 1.2 rows, each provider's way (AWS prefixes tag keys with `user:`)."""
    out = []
    for c in charges:
        billing_type, sub_type = _ACCOUNT_TYPES[c.provider]
        month = c.start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        next_month = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
        prefix = "user:" if c.provider == "aws" else ""
        category = "Credit" if c.charge_kind == "Refund" else c.charge_kind
        usage = c.charge_kind == "Usage"
        out.append(
            {
                "AvailabilityZone": None,
                "BilledCost": c.billed_cost,
                "BillingAccountId": c.billing_account,
                "BillingAccountName": "Recipe demo",
                "BillingAccountType": billing_type,
                "BillingCurrency": c.currency,
                "BillingPeriodEnd": next_month.replace(tzinfo=None),
                "BillingPeriodStart": month.replace(tzinfo=None),
                "ChargeCategory": category,
                "ChargeClass": None,
                "ChargeDescription": c.description,
                "ChargeFrequency": "Usage-Based" if usage else "One-Time",
                "ChargePeriodEnd": c.end.replace(tzinfo=None),
                "ChargePeriodStart": c.start.replace(tzinfo=None),
                "CommitmentDiscountCategory": None,
                "CommitmentDiscountId": None,
                "CommitmentDiscountName": None,
                "CommitmentDiscountStatus": None,
                "CommitmentDiscountType": None,
                "ConsumedQuantity": c.quantity if usage else None,
                "ConsumedUnit": c.unit if usage else None,
                "ContractedCost": c.billed_cost,
                "ContractedUnitPrice": None,
                "EffectiveCost": c.effective_cost,
                "InvoiceId": f"INV-{c.start:%Y%m}" if c.final else None,
                "InvoiceIssuerName": PROVIDER_NAMES[c.provider],
                "ListCost": c.list_cost,
                "ListUnitPrice": round(c.list_cost / c.quantity, 6)
                if usage and c.quantity
                else None,
                "PricingCategory": c.pricing if usage else None,
                "PricingCurrency": c.currency,
                "PricingQuantity": c.quantity if usage else None,
                "PricingUnit": c.unit if usage else None,
                "ProviderName": PROVIDER_NAMES[c.provider],
                "PublisherName": PROVIDER_NAMES[c.provider],
                "RegionId": c.region,
                "RegionName": c.region,
                "ResourceId": c.resource_id or None,
                "ResourceName": c.resource_id.rsplit("/", 1)[-1] if c.resource_id else None,
                "ResourceType": None,
                "ServiceCategory": _service_category(c),
                "ServiceName": c.service,
                "ServiceSubcategory": None,
                "SkuId": c.sku_id or None,
                "SkuMeter": c.usage_type,
                "SkuPriceId": c.sku_id or None,
                "SubAccountId": c.sub_account,
                "SubAccountName": c.sub_account,
                "SubAccountType": sub_type,
                "Tags": json.dumps({prefix + k: v for k, v in c.tags.items()}) if c.tags else "{}",
            }
        )
    return out


def write(charges: Sequence[synthetic.Charge], path: Path) -> None:
    write_rows(COLUMNS_1_2, rows(charges), path)


def _service_category(c: synthetic.Charge) -> str:
    return {
        "compute": "AI and Machine Learning"
        if "ML" in c.service_code or "aiplatform" in c.service_code or "SageMaker" in c.service_code
        else "Compute",
        "storage": "Storage",
        "transfer": "Networking",
        "other": "Other",
    }[c.cost_kind]


FORMAT = Focus()
