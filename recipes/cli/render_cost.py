"""The cost report in a terminal (rich tables)."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from recipes.cli.render import out


def report(r: dict[str, Any]) -> None:
    cur = r["currency"]
    period = r["period"]
    # Titles, tag values and ids come from users and clouds: never read as rich markup.
    out.print(f"[bold]{escape(r['title'])}[/bold]  {period['from']} to {period['to']}, {cur}")
    for s in r["sources"]:
        out.print(f"  source  {s['source']}: {s['format']}", markup=False)
    latest = r.get("latest_charge")
    if latest:
        out.print(f"  data up to {latest} (billing data lags a day or two)", markup=False)
    out.print()
    _groups(r, cur)
    _summary(r, cur)
    _reconciliation(r, cur)
    if r.get("notes"):
        out.print()
        for note in r["notes"]:
            out.print(f"note: {note}", markup=False)


def _money(value: float | None, cur: str) -> str:
    return "-" if value is None else f"{cur} {value:,.2f}"


def _groups(r: dict[str, Any], cur: str) -> None:
    if not r["groups"]:
        return
    table = Table(show_edge=False, pad_edge=False)
    for key in r["by"]:
        table.add_column(key)
    for column in ("billed", "effective", "list", "share"):
        table.add_column(column, justify="right")
    for g in r["groups"]:
        keys = [Text("(untagged)" if g["key"][k] is None else str(g["key"][k])) for k in r["by"]]
        share = "" if g["share"] is None else f"{g['share']:.1%}"
        table.add_row(
            *keys,
            _money(g["billed_cost"], cur),
            _money(g["effective_cost"], cur),
            _money(g["list_cost"], cur),
            share,
        )
    t = r["total"]
    table.add_row(
        "[bold]total[/bold]",
        *([""] * (len(r["by"]) - 1)),
        _money(t["billed_cost"], cur),
        _money(t["effective_cost"], cur),
        _money(t["list_cost"], cur),
        "100%",
    )
    out.print(table)


def _summary(r: dict[str, Any], cur: str) -> None:
    out.print()
    kinds = ", ".join(f"{c['kind']} {_money(c['billed_cost'], cur)}" for c in r["charges"])
    out.print(f"charges (billed): {kinds}", markup=False)
    u = r.get("untagged")
    if u:
        out.print(
            f"untagged ({', '.join(u['keys'])}): {_money(u['billed_cost'], cur)}, "
            f"{(u['share'] or 0):.1%} of billed; of it {_money(u['account_level'], cur)} are "
            "account-level credits, refunds and tax",
            markup=False,
        )
    nf = r["not_final"]
    if nf["rows"]:
        out.print(
            f"not final: {_money(nf['billed_cost'], cur)} in {nf['rows']:,} rows since "
            f"{nf['since']} (still estimated by the provider)",
            markup=False,
        )


def _reconciliation(r: dict[str, Any], cur: str) -> None:
    rows = r.get("reconciliation") or []
    if not rows:
        return
    out.print()
    table = Table(title="estimate vs actual (effective cost)", show_edge=False, pad_edge=False)
    for column, justify in (
        ("kind", "left"),
        ("id", "left"),
        ("provider", "left"),
        ("estimate", "right"),
        ("actual", "right"),
        ("variance", "right"),
        ("why", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        pct = row["variance_pct"]
        variance = _money(row["variance"], cur) + (f" ({pct:+.0%})" if pct is not None else "")
        table.add_row(
            row["kind"] + (" (split)" if row["split"] else ""),
            Text(row["id"]),
            row["provider"],
            _money(row["estimate"], cur),
            _money(row["actual"], cur),
            variance if row["variance"] is not None else "-",
            Text("; ".join(row["explanations"])),
        )
    out.print(table)
