"""Which billing format a file is, told from its columns (and, for Azure's two cost
exports, which share their columns, from its path).

Formats are tried most specific first; the first that matches reads the file.
A file no format recognizes is one RecipeInputError naming it, the columns each
format needs, and what the file has.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recipes.cost.billing.files import billing_files, kind_of, open_table
from recipes.cost.billing.schema import Format, Table, quote
from recipes.errors import Problem, RecipeInputError

# "module:NAME" of each format, most specific first (GCP detailed before standard: it is
# standard plus `resource`; Azure amortized before actual: same columns, told by path).
FORMATS: tuple[str, ...] = (
    "recipes.cost.billing.focus:FORMAT",
    "recipes.cost.billing.aws:CUR2",
    "recipes.cost.billing.aws:LEGACY_CUR",
    "recipes.cost.billing.azure:AMORTIZED",
    "recipes.cost.billing.azure:ACTUAL",
    "recipes.cost.billing.gcp:DETAILED",
    "recipes.cost.billing.gcp:STANDARD",
)
KNOWN = (
    "FOCUS 1.0-1.3 (AWS, Azure FocusCost, GCP), AWS CUR 2.0 and legacy CUR, Azure cost "
    "details (actual, amortized), GCP BigQuery billing export (standard, detailed)"
)


def formats() -> list[Format]:
    out = []
    for ref in FORMATS:
        module, name = ref.split(":")
        try:
            out.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):  # a format not built yet is simply not tried
            continue
    return out


@dataclass(frozen=True)
class Detected:
    format: Format
    description: str
    table: Table


def detect(con: Any, location: Path, label: str | None = None) -> list[Detected]:
    """The files at a location, grouped into one table per (file kind, format)."""
    groups: dict[tuple[str, str, str], list[Path]] = {}
    found = formats()
    for path in billing_files(location):
        kind = kind_of(path)
        assert kind is not None
        table = open_table(con, kind, [path])
        fmt = _match(found, table.columns, str(path))
        if fmt is None:
            raise RecipeInputError(_unknown(path, table.columns))
        groups.setdefault((kind, fmt.name, fmt.describe(table.columns, str(path))), []).append(path)
    by_name = {f.name: f for f in found}
    out = []
    for (kind, name, description), paths in groups.items():
        table = open_table(con, kind, paths)
        if kind != "parquet":
            for path in paths:
                check_numbers(con, open_table(con, kind, [path]))
        out.append(Detected(by_name[name], description, table))
    return out


# Money and quantity columns of every format (lower-cased). In CSV and JSON a malformed
# value turns the whole column into text; it is found here, with its line, rather than
# failing later with no location (or, worse, being read as zero).
NUMERIC = frozenset(
    name.lower()
    for name in (
        # FOCUS
        "BilledCost", "EffectiveCost", "ListCost", "ContractedCost", "ConsumedQuantity",
        "PricingQuantity", "ListUnitPrice", "ContractedUnitPrice",
        # AWS CUR 2.0 and legacy CUR
        "line_item_unblended_cost", "line_item_blended_cost", "line_item_net_unblended_cost",
        "pricing_public_on_demand_cost", "reservation_effective_cost",
        "savings_plan_savings_plan_effective_cost", "line_item_usage_amount",
        "lineItem/UnblendedCost", "lineItem/BlendedCost", "lineItem/UsageAmount",
        "pricing/publicOnDemandCost", "reservation/EffectiveCost",
        "savingsPlan/SavingsPlanEffectiveCost",
        # Azure cost details
        "CostInBillingCurrency", "CostInPricingCurrency", "CostInUsd", "PayGPrice",
        "paygCostInBillingCurrency", "Quantity", "UnitPrice", "EffectivePrice",
        # GCP billing export
        "cost", "cost_at_list",
    )
)  # fmt: skip


def check_numbers(con: Any, table: Table) -> None:
    """Each money or quantity column read as text must hold only numbers (or nothing)."""
    for column, kind in table.columns.items():
        if kind != "VARCHAR" or column.lower() not in NUMERIC:
            continue
        col = quote(column)
        bad = con.execute(
            f"SELECT r, v FROM (SELECT row_number() OVER () AS r, {col} AS v "
            f"FROM {table.relation}) WHERE v IS NOT NULL AND trim(v) <> '' "
            f"AND TRY_CAST(v AS DOUBLE) IS NULL LIMIT 1"
        ).fetchone()
        if bad:
            line = (
                int(bad[0]) + 1
                if table.paths[0].lower().endswith((".csv", ".csv.gz"))
                else int(bad[0])
            )
            raise RecipeInputError(
                Problem(
                    f"{short(bad[1])} is not a number",
                    file=table.paths[0],
                    line=line,
                    field=column,
                    hint="money and quantity columns hold numbers such as 12.5 or -0.25",
                )
            )


def short(value: object) -> str:
    text = repr(str(value))
    return text if len(text) <= 60 else text[:57] + "...'"


def _match(found: Sequence[Format], columns: Mapping[str, str], path: str) -> Format | None:
    for fmt in found:
        if fmt.matches(columns, path):
            return fmt
    return None


def _unknown(path: Path, columns: Mapping[str, str]) -> Problem:
    shown = ", ".join(list(columns)[:12]) + (", ..." if len(columns) > 12 else "")
    return Problem(
        f"not a billing format this reads (its columns: {shown})",
        file=str(path),
        hint=f"expected one of: {KNOWN}; FOCUS needs BilledCost, EffectiveCost, "
        "ChargePeriodStart, BillingCurrency, ChargeCategory",
    )
