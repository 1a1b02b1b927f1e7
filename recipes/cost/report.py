"""A cost report from normalized billing rows: groups, money, coverage, reconciliation.

One pass over the billing data (DuckDB, pushdown into the files) builds a small
aggregate by day and every dimension and tag the report needs; everything else is
computed from that aggregate. Money:
- billed (what the invoice says), effective (amortized: what allocation uses) and list
  (public prices: what a plan's estimate is comparable to), per group and in total;
- credits, refunds and tax stay their own charge kinds, shown apart, never netted away;
- one currency per report: several are refused unless each is given a rate;
- rows the provider has not invoiced yet are flagged (billing data lags; the latest
  charge in the data is shown).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from typing import Any

from recipes.cost.billing.files import first_line
from recipes.cost.billing.schema import literal, quote, tag_column
from recipes.errors import Problem, RecipeInputError

# Dimensions a report can group by; any other key is a tag key.
DIMENSIONS: dict[str, str] = {
    "provider": "ProviderName",
    "service": "ServiceName",
    "region": "RegionId",
    "account": "SubAccountId",
    "charge": "x_ChargeKind",
    "cost_kind": "x_CostKind",
    "pricing": "PricingCategory",
    "day": "strftime(day, '%Y-%m-%d')",
    "month": "strftime(day, '%Y-%m')",
}
# Tags every report reads besides the requested ones: reconciliation and the HTML pivot.
ALWAYS_TAGS = ("run_id", "endpoint", "cost_center")
HOUR_UNITS = ("hrs", "hr", "hour", "hours", "1 hour", "h", "hour(s)")
_TAG_KEY = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")


@dataclass(frozen=True)
class SourceSelect:
    """One source as the engine reads it: a SELECT of normalized rows plus tag columns."""

    label: str  # the source as the user named it (a file, a directory, a URI)
    format: str  # the format as detected, e.g. "FOCUS 1.2 (AWS Data Exports)"
    sql: str
    files: int = 0
    notes: tuple[str, ...] = ()
    kind: str = ""  # the format's short name, e.g. "azure-actual"; "" for an API source


@dataclass(frozen=True)
class Expected:
    """A plan's estimate of a run or an endpoint (from the ledger)."""

    kind: str  # run | endpoint
    id: str
    provider: str
    currency: str
    usd: float  # run: expected cost; endpoint: per hour at min_replicas
    hours: float | None
    detail: Mapping[str, Any]
    created_at: float
    ended_at: float | None = None
    window: tuple[float, float] | None = None  # a run's submitted -> finished (node-hours)


@dataclass(frozen=True)
class Request:
    by: tuple[str, ...]
    start: date | None = None  # inclusive
    end: date | None = None  # inclusive
    currency: str | None = None
    rates: Mapping[str, float] = field(default_factory=dict)  # currency -> report currency
    expected: Sequence[Expected] = ()
    title: str = "Cost report"
    now: datetime | None = None

    @property
    def tag_keys(self) -> tuple[str, ...]:
        return tuple(k for k in self.by if k not in DIMENSIONS)


def check_keys(by: Sequence[str]) -> list[Problem]:
    problems = []
    for key in by:
        if not _TAG_KEY.match(key):
            problems.append(
                Problem(
                    f"{key!r} is not a tag key or a dimension",
                    file="command line",
                    field="--by",
                    hint="a tag key (1-128 printable characters) or one of "
                    + ", ".join(DIMENSIONS),
                )
            )
    if len(set(by)) != len(by):
        problems.append(Problem("a key is repeated", file="command line", field="--by"))
    return problems


def needed_tags(request: Request) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*request.tag_keys, *ALWAYS_TAGS]))


# --- the one pass -----------------------------------------------------------------------------


def rows_in_period(sources: Sequence[SourceSelect], request: Request) -> str:
    """Every source's normalized rows in the requested period, as one subquery."""
    union = " UNION ALL BY NAME ".join(
        f"SELECT *, {i} AS x_Source FROM ({s.sql})" for i, s in enumerate(sources)
    )
    where = []
    if request.start:
        where.append(f"ChargePeriodStart >= TIMESTAMP {literal(request.start.isoformat())}")
    if request.end:
        after = (request.end + timedelta(days=1)).isoformat()
        where.append(f"ChargePeriodStart < TIMESTAMP {literal(after)}")
    if not where:
        return f"({union}) AS rows"
    # Rows with no readable date are kept, so that they are refused rather than dropped.
    return f"({union}) AS rows WHERE ChargePeriodStart IS NULL OR ({' AND '.join(where)})"


def aggregate(con: Any, sources: Sequence[SourceSelect], request: Request) -> None:
    """CREATE TEMP TABLE agg: the billing rows summed by day and every needed column."""
    tags = needed_tags(request)
    tag_cols = ", ".join(quote(tag_column(k)) for k in tags)
    units = ", ".join(literal(u) for u in HOUR_UNITS)
    sql = f"""
        CREATE OR REPLACE TEMP TABLE agg AS
        SELECT
            x_Source, CAST(ChargePeriodStart AS DATE) AS day,
            ProviderName, ServiceName, RegionId, SubAccountId, x_ChargeKind, x_CostKind,
            PricingCategory, upper(trim(BillingCurrency)) AS BillingCurrency, x_Final AS final,
            CASE WHEN ProviderName = 'azure'
                 THEN nullif(regexp_extract(ResourceId, '/computes/([^/]+)', 1), '') END
                 AS cluster,
            {tag_cols},
            sum(BilledCost) AS billed, sum(EffectiveCost) AS effective, sum(ListCost) AS list,
            sum(CASE WHEN x_CostKind = 'compute' AND lower(ConsumedUnit) IN ({units})
                     THEN ConsumedQuantity END) AS hours,
            count(*) AS rows,
            max(ChargePeriodStart) AS latest
        FROM {rows_in_period(sources, request)}
        GROUP BY ALL
    """
    try:
        con.execute(sql)
    except Exception as exc:  # duckdb errors: a value a format could not convert, a bad file
        raise RecipeInputError(_data_problem(exc, sources)) from None
    _check_rows(con, sources)


def _check_rows(con: Any, sources: Sequence[SourceSelect]) -> None:
    """Rows no report can place are refused, naming their source: no charge date, a cost
    that is not a finite number, no currency."""
    problems = []
    for source, undated, unfinite, uncurrency in con.execute(
        "SELECT x_Source, sum(rows) FILTER (WHERE day IS NULL), "
        "sum(rows) FILTER (WHERE NOT (isfinite(coalesce(billed, 0)) "
        "AND isfinite(coalesce(effective, 0)) AND isfinite(coalesce(list, 0)))), "
        "sum(rows) FILTER (WHERE coalesce(BillingCurrency, '') = '') "
        "FROM agg GROUP BY 1 ORDER BY 1"
    ).fetchall():
        label = sources[source].label
        if undated:
            problems.append(
                Problem(
                    f"{int(undated):,} rows have no readable charge date",
                    file=label,
                    field="ChargePeriodStart (the format's usage start date column)",
                    hint="dates as the provider exports them: ISO 8601 (FOCUS, CUR, GCP) or "
                    "MM/DD/YYYY (Azure cost details)",
                )
            )
        if unfinite:
            problems.append(
                Problem(
                    f"{int(unfinite):,} rows have a cost that is NaN or infinite",
                    file=label,
                    field="BilledCost, EffectiveCost or ListCost (the format's cost columns)",
                    hint="costs are finite numbers",
                )
            )
        if uncurrency:
            problems.append(
                Problem(
                    f"{int(uncurrency):,} rows have no currency",
                    file=label,
                    field="BillingCurrency (the format's currency column)",
                    hint="an ISO 4217 code such as USD",
                )
            )
    if problems:
        raise RecipeInputError(problems)


def _data_problem(exc: BaseException, sources: Sequence[SourceSelect]) -> Problem:
    text = first_line(exc)
    named = [s.label for s in sources if s.label in str(exc)]
    return Problem(
        f"cannot read the billing data: {text}",
        file=named[0] if named else ", ".join(s.label for s in sources)[:300],
        hint="a malformed value: a cost, a quantity, a date or the tags (JSON); "
        "`recipe cost report --help` lists the formats read",
    )


# --- the report from the aggregate ------------------------------------------------------------


def build(con: Any, sources: Sequence[SourceSelect], request: Request) -> dict[str, Any]:
    aggregate(con, sources, request)
    currency, notes = _currency(con, request)
    _money_view(con, currency, request.rates)
    total = _one(con, "SELECT sum(billed), sum(effective), sum(list), sum(rows) FROM money")
    rows = int(total[3] or 0)
    if rows == 0 and (request.start or request.end):
        raise RecipeInputError(
            Problem(
                "no billing rows in the period",
                file=", ".join(s.label for s in sources)[:300],
                field="--from/--to",
                hint="widen --from/--to; `recipe cost report SOURCE` without them reports "
                "the data's whole period",
            )
        )
    if rows == 0:
        raise RecipeInputError(
            Problem(
                "the sources hold no billing rows", file=", ".join(s.label for s in sources)[:300]
            )
        )
    first, last, latest = _one(con, "SELECT min(day), max(day), max(latest) FROM money")
    period = {
        "from": (request.start or first).isoformat(),
        "to": (request.end or last).isoformat(),
    }
    now = request.now or datetime.now(timezone.utc)
    report: dict[str, Any] = {
        "title": request.title,
        "generated_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "currency": currency,
        "period": period,
        "by": list(request.by),
        "groups": _groups(con, request, float(total[0] or 0)),
        "total": _money(total),
        "charges": _charges(con),
        "untagged": _untagged(con, request, float(total[0] or 0)),
        "not_final": _not_final(con, now),
        "latest_charge": latest.isoformat() if latest else None,
        "sources": _sources(con, sources),
        "tag_coverage": _coverage(con, request),
        "timeline": _timeline(con),
        "by_cost_center_month": _cost_center_month(con),
        "reconciliation": reconcile(con, request, period, currency),
        "rows": rows,
        "notes": [],
    }
    report["notes"] = (
        notes
        + [n for s in sources for n in s.notes]
        + _overlap_notes(con, sources)
        + _coverage_notes(report)
        + _reconcile_notes(report, request)
    )
    return report


def _sources(con: Any, sources: Sequence[SourceSelect]) -> list[dict[str, Any]]:
    found = {
        i: (providers, rows)
        for i, providers, rows in con.execute(
            "SELECT x_Source, string_agg(DISTINCT ProviderName, ', '), sum(rows) FROM agg "
            "GROUP BY 1"
        ).fetchall()
    }
    return [
        {
            "source": s.label,
            "format": s.format,
            "files": s.files,
            "provider": found.get(i, (None, 0))[0],
            "rows": int(found.get(i, (None, 0))[1] or 0),
        }
        for i, s in enumerate(sources)
    ]


def _overlap_notes(con: Any, sources: Sequence[SourceSelect]) -> list[str]:
    """Two sources with the same account's charges on the same days are most likely two
    exports of the same spend (a FOCUS and a CUR export, a copy beside the original)."""
    if len(sources) < 2:
        return []
    rows = con.execute(
        "WITH d AS (SELECT DISTINCT x_Source, ProviderName, SubAccountId, day FROM agg "
        "WHERE day IS NOT NULL) "
        "SELECT a.x_Source, b.x_Source, a.ProviderName, a.SubAccountId, count(*) FROM d a "
        "JOIN d b ON a.ProviderName = b.ProviderName "
        "AND a.SubAccountId IS NOT DISTINCT FROM b.SubAccountId AND a.day = b.day "
        "AND a.x_Source < b.x_Source GROUP BY 1, 2, 3, 4 ORDER BY 1, 2"
    ).fetchall()
    return [
        f"{sources[a].label} and {sources[b].label} both hold {provider} account "
        f"{account or '(none)'} on {days} days: if they are two exports of the same spend, "
        "it is counted twice; report one of them"
        for a, b, provider, account, days in rows
    ]


def _reconcile_notes(report: dict[str, Any], request: Request) -> list[str]:
    skipped = {e.currency for e in request.expected if e.currency.upper() != report["currency"]} - {
        c for c in request.rates
    }
    return [
        f"estimates in {c} are not compared with actuals in {report['currency']}: pass "
        f"--rate {c}=RATE to convert them"
        for c in sorted(skipped)
    ]


def _one(con: Any, sql: str) -> tuple:
    return con.execute(sql).fetchone()


def _money(row: Sequence[Any]) -> dict[str, float]:
    return {
        "billed_cost": round(float(row[0] or 0), 6),
        "effective_cost": round(float(row[1] or 0), 6),
        "list_cost": round(float(row[2] or 0), 6),
    }


def _currency(con: Any, request: Request) -> tuple[str, list[str]]:
    found = con.execute(
        "SELECT BillingCurrency, sum(rows) FROM agg GROUP BY 1 ORDER BY 2 DESC"
    ).fetchall()
    currencies = [c or "" for c, _ in found]
    target = request.currency or (currencies[0] if currencies else "USD")
    others = [c for c in currencies if c != target]
    missing = [c for c in others if c not in request.rates]
    if missing:
        counts = ", ".join(f"{c or '(none)'} ({n:,} rows)" for c, n in found)
        what = (
            f"the billing data is in {counts}, not {target}"
            if target not in currencies
            else f"the billing data mixes currencies: {counts}; one report has one currency"
        )
        raise RecipeInputError(
            Problem(
                what,
                file="command line",
                field="--rate",
                hint=f"convert with a stated rate, e.g. --rate {missing[0] or 'EUR'}="
                f"1.08 (1 {missing[0] or 'EUR'} = 1.08 {target}), or report each "
                "currency's sources apart",
            )
        )
    notes = [
        f"converted {c} to {target} at the stated rate {request.rates[c]} "
        f"(1 {c} = {request.rates[c]} {target})"
        for c in others
    ]
    return target, notes


def _money_view(con: Any, currency: str, rates: Mapping[str, float]) -> None:
    """`money`: the aggregate in the report's currency."""
    if not rates:
        con.execute("CREATE OR REPLACE TEMP VIEW money AS SELECT * FROM agg")
        return
    factor = (
        "CASE BillingCurrency "
        + " ".join(
            f"WHEN {literal(c)} THEN {float(r)!r}" for c, r in rates.items() if c != currency
        )
        + " ELSE 1.0 END"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW money AS SELECT * REPLACE ("
        f"billed * {factor} AS billed, effective * {factor} AS effective, "
        f"list * {factor} AS list) FROM agg"
    )


def _key_expr(key: str) -> str:
    return DIMENSIONS.get(key) or quote(tag_column(key))


def _untagged_cond(request: Request) -> str | None:
    keys = request.tag_keys
    if not keys:
        return None
    return " AND ".join(f"{quote(tag_column(k))} IS NULL" for k in keys)


def _groups(con: Any, request: Request, total: float) -> list[dict[str, Any]]:
    if not request.by:
        return []
    exprs = [f"{_key_expr(k)} AS k{i}" for i, k in enumerate(request.by)]
    untagged = _untagged_cond(request) or "FALSE"
    n = len(request.by)
    keys_order = ", ".join(str(i + 1) for i in range(n))
    sql = (
        f"SELECT {', '.join(exprs)}, sum(billed), sum(effective), sum(list), "
        f"bool_and({untagged}) FROM money GROUP BY {keys_order} "
        f"ORDER BY {n + 1} DESC, {keys_order}"
    )
    out = []
    for row in con.execute(sql).fetchall():
        key = {k: row[i] for i, k in enumerate(request.by)}
        group = {"key": key, **_money(row[n : n + 3])}
        group["share"] = round(group["billed_cost"] / total, 6) if total else None
        if request.tag_keys and row[n + 3]:
            group["untagged"] = True
        out.append(group)
    return out


def _charges(con: Any) -> list[dict[str, Any]]:
    rows = con.execute(
        "SELECT x_ChargeKind, sum(billed), sum(effective), sum(list) FROM money GROUP BY 1 "
        "ORDER BY CASE x_ChargeKind WHEN 'Usage' THEN 0 WHEN 'Purchase' THEN 1 "
        "WHEN 'Credit' THEN 2 WHEN 'Refund' THEN 3 WHEN 'Adjustment' THEN 4 "
        "WHEN 'Tax' THEN 5 ELSE 6 END"
    ).fetchall()
    return [{"kind": r[0] or "(none)", **_money(r[1:])} for r in rows]


def _untagged(con: Any, request: Request, total: float) -> dict[str, Any] | None:
    cond = _untagged_cond(request)
    if cond is None:
        return None
    row = _one(
        con,
        f"SELECT sum(billed), sum(effective), sum(list), "
        f"sum(billed) FILTER (WHERE x_ChargeKind NOT IN ('Usage', 'Purchase')) "
        f"FROM money WHERE {cond}",
    )
    money = _money(row)
    return {
        "keys": list(request.tag_keys),
        **money,
        "share": round(money["billed_cost"] / total, 6) if total else None,
        # Credits, refunds and tax are account-level lines: no resource, so no tags.
        "account_level": round(float(row[3] or 0), 6),
    }


def _not_final(con: Any, now: datetime) -> dict[str, Any]:
    """Rows the data marks as not invoiced; where it cannot say (GCP, FOCUS before 1.2),
    the current month's rows, which the provider may still revise."""
    month = now.date().replace(day=1).isoformat()
    row = _one(
        con,
        f"SELECT sum(billed), sum(rows), min(day) FROM money "
        f"WHERE coalesce(final, day < DATE {literal(month)}) = FALSE",
    )
    return {
        "billed_cost": round(float(row[0] or 0), 6),
        "rows": int(row[1] or 0),
        "since": row[2].isoformat() if row[2] else None,
    }


def _coverage(con: Any, request: Request) -> list[dict[str, Any]]:
    out = []
    for key in request.tag_keys:
        col = quote(tag_column(key))
        for provider, tagged, rows in con.execute(
            f"SELECT ProviderName, sum(rows) FILTER (WHERE {col} IS NOT NULL), sum(rows) "
            f"FROM money GROUP BY 1 ORDER BY 1"
        ).fetchall():
            entry = {
                "key": key,
                "provider": provider,
                "rows_tagged": int(tagged or 0),
                "rows": int(rows),
            }
            if provider == "aws":
                # A tag appears in AWS billing data only once activated as a cost allocation
                # tag (and only from then on): none at all means it is not activated.
                entry["activated"] = bool(tagged)
            out.append(entry)
    return out


def _coverage_notes(report: dict[str, Any]) -> list[str]:
    notes = []
    for c in report["tag_coverage"]:
        if c.get("activated") is False:
            notes.append(
                f"tag '{c['key']}' never appears in the AWS billing data: activate it as a "
                "cost allocation tag (Billing and Cost Management > Cost allocation tags, or "
                "`aws ce update-cost-allocation-tags-status`); spend before activation stays "
                "untagged"
            )
    return notes


def _timeline(con: Any) -> list[dict[str, Any]]:
    rows = con.execute(
        "SELECT day, sum(billed), sum(effective) FROM money GROUP BY 1 ORDER BY 1"
    ).fetchall()
    return [
        {
            "day": d.isoformat(),
            "billed_cost": round(float(b or 0), 6),
            "effective_cost": round(float(e or 0), 6),
        }
        for d, b, e in rows
    ]


def _cost_center_month(con: Any) -> list[dict[str, Any]]:
    col = quote(tag_column("cost_center"))
    rows = con.execute(
        f"SELECT {col}, strftime(day, '%Y-%m'), sum(billed), sum(effective) FROM money "
        f"GROUP BY 1, 2 ORDER BY 2, 3 DESC"
    ).fetchall()
    return [
        {
            "cost_center": c,
            "month": m,
            "billed_cost": round(float(b or 0), 6),
            "effective_cost": round(float(e or 0), 6),
        }
        for c, m, b, e in rows
    ]


# --- reconciliation ---------------------------------------------------------------------------


def reconcile(
    con: Any, request: Request, period: Mapping[str, str], currency: str
) -> list[dict[str, Any]]:
    """Each estimate in the period beside what the billing data says it cost: estimates of
    providers the data covers, in the report's currency (converted at a stated rate)."""
    start = _ts(date.fromisoformat(period["from"]))
    end = _ts(date.fromisoformat(period["to"]) + timedelta(days=1))
    covered = {p for (p,) in con.execute("SELECT DISTINCT ProviderName FROM money").fetchall()}
    out = []
    for e in request.expected:
        if e.provider not in covered:
            continue
        if e.currency.upper() != currency:
            rate = request.rates.get(e.currency.upper())
            if rate is None:
                continue  # a note says so (_reconcile_notes)
            e = replace(e, usd=e.usd * rate, currency=currency)
        if e.kind == "run":
            window = e.window or (e.created_at, e.created_at + 3600 * (e.hours or 0))
            if window[1] < start or window[0] >= end:
                continue
            out.append(_run(con, e, request, start, end))
        elif e.kind == "endpoint":
            up_from = max(e.created_at, start)
            up_to = min(e.ended_at or end, end)
            if up_to <= up_from:
                continue
            out.append(_endpoint(con, e, (up_to - up_from) / 3600))
    return out


def _ts(d: date) -> float:
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp()


def _actuals(con: Any, provider: str, where: str) -> dict[str, float]:
    row = _one(
        con,
        f"""SELECT sum(effective), sum(list), sum(billed), sum(rows),
            sum(effective) FILTER (WHERE x_CostKind = 'compute'),
            sum(effective) FILTER (WHERE x_CostKind = 'storage'),
            sum(effective) FILTER (WHERE x_CostKind = 'transfer'),
            sum(effective) FILTER (WHERE x_CostKind = 'other'),
            sum(hours),
            sum(list - effective) FILTER (WHERE PricingCategory = 'Dynamic')
        FROM money WHERE ProviderName = {literal(provider)} AND {where}""",
    )
    names = (
        "effective", "list", "billed", "rows", "compute", "storage", "transfer", "other",
        "hours", "spot_savings",
    )  # fmt: skip
    return {n: float(v or 0) for n, v in zip(names, row, strict=True)}


def _tag_is(key: str, value: str) -> str:
    # GCP lower-cases label values; run ids and endpoint names are compared the same way.
    return f"lower({quote(tag_column(key))}) = lower({literal(value)})"


def _row(e: Expected, estimate: float, actual: float | None, a: dict[str, float]) -> dict:
    variance = None if actual is None else round(actual - estimate, 6) + 0.0  # no -0.0
    return {
        "kind": e.kind,
        "id": e.id,
        "provider": e.provider,
        "estimate": round(estimate, 6),
        "actual": None if actual is None else round(actual, 6),
        "list_actual": round(a["list"], 6) if actual is not None else None,
        "variance": variance,
        "variance_pct": round(variance / estimate, 6) + 0.0
        if variance is not None and estimate
        else None,
        "explanations": [],
        "split": False,
    }


def _run(con: Any, e: Expected, request: Request, start: float, end: float) -> dict[str, Any]:
    # An endpoint carries its run's run_id too (to link it to what it serves); its hours
    # are the endpoint's, not the run's.
    not_endpoint = f"{quote(tag_column('endpoint'))} IS NULL"
    a = _actuals(con, e.provider, f"{_tag_is('run_id', e.id)} AND {not_endpoint}")
    if a["rows"] == 0 and e.provider == "azure" and e.detail.get("cluster"):
        return _split(con, e, request, start, end)
    if a["rows"] == 0:
        row = _row(e, e.usd, None, a)
        row["explanations"].append(
            "no billing rows carry this run's run_id tag in the period (billing data lags "
            "a day or two; on AWS the tag must be activated for cost allocation)"
        )
        return row
    row = _row(e, e.usd, a["effective"], a)
    row["explanations"] = _explain_run(e, a)
    return row


def _explain_run(e: Expected, a: dict[str, float]) -> list[str]:
    c = e.currency + " "
    out = []
    nodes = int(e.detail.get("nodes") or 1)
    planned = (e.hours or 0) * nodes
    if a["hours"]:
        text = f"compute: {a['hours']:.2f} instance-hours billed, {planned:.2f} planned"
        if planned and a["hours"] > 1.5 * planned:
            text += (
                f" ({a['hours'] / planned:.1f}x: retries, more attempts or a longer run than "
                "the estimate's throughput)"
            )
        out.append(text + f"; {c}{a['compute']:.2f}")
    elif a["compute"]:
        out.append(f"compute: {c}{a['compute']:.2f}")
    if a["storage"]:
        out.append(f"storage: {c}{a['storage']:.2f} (not in the estimate)")
    if a["transfer"]:
        out.append(f"data transfer: {c}{a['transfer']:.2f} (not in the estimate)")
    if a["spot_savings"] > 0.005:
        out.append(f"spot: {c}{a['spot_savings']:.2f} below the list price")
    if a["other"]:
        out.append(f"other charges: {c}{a['other']:.2f}")
    return out


def _split(con: Any, e: Expected, request: Request, start: float, end: float) -> dict:
    """Azure ML bills a job's nodes to its compute cluster: share the cluster's cost in
    the period among this ledger's runs on it, by node-hours."""
    cluster = str(e.detail["cluster"])
    a = _actuals(con, "azure", f"lower(cluster) = lower({literal(cluster)})")
    mates = [
        x
        for x in request.expected
        if x.kind == "run" and x.provider == "azure" and x.detail.get("cluster") == cluster
    ]
    hours = {x.id: _node_hours(x, start, end) for x in mates}
    mine, all_hours = hours.get(e.id, 0.0), sum(hours.values())
    share = mine / all_hours if all_hours else 0.0
    scaled = {k: v * share for k, v in a.items()}
    actual = scaled["effective"] if a["rows"] else None
    row = _row(e, e.usd, actual, scaled)
    row["split"] = True
    if a["rows"]:
        row["explanations"].append(
            f"a split: cluster '{cluster}' cost {e.currency} {a['effective']:.2f} in the period; this run "
            f"used {mine:.2f} of the {all_hours:.2f} node-hours of the runs launched from here "
            f"on it ({share:.0%}); other users of the cluster would lower this share"
        )
    else:
        row["explanations"].append(
            f"no billing rows for cluster '{cluster}' in the period (Azure ML bills a job's "
            "nodes to its cluster)"
        )
    return row


def _node_hours(e: Expected, start: float, end: float) -> float:
    window = e.window or (e.created_at, e.created_at + 3600 * (e.hours or 0))
    overlap = max(0.0, min(window[1], end) - max(window[0], start)) / 3600
    return overlap * int(e.detail.get("nodes") or 1)


def _endpoint(con: Any, e: Expected, hours_up: float) -> dict[str, Any]:
    a = _actuals(con, e.provider, _tag_is("endpoint", e.id))
    estimate = e.usd * hours_up
    if a["rows"] == 0:
        row = _row(e, estimate, None, a)
        row["explanations"].append("no billing rows carry this endpoint's tag in the period")
        return row
    row = _row(e, estimate, a["effective"], a)
    replicas = int(e.detail.get("min_replicas") or 1)
    expected_hours = hours_up * replicas
    text = (
        f"billed around the clock, busy or idle: {a['hours']:.0f} instance-hours, "
        f"{expected_hours:.0f} expected ({hours_up:.0f} h up x {replicas} min replica"
        f"{'s' if replicas > 1 else ''}) at {e.currency} {e.usd:.2f}/h"
    )
    if a["hours"] > expected_hours * 1.05:
        text += f"; {a['hours'] - expected_hours:.0f} h above min_replicas: autoscaling"
    row["explanations"].append(text)
    if a["storage"] or a["transfer"]:
        row["explanations"].append(
            f"storage {e.currency} {a['storage']:.2f}, data transfer {e.currency} {a['transfer']:.2f} (not in the estimate)"
        )
    return row
