"""The rows a report used, exported as FOCUS 1.0 (plus our x_ columns), whatever format
they came in: one file finance can load into any FOCUS tool.

FOCUS 1.0 because it is the version the FinOps Foundation's focus-validator checks
(`focus-validator --data-file F --validate-version 1.0`); the tests run it on this export.
Money is written as DOUBLE (what the validator's type check accepts), date-times in UTC
(ISO 8601 with Z in CSV). Columns the normalized rows do not carry are null where FOCUS 1.0 allows it, or derived
as the spec says (BillingPeriodStart/End: the charge's calendar month; ChargeFrequency:
Usage-Based for usage, One-Time otherwise; PricingQuantity/Unit: the consumed ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recipes.cost.billing.files import copy
from recipes.cost.report import Request, SourceSelect, rows_in_period
from recipes.errors import Problem, RecipeInputError

_PROVIDER = "CASE ProviderName WHEN 'aws' THEN 'AWS' WHEN 'azure' THEN 'Microsoft' WHEN 'gcp' THEN 'Google Cloud' ELSE ProviderName END"
_USAGE = "x_ChargeKind = 'Usage'"

# (FOCUS 1.0 column, expression over the normalized rows)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("AvailabilityZone", "CAST(NULL AS VARCHAR)"),
    ("BilledCost", "BilledCost"),
    ("BillingAccountId", "BillingAccountId"),
    ("BillingAccountName", "BillingAccountId"),
    ("BillingCurrency", "BillingCurrency"),
    (
        "BillingPeriodEnd",
        "@(CAST(date_trunc('month', ChargePeriodStart) + INTERVAL 1 MONTH AS TIMESTAMP))",
    ),
    ("BillingPeriodStart", "@(CAST(date_trunc('month', ChargePeriodStart) AS TIMESTAMP))"),
    ("ChargeCategory", "CASE WHEN x_ChargeKind = 'Refund' THEN 'Credit' ELSE ChargeCategory END"),
    ("ChargeClass", "CAST(NULL AS VARCHAR)"),
    ("ChargeDescription", "ChargeDescription"),
    ("ChargeFrequency", f"CASE WHEN {_USAGE} THEN 'Usage-Based' ELSE 'One-Time' END"),
    ("ChargePeriodEnd", "@(coalesce(ChargePeriodEnd, ChargePeriodStart + INTERVAL 1 HOUR))"),
    ("ChargePeriodStart", "@(ChargePeriodStart)"),
    ("CommitmentDiscountCategory", "CAST(NULL AS VARCHAR)"),
    ("CommitmentDiscountId", "CAST(NULL AS VARCHAR)"),
    ("CommitmentDiscountName", "CAST(NULL AS VARCHAR)"),
    ("CommitmentDiscountStatus", "CAST(NULL AS VARCHAR)"),
    ("CommitmentDiscountType", "CAST(NULL AS VARCHAR)"),
    ("ConsumedQuantity", f"CASE WHEN {_USAGE} THEN ConsumedQuantity END"),
    ("ConsumedUnit", f"CASE WHEN {_USAGE} AND ConsumedQuantity IS NOT NULL THEN ConsumedUnit END"),
    ("ContractedCost", "EffectiveCost"),
    ("ContractedUnitPrice", "CAST(NULL AS DOUBLE)"),
    ("EffectiveCost", "EffectiveCost"),
    ("InvoiceIssuerName", _PROVIDER),
    ("ListCost", "ListCost"),
    ("ListUnitPrice", "CAST(NULL AS DOUBLE)"),
    ("PricingCategory", f"CASE WHEN {_USAGE} THEN coalesce(PricingCategory, 'Standard') END"),
    ("PricingQuantity", f"CASE WHEN {_USAGE} THEN ConsumedQuantity END"),
    ("PricingUnit", f"CASE WHEN {_USAGE} AND ConsumedQuantity IS NOT NULL THEN ConsumedUnit END"),
    ("ProviderName", _PROVIDER),
    ("PublisherName", _PROVIDER),
    ("RegionId", "RegionId"),
    ("RegionName", "RegionId"),
    ("ResourceId", "nullif(ResourceId, '')"),
    ("ResourceName", "nullif(regexp_extract(ResourceId, '([^/:]+)$', 1), '')"),
    ("ResourceType", "CAST(NULL AS VARCHAR)"),
    (
        "ServiceCategory",
        "CASE x_CostKind WHEN 'compute' THEN 'Compute' WHEN 'storage' THEN 'Storage' "
        "WHEN 'transfer' THEN 'Networking' ELSE 'Other' END",
    ),
    ("ServiceName", "coalesce(ServiceName, 'Unknown')"),
    ("SkuId", "CAST(NULL AS VARCHAR)"),
    ("SkuPriceId", "CAST(NULL AS VARCHAR)"),
    ("SubAccountId", "SubAccountId"),
    ("SubAccountName", "SubAccountId"),
    ("Tags", "coalesce(Tags, '{}')"),
    ("x_ChargeKind", "x_ChargeKind"),
    ("x_CostKind", "x_CostKind"),
    ("x_Final", "x_Final"),
)


def focus(con: Any, sources: Sequence[SourceSelect], request: Request, path: Path) -> None:
    """COPY the period's rows, as FOCUS 1.0, to a CSV or Parquet file."""
    name = path.name.lower()
    if not name.endswith((".csv", ".parquet", ".csv.gz")):
        raise RecipeInputError(
            Problem(
                "the FOCUS export is written as .csv, .csv.gz or .parquet",
                file=str(path),
                field="--focus-export",
            )
        )
    csv = not name.endswith(".parquet")
    exprs = ", ".join(f'{_timestamps(expr, csv)} AS "{column}"' for column, expr in COLUMNS)
    query = f"(SELECT {exprs} FROM {rows_in_period(sources, request)})"
    try:
        copy(con, query, path)
    except OSError as exc:
        raise RecipeInputError(
            Problem(f"cannot write it: {exc.strerror}", file=str(path), field="--focus-export")
        ) from None


def _timestamps(expr: str, csv: bool) -> str:
    """`@(ts)` marks a UTC date-time: ISO 8601 with Z in CSV (FOCUS's format), a UTC
    TIMESTAMPTZ in Parquet."""
    if not expr.startswith("@("):
        return expr
    inner = expr[2:-1]
    if csv:
        return f"strftime({inner}, '%Y-%m-%dT%H:%M:%SZ')"
    return f"timezone('UTC', {inner})"
