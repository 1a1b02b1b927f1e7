"""The cost report in a terminal (rich tables)."""

from __future__ import annotations

import io
import re
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

# Not a terminal (a pipe, a CI log): wide enough that run ids and tag values stay whole.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 240)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def clean(value: object) -> Text:
    """A value from users or clouds, as plain text: no markup, no terminal escapes."""
    return Text(_CONTROL.sub("?", str(value)))


def as_text(r: dict[str, Any]) -> str:
    """The report as the terminal shows it, for a file (`--output`)."""
    buffer = io.StringIO()
    report(r, Console(file=buffer, width=240, highlight=False, soft_wrap=True))
    return buffer.getvalue()


def report(r: dict[str, Any], console: Console | None = None) -> None:
    console = console or out
    cur = r["currency"]
    period = r["period"]
    # Titles, tag values and ids come from users and clouds: never read as rich markup.
    title = escape(_CONTROL.sub("?", r["title"]))
    console.print(f"[bold]{title}[/bold]  {period['from']} to {period['to']}, {cur}")
    for s in r["sources"]:
        console.print(Text("  source  ").append(clean(f"{s['source']}: {s['format']}")))
    latest = r.get("latest_charge")
    if latest:
        console.print(f"  data up to {latest} (billing data lags a day or two)", markup=False)
    console.print()
    _groups(console, r, cur)
    _summary(console, r, cur)
    _reconciliation(console, r, cur)
    if r.get("notes"):
        console.print()
        for note in r["notes"]:
            console.print(Text("note: ").append(clean(note)))


def _money(value: float | None, cur: str) -> str:
    return "-" if value is None else f"{cur} {value:,.2f}"


def _groups(console: Console, r: dict[str, Any], cur: str) -> None:
    if not r["groups"]:
        return
    table = Table(show_edge=False, pad_edge=False)
    for key in r["by"]:
        table.add_column(clean(key))
    for column in ("billed", "effective", "list", "share"):
        table.add_column(column, justify="right")
    for g in r["groups"]:
        keys = [clean("(untagged)" if g["key"][k] is None else g["key"][k]) for k in r["by"]]
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
    console.print(table)


def _summary(console: Console, r: dict[str, Any], cur: str) -> None:
    console.print()
    kinds = ", ".join(f"{c['kind']} {_money(c['billed_cost'], cur)}" for c in r["charges"])
    console.print(f"charges (billed): {kinds}", markup=False)
    u = r.get("untagged")
    if u:
        console.print(
            f"untagged ({', '.join(u['keys'])}): {_money(u['billed_cost'], cur)}, "
            f"{(u['share'] or 0):.1%} of billed; of it {_money(u['account_level'], cur)} are "
            "account-level credits, refunds and tax",
            markup=False,
        )
    nf = r["not_final"]
    if nf["rows"]:
        console.print(
            f"not final: {_money(nf['billed_cost'], cur)} in {nf['rows']:,} rows since "
            f"{nf['since']} (still estimated by the provider)",
            markup=False,
        )


def _reconciliation(console: Console, r: dict[str, Any], cur: str) -> None:
    rows = r.get("reconciliation") or []
    if not rows:
        return
    console.print()
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
            clean(row["id"]),
            row["provider"],
            _money(row["estimate"], cur),
            _money(row["actual"], cur),
            variance if row["variance"] is not None else "-",
            clean("; ".join(row["explanations"])),
        )
    console.print(table)
