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

from recipes.cost.billing.files import NUMERIC, billing_files, kind_of, open_table
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


def detect(con: Any, location: Path, skip: set[Path] | None = None) -> list[Detected]:
    """The files at a location, grouped into one table per (file kind, format).

    `skip` holds the resolved paths earlier sources read (a file named twice, or through
    a link, is read once); this location's files are added to it."""
    groups: dict[tuple[str, str, str], list[Path]] = {}
    found = formats()
    seen = skip if skip is not None else set()
    for path in billing_files(location):
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        kind = kind_of(path)
        assert kind is not None
        table = open_table(con, kind, [path])
        fmt = _match(found, table.columns, str(path))
        if fmt is None:
            raise RecipeInputError(_unknown(path, table.columns))
        check_numbers(con, table)
        groups.setdefault((kind, fmt.name, fmt.describe(table.columns, str(path))), []).append(path)
    by_name = {f.name: f for f in found}
    out = []
    for (kind, name, description), paths in groups.items():
        table = open_table(con, kind, paths)
        out.append(Detected(by_name[name], description, table))
    return out


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
