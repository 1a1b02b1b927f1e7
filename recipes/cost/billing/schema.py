"""The normalized billing row, and the seam every billing format implements.

The columns are FOCUS's where FOCUS has one (names and meanings from the FOCUS
specification, https://focus.finops.org/focus-specification/v1-2/), so a report's
rows export as FOCUS with no renaming; the few we need beyond it are `x_` columns,
as FOCUS asks of custom columns.

- BilledCost: what the invoice charges. EffectiveCost: amortized (commitments spread
  over their term): what allocation uses. ListCost: at public list price, what a
  plan's estimate (catalog list prices) is comparable to.
- ChargeCategory: FOCUS's Usage, Purchase, Tax, Credit, Adjustment. x_ChargeKind
  refines it so refunds show on their own: Usage, Purchase, Tax, Credit, Refund,
  Adjustment.
- x_CostKind: compute, storage, transfer or other: what explains a variance.
- x_Final: False for rows the provider still estimates (not yet invoiced).
- Tags: a JSON object with keys as the recipe wrote them (`user:`/`user_` prefixes of
  AWS and the legacy `resourceTags/user:` columns removed).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

NORMALIZED: tuple[tuple[str, str], ...] = (
    ("ProviderName", "VARCHAR"),  # aws | azure | gcp
    ("BillingAccountId", "VARCHAR"),
    ("SubAccountId", "VARCHAR"),  # AWS account, Azure subscription, GCP project
    ("ChargePeriodStart", "TIMESTAMP"),
    ("ChargePeriodEnd", "TIMESTAMP"),
    ("BilledCost", "DOUBLE"),
    ("EffectiveCost", "DOUBLE"),
    ("ListCost", "DOUBLE"),
    ("BillingCurrency", "VARCHAR"),
    ("ChargeCategory", "VARCHAR"),
    ("x_ChargeKind", "VARCHAR"),
    ("PricingCategory", "VARCHAR"),  # Standard | Dynamic (spot) | Committed | Other | NULL
    ("ServiceName", "VARCHAR"),
    ("RegionId", "VARCHAR"),
    ("ResourceId", "VARCHAR"),
    ("ChargeDescription", "VARCHAR"),
    ("ConsumedQuantity", "DOUBLE"),
    ("ConsumedUnit", "VARCHAR"),
    ("x_CostKind", "VARCHAR"),
    ("x_Final", "BOOLEAN"),
    ("Tags", "VARCHAR"),
)
COLUMNS = tuple(name for name, _ in NORMALIZED)
CHARGE_KINDS = ("Usage", "Purchase", "Tax", "Credit", "Refund", "Adjustment")
COST_KINDS = ("compute", "storage", "transfer", "other")
PROVIDERS = ("aws", "azure", "gcp")


def api_row(**values: Any) -> dict[str, Any]:
    """A normalized row from a cost API's answer: the columns given, None for the rest
    (an API aggregates, so it knows no resource, quantity or unit). `tag:<key>` columns
    may be given too; anything else is a mistake of the caller."""
    unknown = [k for k in values if k not in COLUMNS and not k.startswith("tag:")]
    if unknown:
        raise TypeError(f"not normalized columns: {unknown}")
    return {name: None for name in COLUMNS} | values


def tag_column(key: str) -> str:
    """The name of the column a format gives for a requested tag key."""
    return f"tag:{key}"


@dataclass(frozen=True)
class Table:
    """Files of one format as DuckDB reads them."""

    relation: str  # a DuckDB table expression: read_parquet([...]) or read_csv([...], ...)
    columns: Mapping[str, str]  # column name -> DuckDB type, as DuckDB read them
    paths: tuple[str, ...]


class Format(Protocol):
    """One billing format. Implementations hold no state."""

    name: str  # short id, e.g. "focus", "aws-cur2"

    def matches(self, columns: Mapping[str, str], path: str) -> bool:
        """Whether a file with these columns (and this path) is in this format."""
        ...

    def describe(self, columns: Mapping[str, str], path: str) -> str:
        """The format as the report names it, e.g. "FOCUS 1.2 (AWS FOCUS_1_2_AWS)"."""
        ...

    def select(self, table: Table, tag_keys: Sequence[str]) -> str:
        """A SELECT giving every NORMALIZED column, in any order, plus one VARCHAR column
        `tag_column(k)` per requested key, from table.relation. DuckDB prunes the
        columns a report does not use, so computing all of them costs nothing."""
        ...


# --- helpers the formats share ------------------------------------------------------------


def quote(identifier: str) -> str:
    """A DuckDB identifier, quoted."""
    return '"' + identifier.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A DuckDB string literal."""
    return "'" + text.replace("'", "''") + "'"


def gcp_label_key(key: str) -> str:
    """A tag key as a GCP label key (recipes.tags.GCP: lower case, [a-z0-9_-])."""
    return re.sub(r"[^a-z0-9_\-]", "_", key.lower())


def json_tag_sql(tags_expr: str, key: str, prefixes: Sequence[str] = ("",)) -> str:
    """The value of a tag key from a JSON-object column, trying each key prefix.

    `$."key"` is DuckDB's JSON path for a key with any characters."""
    paths = [literal('$."' + (p + key).replace('"', '\\"') + '"') for p in prefixes]
    parts = [f"json_extract_string({tags_expr}, {path})" for path in paths]
    return parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"


def map_tag_sql(map_expr: str, key: str, prefixes: Sequence[str] = ("",)) -> str:
    """The value of a tag key from a MAP(VARCHAR, VARCHAR) column (CUR 2.0 resource_tags)."""
    parts = [f"{map_expr}[{literal(p + key)}]" for p in prefixes]
    return parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"


def utc_timestamp_sql(expr: str, duck_type: str) -> str:
    """A UTC TIMESTAMP from a date-time column of whatever type DuckDB gave it. Text is
    parsed as ISO 8601 with its offset (`Z`, `+02:00`, ` UTC`; none means UTC, the
    session's zone): a row whose text is no date-time gets NULL, and the report refuses
    it, naming the source."""
    if duck_type.startswith("TIMESTAMP WITH TIME ZONE"):
        return f"timezone('UTC', {expr})"
    if duck_type.startswith(("TIMESTAMP", "DATE")):
        return f"CAST({expr} AS TIMESTAMP)"
    return f"CAST(TRY_CAST(CAST({expr} AS VARCHAR) AS TIMESTAMPTZ) AS TIMESTAMP)"


def cost_kind_sql(*texts: str) -> str:
    """compute | storage | transfer | other, from the provider's usage description and unit.

    Transfer and storage are matched first: a storage line is also billed per hour
    (e.g. AWS `VolumeUsage` in GB-Mo, GCP `PD Capacity`), a transfer line per GB."""
    text = (
        "lower(concat_ws(' ', "
        + ", ".join(f"coalesce(CAST({t} AS VARCHAR), '')" for t in texts)
        + "))"
    )
    return (
        f"CASE WHEN regexp_matches({text}, 'datatransfer|data transfer|egress|bandwidth|"
        f"network|inter-region|internet') THEN 'transfer' "
        f"WHEN regexp_matches({text}, 'storage|volume|gb-mo|byte-hrs|bytehrs|disk|capacity|"
        f"snapshot|gibibyte month|gb/month|1 gb/month') THEN 'storage' "
        f"WHEN regexp_matches({text}, 'hrs|hour|instance|vcpu|core|gpu|ram|compute|training|"
        f"inference|node|vm') THEN 'compute' "
        f"ELSE 'other' END"
    )


def columns_lower(columns: Mapping[str, str]) -> dict[str, str]:
    """Column names lower-cased -> the name as the file spells it (CSV headers vary in case)."""
    return {name.lower(): name for name in columns}
