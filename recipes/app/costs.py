"""Cost reports for finance: billing data from files, cloud storage or cost APIs, grouped by
tag and dimension, reconciled with the estimates the ledger kept.

SOURCE is a local file or directory, a storage URI (s3://, gs://, azureml://: the export
files are copied here through the cloud's SDK first), or a cost API: `aws-ce:` (Cost
Explorer), `azure-cost:<scope>` (Cost Management Query), `bq:<project.dataset.table>`
(the GCP billing export in BigQuery).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from providers import registry
from providers.base import BillingQuery, BillingRows
from recipes.app.ledger import EstimateRow, Ledger
from recipes.cost import report as engine
from recipes.cost.billing import detect, files
from recipes.cost.billing.schema import NORMALIZED, quote, tag_column
from recipes.errors import Problem, RecipeInputError


@dataclass(frozen=True)
class ReportOptions:
    sources: Sequence[str]
    by: Sequence[str] = ("cost_center",)
    start: date | None = None
    end: date | None = None
    currency: str | None = None
    rates: Mapping[str, float] = field(default_factory=dict)
    title: str = "Cost report"
    reconcile: bool = True
    focus_export: Path | None = None
    threads: int | None = None
    memory_limit: str | None = None


def report(options: ReportOptions, **clients: Any) -> dict[str, Any]:
    """The report as a JSON-able dict (recipes.cost.report.build); clients go to the
    billing backends (tests inject them)."""
    problems = engine.check_keys(options.by)
    if options.start and options.end and options.start > options.end:
        problems.append(
            Problem("--from is after --to", file="command line", field="--from", hint="swap them")
        )
    if problems:
        raise RecipeInputError(problems)
    request = engine.Request(
        by=tuple(options.by),
        start=options.start,
        end=options.end,
        currency=options.currency.upper() if options.currency else None,
        rates={k.upper(): v for k, v in options.rates.items()},
        expected=expected() if options.reconcile else (),
        title=options.title,
    )
    con = files.connect(options.threads, options.memory_limit)
    with tempfile.TemporaryDirectory(prefix="recipe-billing-") as tmp:
        selects: list[engine.SourceSelect] = []
        seen: set[Path] = set()  # a file named twice (or through a link) is read once
        for i, source in enumerate(options.sources):
            selects += _read(con, source, request, Path(tmp) / str(i), clients, seen)
        selects = pair_azure_exports(selects)
        result = engine.build(con, selects, request)
        if options.focus_export:
            from recipes.cost import export

            export.focus(con, selects, request, options.focus_export)
            result["focus_export"] = str(options.focus_export)
    con.close()
    return result


def _read(
    con: Any,
    source: str,
    request: engine.Request,
    scratch: Path,
    clients: Mapping[str, Any],
    seen: set[Path],
) -> list[engine.SourceSelect]:
    tags = engine.needed_tags(request)
    provider, api = _scheme(source)
    if provider and api:
        return [_api(con, source, provider, request, scratch, clients)]
    if provider:
        scratch.mkdir(parents=True)
        backend = registry.billing_backend(provider, **clients.get(provider, {}))
        backend.download(source, scratch)
        location, label = scratch, source
    else:
        location, label = Path(source).expanduser(), source
    out = []
    for found in detect.detect(con, location, seen):
        count = len(found.table.paths)
        if provider:
            named = label
        elif count == 1:
            named = found.table.paths[0]  # a directory's one file of this format: name it
        else:
            named = f"{label} ({count} files)"
        out.append(
            engine.SourceSelect(
                label=named,
                format=found.description,
                sql=found.format.select(found.table, tags),
                files=count,
                kind=found.format.name,
            )
        )
    return out


def pair_azure_exports(selects: list[engine.SourceSelect]) -> list[engine.SourceSelect]:
    """Azure's actual-cost and amortized-cost exports are the same spend twice. Read
    together, the actual export gives billed (and list) cost, the amortized one effective
    cost, and the other figure of each is zeroed, so nothing is counted twice."""
    kinds = {s.kind for s in selects}
    if not {"azure-actual", "azure-amortized"} <= kinds:
        return selects
    out = []
    for s in selects:
        if s.kind == "azure-actual":
            sql = f"SELECT * REPLACE (0.0 AS EffectiveCost) FROM ({s.sql})"
            note = (
                f"{s.label}: Azure actual cost, read beside the amortized export: its billed "
                "and list cost count, its effective cost is the amortized export's"
            )
        elif s.kind == "azure-amortized":
            sql = f"SELECT * REPLACE (0.0 AS BilledCost, 0.0 AS ListCost) FROM ({s.sql})"
            note = f"{s.label}: Azure amortized cost: its effective cost counts"
        else:
            out.append(s)
            continue
        out.append(replace(s, sql=sql, notes=(*s.notes, note)))
    return out


def _scheme(source: str) -> tuple[str | None, bool]:
    """(provider, is an API) for a cloud SOURCE; (None, False) for a local path."""
    for prefix, provider in registry.billing_schemes().items():
        if source.startswith(prefix):
            return provider, not prefix.endswith("://")
    if "://" in source:
        raise RecipeInputError(
            Problem(
                f"{source.split('://')[0]}:// is not a billing source",
                file=source,
                hint="use a local file or directory, or one of "
                + ", ".join(registry.billing_schemes()),
            )
        )
    return None, False


def _api(
    con: Any,
    source: str,
    provider: str,
    request: engine.Request,
    scratch: Path,
    clients: Mapping[str, Any],
) -> engine.SourceSelect:
    today = datetime.now(timezone.utc).date()
    start = request.start or today.replace(day=1)
    end = request.end or today
    backend = registry.billing_backend(provider, **clients.get(provider, {}))
    answer = backend.query(source, BillingQuery(start, end + timedelta(days=1), request.tag_keys))
    table = f"api_{scratch.name}"
    load_rows(con, table, answer, engine.needed_tags(request))
    return engine.SourceSelect(
        label=source, format=answer.format, sql=f"SELECT * FROM {table}", notes=answer.notes
    )


def load_rows(con: Any, table: str, answer: BillingRows, tags: Sequence[str]) -> None:
    """An API's normalized rows as a DuckDB table (small: the API aggregates)."""
    import json

    columns = [*NORMALIZED, *((tag_column(k), "VARCHAR") for k in tags)]
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {table} ("
        + ", ".join(f"{quote(n)} {t}" for n, t in columns)
        + ")"
    )
    names = [n for n, _ in columns]

    def value(row: Mapping[str, Any], name: str) -> Any:
        v = row.get(name)
        if name == "Tags" and isinstance(v, Mapping):
            return json.dumps(dict(v))
        return v

    if answer.rows:
        con.executemany(
            f"INSERT INTO {table} VALUES ({', '.join('?' for _ in names)})",
            [[value(r, n) for n in names] for r in answer.rows],
        )


def expected() -> list[engine.Expected]:
    """The ledger's estimates, with each run's submitted -> finished window."""
    ledger = Ledger()
    if not ledger.path.exists():
        return []
    times = ledger.run_times()
    now = time.time()
    out = []
    for e in ledger.estimates():
        window = None
        if e.kind == "run" and e.id in times:
            submitted, changed, state = times[e.id]
            window = (submitted, changed if state.terminal else now)
        out.append(_expected(e, window))
    return out


def _expected(e: EstimateRow, window: tuple[float, float] | None) -> engine.Expected:
    return engine.Expected(
        kind=e.kind,
        id=e.id,
        provider=e.provider,
        currency=e.currency,
        usd=e.usd,
        hours=e.hours,
        detail=e.detail,
        created_at=e.created_at,
        ended_at=e.ended_at,
        window=window,
    )


# --- outputs ----------------------------------------------------------------------------------


MONEY_COLUMNS = ("billed_cost", "effective_cost", "list_cost", "share", "untagged", "currency")


def key_columns(by: Sequence[str]) -> list[str]:
    """Column names for the keys; a key named like a money column (a `currency` tag) gets
    a `key_` prefix rather than being overwritten."""
    return [f"key_{k}" if k in MONEY_COLUMNS else k for k in by]


def spreadsheet_safe(value: Any) -> Any:
    """A tag value a spreadsheet would run as a formula (=, +, -, @) gets a leading
    apostrophe: CSV files from here are opened by finance in spreadsheets."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def group_rows(result: Mapping[str, Any], csv: bool = False) -> list[dict[str, Any]]:
    """The groups as flat rows (CSV and Parquet): one column per key, then the money."""
    rows = []
    names = key_columns(result["by"])
    for g in result["groups"]:
        row = {
            name: spreadsheet_safe(g["key"][k]) if csv else g["key"][k]
            for name, k in zip(names, result["by"], strict=True)
        }
        row |= {
            "billed_cost": g["billed_cost"],
            "effective_cost": g["effective_cost"],
            "list_cost": g["list_cost"],
            "share": g["share"],
            "untagged": bool(g.get("untagged")),
            "currency": result["currency"],
        }
        rows.append(row)
    return rows


def write_table(result: Mapping[str, Any], path: Path, fmt: str) -> None:
    """CSV or Parquet of the groups."""
    by = key_columns(result["by"])
    columns = [(k, "VARCHAR") for k in by] + [
        ("billed_cost", "DOUBLE"),
        ("effective_cost", "DOUBLE"),
        ("list_cost", "DOUBLE"),
        ("share", "DOUBLE"),
        ("untagged", "BOOLEAN"),
        ("currency", "VARCHAR"),
    ]
    rows = [
        {k: (str(v) if k in by and v is not None else v) for k, v in r.items()}
        for r in group_rows(result, csv=fmt == "csv")
    ]
    try:
        files.write_rows(columns, rows, path, fmt)
    except OSError as exc:
        raise RecipeInputError(
            Problem(f"cannot write it: {exc.strerror}", file=str(path), field="--output")
        ) from None
