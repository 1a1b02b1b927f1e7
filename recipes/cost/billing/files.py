"""Billing files as DuckDB tables: which files a SOURCE holds, how DuckDB reads them, and
how the synthetic writers write them.

Readable: Parquet, CSV (optionally gzipped) and JSON lines (the BigQuery export's JSON),
each alone or a directory of them (an export's many parts). A file DuckDB cannot read is
one RecipeInputError naming it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

from recipes.cost.billing.schema import Table, literal, quote
from recipes.errors import ErrorKind, Problem, ProviderError, RecipeInputError

SUFFIXES = (".parquet", ".csv", ".csv.gz", ".jsonl", ".json", ".jsonl.gz", ".json.gz")
EXPECTED = "expected Parquet, CSV, gzipped CSV or JSON lines (" + ", ".join(SUFFIXES) + ")"
# Azure and AWS write a manifest beside the data; it is not billing data.
_SKIPPED = ("manifest.json", "-manifest.json", "_manifest.json")


# Money and quantity columns of every format (lower-cased). CSV reads them as text: a
# type guessed from the first rows could be an integer and round every later cent
# (25,000 zero-cost lines first are common); each format casts them to DOUBLE, and
# detect.check_numbers finds a malformed value with its line first.
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


def connect(threads: int | None = None, memory_limit: str | None = None) -> Any:
    try:
        import duckdb  # the `cost` extra; imported here so `recipe --help` never pays for it
    except ImportError:
        raise ProviderError(
            "cost reports need duckdb: pip install '.[cost]' (or pip install 'recipe-ft[cost]')",
            ErrorKind.MISSING_EXTRA,
        ) from None

    con = duckdb.connect(":memory:")
    # Billing periods are UTC instants: a TIMESTAMPTZ cast to TIMESTAMP, and a day or a
    # month taken from it, must not move with the machine's time zone.
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = {literal(memory_limit)}")
    return con


def kind_of(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(_SKIPPED):
        return None
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz")):
        return "json"
    return None


def billing_files(location: Path) -> list[Path]:
    """The billing files at a path: the file itself, or those under a directory."""
    if location.is_file():
        if kind_of(location) is None:
            raise RecipeInputError(
                Problem(
                    "not a billing file",
                    file=str(location),
                    hint=EXPECTED,
                )
            )
        return [location]
    if location.is_dir():
        found = sorted(
            p
            for p in location.rglob("*")
            if p.is_file() and kind_of(p) and not _hidden(p.relative_to(location))
        )
        if not found:
            raise RecipeInputError(
                Problem(
                    "no billing files in this directory",
                    file=str(location),
                    hint=EXPECTED,
                )
            )
        return found
    raise RecipeInputError(Problem("no such file or directory", file=str(location)))


def _hidden(relative: Path) -> bool:
    """Hidden files and folders, and `_`-prefixed ones (Spark's `_temporary`, `_SUCCESS`):
    never parts of an export, and reading them would count spend twice."""
    return any(part.startswith((".", "_")) for part in relative.parts)


def relation(kind: str, paths: Sequence[Path], text_columns: Sequence[str] = ()) -> str:
    files = "[" + ", ".join(literal(str(p)) for p in paths) + "]"
    if kind == "parquet":
        return f"read_parquet({files}, union_by_name = true)"
    if kind == "csv":
        # DuckDB sniffs the other types; a header row is required (every provider's CSV
        # export has one).
        types = ""
        if text_columns:
            types = (
                ", types = {" + ", ".join(f"{literal(c)}: 'VARCHAR'" for c in text_columns) + "}"
            )
        return f"read_csv({files}, header = true, union_by_name = true{types})"
    return f"read_json({files}, format = 'newline_delimited', union_by_name = true)"


def open_table(con: Any, kind: str, paths: Sequence[Path]) -> Table:
    """The files as one DuckDB relation and its columns; unreadable files are named."""
    rel = relation(kind, paths)
    described = _describe(con, kind, paths, rel)
    if kind == "csv":
        money = [c for c in described if c.lower() in NUMERIC]
        if money:
            rel = relation(kind, paths, money)
            described = _describe(con, kind, paths, rel)
    return Table(rel, described, tuple(str(p) for p in paths))


def _describe(con: Any, kind: str, paths: Sequence[Path], rel: str) -> dict[str, str]:
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()
    except Exception as exc:  # duckdb.Error and its subclasses; the message names the file
        raise RecipeInputError(
            Problem(
                f"cannot read it as {kind}: {first_line(exc)}",
                file=str(paths[0])
                if len(paths) == 1
                else f"{paths[0].parent}/ ({len(paths)} files)",
            )
        ) from None
    return {row[0]: row[1] for row in rows}


def first_line(exc: BaseException) -> str:
    """DuckDB's message, its first lines (the error and its reason) on one line."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    kept = [line for line in lines if not line.startswith(("Possible fixes", "*", "LINE "))]
    text = " ".join(kept[:3]) if kept else type(exc).__name__
    return text[:500]


# --- writing (the synthetic generators) ----------------------------------------------------


def write_rows(
    columns: Sequence[tuple[str, str]],
    rows: Iterable[Mapping[str, Any]],
    path: Path,
    fmt: str | None = None,
) -> None:
    """Rows (dicts keyed by column name) written as Parquet, CSV, gzipped CSV or JSON lines
    by the path's suffix, with the given DuckDB column types.

    The rows reach DuckDB as JSON lines (read with the declared types), not one INSERT per
    row: executemany costs seconds per thousand rows with MAP and TIMESTAMP columns."""
    import json
    import tempfile

    def plain(value: Any) -> Any:
        if isinstance(value, datetime):  # UTC instants, written without an offset
            return value.replace(tzinfo=None).isoformat(sep=" ")
        if isinstance(value, date):
            return value.isoformat()
        raise TypeError(type(value).__name__)

    con = connect()
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as tmp:
        for row in rows:
            tmp.write(json.dumps({n: row.get(n) for n, _ in columns}, default=plain) + "\n")
    try:
        types = "{" + ", ".join(f"{literal(n)}: {literal(t)}" for n, t in columns) + "}"
        select = ", ".join(quote(n) for n, _ in columns)
        con.execute(
            f"CREATE TABLE t AS SELECT {select} FROM read_json({literal(tmp.name)}, "
            f"format = 'newline_delimited', columns = {types})"
        )
        copy(con, "t", path, fmt)
    finally:
        Path(tmp.name).unlink(missing_ok=True)
        con.close()


def copy(con: Any, table_sql: str, path: Path, fmt: str | None = None) -> None:
    """COPY a table or a (query) to a file; the format named, or else from the suffix."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RecipeInputError(
            Problem(f"cannot create its folder: {exc.strerror}", file=str(path))
        ) from None
    name = path.name.lower()
    if fmt == "parquet" or (fmt is None and name.endswith(".parquet")):
        options = "FORMAT parquet"
    elif name.endswith(".csv.gz"):
        options = "FORMAT csv, HEADER true, COMPRESSION gzip"
    elif fmt == "csv" or name.endswith(".csv"):
        options = "FORMAT csv, HEADER true"
    elif name.endswith((".jsonl", ".json")):
        options = "FORMAT json"
    else:
        raise ValueError(f"unknown billing file suffix: {path}")
    try:
        con.execute(f"COPY {table_sql} TO {literal(str(path))} ({options})")
    except Exception as exc:  # duckdb.IOException: a directory, no permission, a full disk
        if type(exc).__name__ not in ("IOException", "PermissionException"):
            raise
        raise RecipeInputError(
            Problem(f"cannot write it: {first_line(exc)}", file=str(path))
        ) from None
