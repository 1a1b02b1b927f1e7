"""The cost report as one self-contained HTML page for finance readers.

`render(report)` turns the report dict of `recipe cost report` into an HTML5 page that opens
offline: inline CSS, charts drawn here as inline SVG, no script and no URL of any kind. Every
value from the report is escaped: tag values come from users' cloud tags, so a tag such as
`<script>` must show as text. A Content-Security-Policy in the page forbids scripts and
network fetches as a second line of defence.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

UNTAGGED = "(untagged)"  # how a null key (no tag on the resource) reads in tables
NO_DATA = "—"  # an absent figure: shown as a dash, never as zero
SPLIT_HINT = "cost split from a shared cluster by node-hours"

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_NO_ACTUAL = '<span class="neg">no data</span>'  # nothing billed (yet) for a run: say so
_DAY = re.compile(r"^\d{4}-(\d{2}-\d{2})")

_CSS = """
:root { --ink: #1f2933; --muted: #616e7c; --rule: #d9e2ec; --bg: #f5f7fa;
  --billed: #2f6fb2; --estimated: #9fc3e7; --estimate: #9aa5b1; --actual: #d9822b;
  --neg: #b42318; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
  color: var(--ink); margin: 0 auto; padding: 24px 32px; max-width: 1160px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 2px solid var(--rule);
  padding-bottom: 4px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 8px 0;
  color: var(--muted); }
.meta dt { font-weight: 600; }
.meta dd { margin: 0; }
.callout { background: #fffbea; border-left: 4px solid #f0b429; padding: 8px 12px 8px 28px;
  margin: 12px 0; }
.callout li { margin: 2px 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr));
  gap: 12px; }
.card { background: var(--bg); border: 1px solid var(--rule); border-radius: 6px;
  padding: 10px 14px; break-inside: avoid; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: .04em; }
.card .value { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .sub { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; margin: 8px 0 16px; width: 100%; }
table.narrow { width: auto; min-width: 50%; }  /* a few columns: keep figures near labels */
th, td { border-bottom: 1px solid var(--rule); padding: 5px 8px; text-align: left;
  vertical-align: top; overflow-wrap: break-word; }
th { background: var(--bg); font-weight: 600; }
td.num, th.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
tr.total td, tr.total th { font-weight: 700; border-top: 2px solid var(--ink); }
tr.untagged td, tr.untagged th { background: #fff5f5; }
.neg { color: var(--neg); }
.muted { color: var(--muted); }
.empty { color: var(--muted); font-style: italic; }
.badge { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 8px;
  background: #e3f8ff; color: #035388; border: 1px solid #81defd; }
ul.plain { margin: 0; padding-left: 16px; }
svg.chart { width: 100%; height: auto; display: block; margin: 8px 0; }
svg.chart text { font-size: 11px; fill: var(--muted); }
svg.chart .axis { stroke: var(--muted); stroke-width: 1; }
svg.chart .grid { stroke: var(--rule); stroke-width: 1; }
svg.chart .bar.billed { fill: var(--billed); }
svg.chart .bar.billed.estimated { fill: var(--estimated); }
svg.chart .bar.estimate { fill: var(--estimate); }
svg.chart .bar.actual { fill: var(--actual); }
svg.chart text.label { fill: var(--ink); }
svg.chart text.nodata { fill: var(--neg); font-style: italic; }
.legend { font-size: 12px; color: var(--muted); }
.swatch { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 12px; }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
@media print {
  body { padding: 0; max-width: none; font-size: 10pt; }
  h2 { break-after: avoid; }
  section, table, svg.chart, .card { break-inside: avoid; }
  th, .card, tr.untagged td, tr.untagged th { -webkit-print-color-adjust: exact;
    print-color-adjust: exact; }
}
"""


# --- formatting: every string that reaches the page goes through _e -------------------------


def _e(value: Any) -> str:
    """Escape any value for HTML text or a quoted attribute (None reads as a dash)."""
    return html.escape(NO_DATA if value is None else str(value), quote=True)


def _num(value: Any) -> float | None:
    """A number from the report, or None; bools and strings are not amounts."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _money_text(value: Any, currency: str) -> str:
    """'USD 1,234.56' / 'USD -52.18', unescaped; non-numbers are shown as they are."""
    amount = _num(value)
    if amount is None:
        return NO_DATA if value is None else str(value)
    if round(amount, 2) == 0:
        amount = 0.0  # no "-0.00"
    return f"{currency} {amount:,.2f}".strip()


def _money(value: Any, currency: str) -> str:
    """Escaped money, in red when negative (credits and refunds stand out)."""
    text = _e(_money_text(value, currency))
    amount = _num(value)
    return f'<span class="neg">{text}</span>' if amount is not None and amount < -0.005 else text


def _pct(fraction: Any) -> str:
    """A fraction (0.415) as an escaped percentage ('41.5%')."""
    value = _num(fraction)
    if value is None:
        return _e(fraction)
    text = _e(f"{value * 100:.1f}%")
    return f'<span class="neg">{text}</span>' if value < -0.0005 else text


def _key(value: Any) -> str:
    """A group key value; null means the resource carried no tag."""
    return _e(UNTAGGED if value is None else value)


def _list(items: Any) -> list[Any]:
    """A list field that may be null or absent."""
    return list(items) if isinstance(items, (list, tuple)) else []


def _dict(item: Any) -> Mapping[str, Any]:
    """A dict field that may be null or absent."""
    return item if isinstance(item, Mapping) else {}


# --- small HTML builders ----------------------------------------------------------------------


def _table(
    head: Sequence[str], rows: Iterable[str], num: Collection[int] = (), cls: str = ""
) -> str:
    """A table from escaped header cells and built <tr> rows; `num` columns align right."""
    cells = "".join(
        f'<th class="num">{h}</th>' if i in num else f"<th>{h}</th>" for i, h in enumerate(head)
    )
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{cells}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _tr(cells: Sequence[str], num: Collection[int] = (), cls: str = "") -> str:
    """One row of escaped cells; `num` columns (amounts) align right."""
    tds = "".join(
        f'<td class="num">{c}</td>' if i in num else f"<td>{c}</td>" for i, c in enumerate(cells)
    )
    attr = f' class="{cls}"' if cls else ""
    return f"<tr{attr}>{tds}</tr>"


def _after(first: int) -> range:
    """Column indexes from `first` on: the amount columns right of the labels."""
    return range(first, 1 << 16)


def _card(label: str, value: str, sub: str = "") -> str:
    """A headline figure; label, value and sub are already escaped."""
    sub_html = f'<div class="sub">{sub}</div>' if sub else ""
    return (
        f'<div class="card"><div class="label">{label}</div>'
        f'<div class="value">{value}</div>{sub_html}</div>'
    )


def _empty(sentence: str) -> str:
    return f'<p class="empty">{_e(sentence)}</p>'


# --- sections -----------------------------------------------------------------------------------


def _header(report: Mapping[str, Any]) -> str:
    period = _dict(report.get("period"))
    meta = [
        ("Period", f"{_e(period.get('from'))} to {_e(period.get('to'))}"),
        ("Currency", _e(report.get("currency"))),
        ("Generated", _e(report.get("generated_at"))),
        ("Latest charge in data", _e(report.get("latest_charge"))),
    ]
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in meta)
    notes = _list(report.get("notes"))
    callout = (
        '<ul class="callout">' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"
        if notes
        else ""
    )
    return (
        f"<header><h1>{_e(report.get('title') or 'Cost report')}</h1>"
        f'<dl class="meta">{dl}</dl>{callout}{_sources(report)}</header>'
    )


def _sources(report: Mapping[str, Any]) -> str:
    sources = [_dict(s) for s in _list(report.get("sources"))]
    if not sources:
        return "<h3>Sources</h3>" + _empty("No billing sources were read.")
    rows = (
        _tr(
            [
                _e(s.get("source")),
                _e(s.get("format")),
                _e(s.get("provider")),
                _e(s.get("files")),
                _e(s.get("rows")),
            ],
            num=_after(3),
        )
        for s in sources
    )
    return "<h3>Sources</h3>" + _table(
        ["Source", "Detected format", "Provider", "Files", "Rows"], rows, num=_after(3)
    )


def _headline(report: Mapping[str, Any], cur: str) -> str:
    total = _dict(report.get("total"))
    cards = [
        _card("Billed cost", _money(total.get("billed_cost"), cur), "what the invoice shows"),
        _card(
            "Effective cost",
            _money(total.get("effective_cost"), cur),
            "amortized: commitments spread over usage",
        ),
        _card("List cost", _money(total.get("list_cost"), cur), "at public list prices"),
    ]
    cards += [_untagged_card(report, cur), _not_final_card(report, cur)]
    body = f'<div class="cards">{"".join(c for c in cards if c)}</div>'
    return f"<section><h2>Totals</h2>{body}{_charges(report, cur)}{_coverage(report)}</section>"


def _untagged_card(report: Mapping[str, Any], cur: str) -> str:
    untagged = report.get("untagged")
    if not isinstance(untagged, Mapping):
        return ""
    keys = ", ".join(str(k) for k in _list(untagged.get("keys"))) or "the report's tag keys"
    sub = f"{_pct(untagged.get('share'))} of billed cost; no tag {_e(keys)}"
    return _card("Untagged spend", _money(untagged.get("billed_cost"), cur), sub)


def _not_final_card(report: Mapping[str, Any], cur: str) -> str:
    not_final = report.get("not_final")
    latest = report.get("latest_charge")
    if not isinstance(not_final, Mapping):
        if latest is None:
            return ""
        return _card("Latest charge in data", _e(latest), "billing data lags behind usage")
    sub = (
        f"{_e(not_final.get('rows'))} rows not final since {_e(not_final.get('since'))}; "
        f"latest charge in data {_e(latest)} (billing data lags)"
    )
    return _card("Estimated (not final)", _money(not_final.get("billed_cost"), cur), sub)


def _charges(report: Mapping[str, Any], cur: str) -> str:
    charges = [_dict(c) for c in _list(report.get("charges"))]
    if not charges:
        return "<h3>Charges by kind</h3>" + _empty("No charges broken down by kind.")
    rows = (
        _tr(
            [
                _e(c.get("kind")),
                _money(c.get("billed_cost"), cur),
                _money(c.get("effective_cost"), cur),
            ],
            num=_after(1),
        )
        for c in charges
    )
    return "<h3>Charges by kind</h3>" + _table(
        ["Kind", "Billed", "Effective"], rows, num=_after(1), cls="narrow"
    )


def _coverage(report: Mapping[str, Any]) -> str:
    coverage = [_dict(c) for c in _list(report.get("tag_coverage"))]
    if not coverage:
        return ""
    rows = []
    for c in coverage:
        tagged, total = _num(c.get("rows_tagged")), _num(c.get("rows"))
        share = _pct(tagged / total) if tagged is not None and total else NO_DATA
        active = c.get("activated")
        state = "yes" if active is True else "no" if active is False else active
        rows.append(
            _tr(
                [
                    _e(c.get("key")),
                    _e(c.get("provider")),
                    _e(state),
                    _e(c.get("rows_tagged")),
                    _e(c.get("rows")),
                    share,
                ],
                num=_after(3),
            )
        )
    head = ["Tag key", "Provider", "Activated", "Rows tagged", "Rows", "Coverage"]
    return "<h3>Tag coverage</h3>" + _table(head, rows, num=_after(3), cls="narrow")


def _pivot(report: Mapping[str, Any], cur: str) -> str:
    """Billed cost as cost center x month, with row and column totals."""
    cells: dict[tuple[Any, Any], float] = {}
    for row in (_dict(r) for r in _list(report.get("by_cost_center_month"))):
        key = (row.get("cost_center"), row.get("month"))
        cells[key] = cells.get(key, 0.0) + (_num(row.get("billed_cost")) or 0.0)
    title = "<h2>Billed cost by cost center and month</h2>"
    if not cells:
        return f"<section>{title}{_empty('No cost broken down by cost center.')}</section>"
    months = sorted({m for _, m in cells}, key=str)
    centers = {c for c, _ in cells}
    row_total = {c: sum(v for (cc, _), v in cells.items() if cc == c) for c in centers}
    # largest first, the untagged row last so it reads as the remainder
    order = sorted(centers, key=lambda c: (c is None, -row_total[c], str(c)))
    rows = [
        _tr(
            [_key(c)]
            + [_money(cells.get((c, m)), cur) for m in months]
            + [_money(row_total[c], cur)],
            num=_after(1),
            cls="untagged" if c is None else "",
        )
        for c in order
    ]
    col_totals = [sum(v for (_, mm), v in cells.items() if mm == m) for m in months]
    rows.append(
        _tr(
            ["Total"] + [_money(v, cur) for v in col_totals] + [_money(sum(col_totals), cur)],
            num=_after(1),
            cls="total",
        )
    )
    head = ["Cost center"] + [_e(m) for m in months] + ["Total"]
    width = "narrow" if len(months) <= 3 else ""  # a year of months needs the full width
    return f"<section>{title}{_table(head, rows, num=_after(1), cls=width)}</section>"


def _groups(report: Mapping[str, Any], cur: str) -> str:
    groups = [_dict(g) for g in _list(report.get("groups"))]
    by = [str(b) for b in _list(report.get("by"))]
    if not by:  # no `by`: the union of the groups' keys, in order of appearance
        by = list(dict.fromkeys(k for g in groups for k in _dict(g.get("key"))))
    title = f"<h2>Groups by {_e(', '.join(by) or 'key')}</h2>"
    if not groups:
        return f"<section>{title}{_empty('No cost in the period.')}</section>"
    rows = [
        _tr(
            [_key(_dict(g.get("key")).get(b)) for b in by]
            + [_money(g.get(f), cur) for f in ("billed_cost", "effective_cost", "list_cost")]
            + [_pct(g.get("share"))],
            num=_after(len(by)),
            cls="untagged" if g.get("untagged") else "",
        )
        for g in groups
    ]
    total = _dict(report.get("total"))
    rows.append(
        _tr(
            ["Total"]
            + [""] * (len(by) - 1)
            + [_money(total.get(f), cur) for f in ("billed_cost", "effective_cost", "list_cost")]
            + [""],
            num=_after(len(by)),
            cls="total",
        )
    )
    head = [_e(b) for b in by] + ["Billed", "Effective", "List", "Share"]
    return f"<section>{title}{_table(head, rows, num=_after(len(by)))}</section>"


# --- charts -----------------------------------------------------------------------------------


def _nice_step(span: float, ticks: int = 5) -> float:
    """A 1/2/5 x 10^k step so that axis ticks land on round numbers."""
    raw = max(span, 1e-9) / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _domain(values: Iterable[float]) -> tuple[float, float, float]:
    """(low, high, step) covering the values and zero, widened to whole steps."""
    vals = list(values) or [0.0]
    low, high = min(0.0, *vals), max(0.0, *vals)
    if high == low:
        high = low + 1.0
    step = _nice_step(high - low)
    return math.floor(low / step) * step, math.ceil(high / step) * step, step


def _ticks(low: float, high: float, step: float) -> list[float]:
    count = round((high - low) / step)
    return [low + i * step for i in range(count + 1)]


def _axis_number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 or value == 0 else f"{value:,.2f}"


def _legend(items: Sequence[tuple[str, str]]) -> str:
    """A legend beside the chart, in HTML so it wraps and prints well."""
    spans = "".join(
        f'<span class="swatch" style="background: var({var})"></span>{_e(text)}'
        for var, text in items
    )
    return f'<div class="legend">{spans}</div>'


def _timeline_chart(report: Mapping[str, Any], cur: str) -> str:
    """Daily billed cost as vertical bars; days not yet final are drawn lighter."""
    days = [_dict(d) for d in _list(report.get("timeline"))]
    title = "<h2>Cost over time</h2>"
    if not days:
        return f"<section>{title}{_empty('No daily costs in the period, so no chart.')}</section>"
    since = _dict(report.get("not_final")).get("since")
    width, height, left, right, top, bottom = 960, 320, 72, 16, 16, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    low, high, step = _domain(_num(d.get("billed_cost")) or 0.0 for d in days)

    def y(v: float) -> float:
        return top + (high - v) / (high - low) * plot_h

    parts = [_y_grid(_ticks(low, high, step), y, left, width - right)]
    slot = plot_w / len(days)
    bar_w = min(slot * 0.8, 36.0)  # a few days must not turn into slabs
    every = max(1, math.ceil(len(days) / 16))  # at most ~16 day labels: they must not overlap
    for i, day in enumerate(days):
        value = _num(day.get("billed_cost")) or 0.0
        center = left + (i + 0.5) * slot
        x = center - bar_w / 2
        estimated = since is not None and str(day.get("day"))[:10] >= str(since)[:10]
        cls = "bar billed estimated" if estimated else "bar billed"
        tip = f"{day.get('day')}: {_money_text(day.get('billed_cost'), cur)} billed" + (
            " (estimated, not final)" if estimated else ""
        )
        parts.append(
            f'<rect class="{cls}" data-day="{_e(day.get("day"))}" x="{x:.1f}" '
            f'y="{min(y(value), y(0)):.1f}" width="{bar_w:.1f}" '
            f'height="{abs(y(value) - y(0)):.1f}"><title>{_e(tip)}</title></rect>'
        )
        if i % every == 0:
            label = _DAY.match(str(day.get("day")))
            text = label.group(1) if label else day.get("day")
            parts.append(
                f'<text x="{center:.1f}" y="{top + plot_h + 16}" '
                f'text-anchor="middle">{_e(text)}</text>'
            )
    parts.append(_axes(left, top, plot_w, plot_h, y(0)))
    parts.append(
        f'<text x="{left + plot_w / 2:.0f}" y="{height - 8}" text-anchor="middle">Day</text>'
    )
    parts.append(
        f'<text transform="translate(14 {top + plot_h / 2:.0f}) rotate(-90)" '
        f'text-anchor="middle">{_e(f"Billed cost ({cur})")}</text>'
    )
    svg = (
        f'<svg class="chart" data-chart="cost-over-time" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="Daily billed cost">{"".join(parts)}</svg>'
    )
    legend = _legend([("--billed", "billed (final)"), ("--estimated", "estimated, not final")])
    return f"<section>{title}{svg}{legend}</section>"


def _y_grid(ticks: Sequence[float], y: Callable[[float], float], x0: float, x1: float) -> str:
    return "".join(
        f'<line class="grid" x1="{x0}" x2="{x1}" y1="{y(t):.1f}" y2="{y(t):.1f}"/>'
        f'<text x="{x0 - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{_e(_axis_number(t))}</text>'
        for t in ticks
    )


def _axes(left: float, top: float, plot_w: float, plot_h: float, zero_y: float) -> str:
    return (
        f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}"/>'
        f'<line class="axis" x1="{left}" x2="{left + plot_w}" y1="{zero_y:.1f}" '
        f'y2="{zero_y:.1f}"/>'
    )


def _short(text: str, limit: int = 38) -> str:
    """Long run ids are cut in the chart's labels; the table and tooltip keep them whole."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _reconciliation_chart(rows: Sequence[Mapping[str, Any]], cur: str) -> str:
    """Estimate and actual side by side, one pair of horizontal bars per run or endpoint."""
    width, left, right, top, bottom, row_h, bar_h = 960, 300, 90, 8, 40, 44, 15
    plot_w = width - left - right
    height = top + row_h * len(rows) + bottom
    values = [
        v for r in rows for v in (_num(r.get("estimate")), _num(r.get("actual"))) if v is not None
    ]
    low, high, step = _domain(values)

    def x(v: float) -> float:
        return left + (v - low) / (high - low) * plot_w

    parts = []
    for t in _ticks(low, high, step):
        parts.append(
            f'<line class="grid" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" '
            f'y2="{height - bottom}"/><text x="{x(t):.1f}" y="{height - bottom + 16}" '
            f'text-anchor="middle">{_e(_axis_number(t))}</text>'
        )
    for i, row in enumerate(rows):
        parts.append(_reconciliation_pair(row, top + i * row_h, bar_h, x, left - 8, cur))
    parts.append(
        f'<line class="axis" x1="{x(0):.1f}" x2="{x(0):.1f}" y1="{top}" y2="{height - bottom}"/>'
    )
    parts.append(
        f'<text x="{left + plot_w / 2:.0f}" y="{height - 6}" text-anchor="middle">'
        f"{_e(f'Cost ({cur})')}</text>"
    )
    return (
        f'<svg class="chart" data-chart="estimate-vs-actual" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="Estimate versus actual cost">{"".join(parts)}</svg>'
    )


def _reconciliation_pair(
    row: Mapping[str, Any],
    y0: float,
    bar_h: float,
    x: Callable[[float], float],
    label_x: float,
    cur: str,
) -> str:
    """One run's label, estimate bar and actual bar (or 'no data' when nothing was billed)."""
    name = f"{row.get('kind')}: {row.get('id')}" + (" (split)" if row.get("split") else "")
    label = (
        f'<text class="label" x="{label_x}" y="{y0 + bar_h + 4:.1f}" text-anchor="end">'
        f"<title>{_e(name)}</title>{_e(_short(name))}</text>"
    )
    bars = [label]
    for offset, field, cls in ((0, "estimate", "estimate"), (bar_h + 2, "actual", "actual")):
        value = _num(row.get(field))
        top = y0 + offset
        if value is None:
            bars.append(
                f'<text class="nodata" x="{x(0) + 4:.1f}" y="{top + bar_h - 3:.1f}">'
                f"{_e(field)}: no data</text>"
            )
            continue
        tip = f"{name}: {field} {_money_text(value, cur)}"
        x0, x1 = sorted((x(0), x(value)))
        bars.append(
            f'<rect class="bar {cls}" x="{x0:.1f}" y="{top:.1f}" '
            f'width="{max(x1 - x0, 1):.1f}" height="{bar_h}">'
            f"<title>{_e(tip)}</title></rect>"
            f'<text x="{x1 + 4:.1f}" y="{top + bar_h - 3:.1f}">'
            f"{_e(f'{value:,.2f}')}</text>"
        )
    return f'<g class="recon-row" data-id="{_e(row.get("id"))}">{"".join(bars)}</g>'


def _reconciliation(report: Mapping[str, Any], cur: str) -> str:
    rows = [_dict(r) for r in _list(report.get("reconciliation"))]
    title = "<h2>Estimate vs actual, per run and endpoint</h2>"
    if not rows:
        return f"<section>{title}{_empty('No runs or endpoints to reconcile.')}</section>"
    legend = _legend(
        [("--estimate", "estimate (before launch)"), ("--actual", "actual (effective cost)")]
    )
    table_rows = (
        _tr(
            [
                _e(r.get("kind")),
                _e(r.get("id")) + _split_badge(r),
                _e(r.get("provider")),
                _money(r.get("estimate"), cur),
                _money(r.get("actual"), cur) if r.get("actual") is not None else _NO_ACTUAL,
                _money(r.get("list_actual"), cur),
                _money(r.get("variance"), cur),
                _pct(r.get("variance_pct")),
                _explanations(r),
            ],
            num=range(3, 8),
        )
        for r in rows
    )
    head = [
        "Kind",
        "Id",
        "Provider",
        "Estimate",
        "Actual",
        "Actual at list",
        "Variance",
        "Variance %",
        "Explanation",
    ]
    table = _table(head, table_rows, num=range(3, 8))
    return f"<section>{title}{_reconciliation_chart(rows, cur)}{legend}{table}</section>"


def _split_badge(row: Mapping[str, Any]) -> str:
    if not row.get("split"):
        return ""
    return f' <span class="badge" title="{_e(SPLIT_HINT)}">split</span>'


def _explanations(row: Mapping[str, Any]) -> str:
    items = _list(row.get("explanations"))
    return '<ul class="plain">' + "".join(f"<li>{_e(t)}</li>" for t in items) + "</ul>"


# --- the page ---------------------------------------------------------------------------------


def render(report: Mapping[str, Any]) -> str:
    """The report as one self-contained, offline HTML5 page (no script, no URL)."""
    cur = str(report.get("currency") or "")
    title = _e(report.get("title") or "Cost report")
    period = _dict(report.get("period"))
    body = "".join(
        [
            _header(report),
            _headline(report, cur),
            _pivot(report, cur),
            _timeline_chart(report, cur),
            _reconciliation(report, cur),
            _groups(report, cur),
            f"<footer>Amounts in {_e(cur or 'the billing currency')}; generated "
            f"{_e(report.get('generated_at'))} by recipe cost report.</footer>",
        ]
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title} {_e(period.get('from'))} to {_e(period.get('to'))}</title>"
        f"<style>{_CSS}</style></head>\n<body>{body}</body></html>\n"
    )
