"""The HTML cost report: escaped, offline, both charts drawn; and opened in a real browser."""

from __future__ import annotations

import copy
import itertools
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from recipes.cost.html import render

# The shape the report engine produces (a copy of its example; the test never reads /tmp).
REPORT: dict[str, Any] = {
    "title": "Cost report",
    "generated_at": "2026-11-23T19:40:00Z",
    "currency": "USD",
    "period": {"from": "2026-10-01", "to": "2026-10-30"},
    "by": ["cost_center", "month"],
    "groups": [
        {
            "key": {"cost_center": "demo", "month": "2026-10"},
            "billed_cost": 612.4,
            "effective_cost": 612.4,
            "list_cost": 620.1,
            "share": 0.58,
        },
        {
            "key": {"cost_center": "cc-4711", "month": "2026-10"},
            "billed_cost": 9.09,
            "effective_cost": 9.09,
            "list_cost": 9.09,
            "share": 0.01,
        },
        {
            "key": {"cost_center": None, "month": "2026-10"},
            "billed_cost": 440.8,
            "effective_cost": 440.8,
            "list_cost": 417.3,
            "share": 0.41,
            "untagged": True,
        },
    ],
    "total": {"billed_cost": 1062.33, "effective_cost": 1062.33, "list_cost": 1046.49},
    "charges": [
        {"kind": "Usage", "billed_cost": 1043.53, "effective_cost": 1043.53},
        {"kind": "Credit", "billed_cost": -52.18, "effective_cost": -52.18},
        {"kind": "Refund", "billed_cost": -12.5, "effective_cost": -12.5},
        {"kind": "Tax", "billed_cost": 83.48, "effective_cost": 83.48},
    ],
    "untagged": {
        "keys": ["cost_center"],
        "billed_cost": 440.8,
        "effective_cost": 440.8,
        "share": 0.415,
    },
    "not_final": {"billed_cost": 70.1, "rows": 58, "since": "2026-10-29"},
    "latest_charge": "2026-10-30T23:00:00",
    "sources": [
        {
            "source": "bill.parquet",
            "format": "FOCUS 1.2 (AWS Data Exports)",
            "provider": "aws",
            "rows": 829,
            "files": 1,
        }
    ],
    "notes": ["effective cost equals billed cost for Azure actual-cost exports: ..."],
    "tag_coverage": [
        {
            "key": "cost_center",
            "provider": "aws",
            "rows_tagged": 700,
            "rows": 829,
            "activated": True,
        }
    ],
    "timeline": [
        {"day": "2026-10-01", "billed_cost": 40.2, "effective_cost": 40.2},
        {"day": "2026-10-02", "billed_cost": 31.0, "effective_cost": 31.0},
    ],
    "by_cost_center_month": [
        {"cost_center": "demo", "month": "2026-10", "billed_cost": 612.4, "effective_cost": 612.4},
        {"cost_center": None, "month": "2026-10", "billed_cost": 440.8, "effective_cost": 440.8},
    ],
    "reconciliation": [
        {
            "kind": "run",
            "id": "quickstart-20261001-090000-a1b2",
            "provider": "aws",
            "estimate": 3.79,
            "actual": 3.79,
            "list_actual": 3.79,
            "variance": 0.0,
            "variance_pct": 0.0,
            "explanations": ["compute: 2.5 instance-hours billed, 2.5 planned"],
            "split": False,
        },
        {
            "kind": "run",
            "id": "quickstart-20261008-101500-c3d4",
            "provider": "aws",
            "estimate": 4.55,
            "actual": 1.59,
            "list_actual": 4.55,
            "variance": -2.96,
            "variance_pct": -0.65,
            "explanations": ["spot: 2.96 saved against list price"],
            "split": False,
        },
        {
            "kind": "endpoint",
            "id": "quickstart",
            "provider": "aws",
            "estimate": 871.2,
            "actual": 871.2,
            "list_actual": 871.2,
            "variance": 0.0,
            "variance_pct": 0.0,
            "explanations": ["720 instance-hours billed; 720 expected at min_replicas"],
            "split": False,
        },
        {
            "kind": "run",
            "id": "quickstart-20261015-141000-e5f6",
            "provider": "azure",
            "estimate": 9.6,
            "actual": None,
            "list_actual": None,
            "variance": None,
            "variance_pct": None,
            "explanations": ["no billing rows for this run in the period"],
            "split": False,
        },
    ],
}

XSS = "<script>alert(1)</script>"


def report(**changes: Any) -> dict[str, Any]:
    """A deep copy of REPORT with top-level fields replaced."""
    return {**copy.deepcopy(REPORT), **changes}


def month_of_days(n: int = 30) -> list[dict[str, Any]]:
    """A realistic timeline: n days of October, one with a net credit."""
    return [
        {
            "day": f"2026-10-{d:02d}",
            "billed_cost": -5.0 if d == 7 else 20.0 + d,
            "effective_cost": 1,
        }
        for d in range(1, n + 1)
    ]


class Page(HTMLParser):
    """Every start tag with its attributes, and which chart (svg[data-chart]) it sits in."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None], str | None]] = []
        self.chart: str | None = None
        self.texts: list[tuple[str, str | None]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "svg":
            self.chart = attributes.get("data-chart")
        self.tags.append((tag, attributes, self.chart))

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self.chart = None

    def handle_data(self, data: str) -> None:
        self.texts.append((data, self.chart))

    def in_chart(self, chart: str, tag: str, cls: str | None) -> list[dict[str, str | None]]:
        """Elements of `tag` in the chart whose class list holds `cls` (None: any)."""
        return [
            a
            for t, a, c in self.tags
            if c == chart and t == tag and (cls is None or cls in (a.get("class") or "").split())
        ]

    def chart_text(self, chart: str) -> str:
        return " ".join(d for d, c in self.texts if c == chart)


# --- unit tests ---------------------------------------------------------------------------------


def test_the_page_shows_the_totals_for_finance() -> None:
    page = render(REPORT)
    assert page.startswith("<!DOCTYPE html>")
    for shown in (
        "USD 1,062.33",  # billed and effective
        "USD 1,046.49",  # list
        "USD -52.18",  # a credit stays negative
        "USD -12.50",
        "Credit",
        "Refund",
        "Tax",
        "USD 440.80",  # untagged spend ...
        "41.5%",  # ... and its share
        "USD 70.10",  # not final
        "2026-10-29",
        "2026-10-30T23:00:00",  # latest charge: billing data lags
        "FOCUS 1.2 (AWS Data Exports)",
        "bill.parquet",
        "effective cost equals billed cost",
        "(untagged)",
        "58.0%",
        "-65.0%",  # variance %
    ):
        assert shown in page, shown


def test_money_has_thousands_separators_and_two_decimals() -> None:
    page = render(report(total={"billed_cost": 1234567.891, "effective_cost": -0.001}))
    assert "USD 1,234,567.89" in page
    assert "USD 0.00" in page and "USD -0.00" not in page


def test_the_pivot_has_row_and_column_totals() -> None:
    rows = [
        {"cost_center": "demo", "month": "2026-09", "billed_cost": 100.0},
        {"cost_center": "demo", "month": "2026-10", "billed_cost": 1000.0},
        {"cost_center": None, "month": "2026-10", "billed_cost": 0.5},
    ]
    page = render(report(by_cost_center_month=rows))
    section = page.split("by cost center and month", 1)[1].split("</section>", 1)[0]
    assert section.index("2026-09") < section.index("2026-10")
    assert "USD 1,100.00" in section  # demo's row total
    assert "USD 1,000.50" in section  # October's column total
    assert "USD 1,100.50" in section  # the grand total
    assert section.index("demo") < section.index("(untagged)")  # the remainder last


def test_a_tag_value_with_a_script_shows_as_text() -> None:
    data = report()
    data["groups"][0]["key"]["cost_center"] = XSS
    data["by_cost_center_month"][0]["cost_center"] = XSS
    page = render(data)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "script" not in {tag for tag, _, _ in Page(page).tags}


def _poison(value: Any, counter: itertools.count, path: str = "") -> Any:
    """Every string leaf replaced by an injection with a unique number (`by` names kept)."""
    if isinstance(value, dict):
        return {
            k: v if k == "by" and not path else _poison(v, counter, f"{path}.{k}")
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_poison(v, counter, path) for v in value]
    if isinstance(value, str):
        n = next(counter)
        trick = "<script>alert({n})</script>" if n % 2 else '"><img src=x onerror=alert({n})>'
        return trick.format(n=n)
    return value


def test_every_value_from_the_report_is_escaped() -> None:
    counter = itertools.count()
    page = render(_poison(REPORT, counter))
    parsed = Page(page)
    assert not {"script", "img"} & {tag for tag, _, _ in parsed.tags}
    assert not [name for _, attrs, _ in parsed.tags for name in attrs if name.startswith("on")]
    for n in range(next(counter)):  # each value is on the page, as text
        escaped = (
            f"&lt;script&gt;alert({n})&lt;/script&gt;"
            if n % 2
            else f"&quot;&gt;&lt;img src=x onerror=alert({n})&gt;"
        )
        assert escaped in page, n


def test_a_column_name_from_by_is_escaped() -> None:
    data = report(by=[XSS], groups=[{"key": {XSS: "x"}, "billed_cost": 1.0, "share": 1.0}])
    page = render(data)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;" in page


def test_the_page_fetches_nothing() -> None:
    page = render(report(timeline=month_of_days()))
    assert "http://" not in page and "https://" not in page
    assert "url(" not in page and "@import" not in page and "//" not in page
    for tag, attrs, _ in Page(page).tags:
        assert not {"src", "href", "srcset", "action"} & set(attrs), tag
        assert tag not in {"script", "link", "img", "iframe", "object", "embed", "image", "use"}
    assert "Content-Security-Policy" in page  # scripts and fetches are refused anyway


def test_one_bar_per_day_in_the_cost_over_time_chart() -> None:
    days = month_of_days()
    parsed = Page(render(report(timeline=days)))
    bars = parsed.in_chart("cost-over-time", "rect", "bar")
    assert [b["data-day"] for b in bars] == [d["day"] for d in days]
    assert len(parsed.in_chart("cost-over-time", "rect", "estimated")) == 2  # 29th and 30th
    assert len(parsed.in_chart("cost-over-time", "title", None)) >= len(days)  # tooltips
    labels = parsed.chart_text("cost-over-time")
    assert "Billed cost (USD)" in labels and "Day" in labels and "10-01" in labels


def test_estimate_and_actual_side_by_side_per_run() -> None:
    parsed = Page(render(REPORT))
    rows = parsed.in_chart("estimate-vs-actual", "g", "recon-row")
    assert [r["data-id"] for r in rows] == [r["id"] for r in REPORT["reconciliation"]]
    assert len(parsed.in_chart("estimate-vs-actual", "rect", "estimate")) == 4
    assert len(parsed.in_chart("estimate-vs-actual", "rect", "actual")) == 3  # one is null
    assert "no data" in parsed.chart_text("estimate-vs-actual")


def test_a_split_run_is_marked() -> None:
    data = report()
    data["reconciliation"][0]["split"] = True
    page = render(data)
    assert 'class="badge"' in page and "node-hours" in page
    assert render(REPORT).count('class="badge"') == 0


@pytest.mark.parametrize(
    "data",
    [
        {},
        report(
            groups=[],
            timeline=[],
            reconciliation=[],
            by_cost_center_month=[],
            charges=[],
            sources=[],
            notes=[],
            tag_coverage=[],
            untagged=None,
            not_final=None,
            total=None,
            latest_charge=None,
        ),
        report(by=None, timeline=None, reconciliation=None, groups=None, period=None),
    ],
    ids=["nothing", "empty-lists", "nulls"],
)
def test_empty_sections_render_as_sentences(data: dict[str, Any]) -> None:
    page = render(data)
    assert "<svg" not in page
    assert "No daily costs in the period" in page
    assert "No runs or endpoints to reconcile" in page
    assert "No cost in the period" in page
    assert page.rstrip().endswith("</html>")


def test_groups_by_other_keys_without_cost_center() -> None:
    groups = [
        {"key": {"provider": "aws"}, "billed_cost": 3.0, "share": 0.75},
        {"key": {"provider": None}, "billed_cost": 1.0, "share": 0.25, "untagged": True},
    ]
    page = render(report(by=["provider"], groups=groups, by_cost_center_month=[]))
    section = page.split("Groups by provider", 1)[1]
    assert "(untagged)" in section and "75.0%" in section and "USD 3.00" in section


# --- the page in a real browser -----------------------------------------------------------------


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _headless(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run(
        [binary, *flags, *args], capture_output=True, text=True, timeout=60, check=False
    )


def _png(path: Path) -> tuple[int, int, set[bytes]]:
    """Width, height and the set of colours of an 8-bit RGB(A) PNG, decoded with zlib."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", (0, 0, 0, 0)
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IHDR":
            header = struct.unpack(">IIBB", data[pos + 8 : pos + 18])
        elif kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + size]
        pos += 12 + size
    width, height, depth, colour_type = header
    assert depth == 8 and colour_type in (2, 6), header
    channels = 3 if colour_type == 2 else 4
    colours: set[bytes] = set()
    for line in _unfilter(zlib.decompress(idat), width * channels, height, channels):
        colours.update(line[i : i + 3] for i in range(0, len(line), channels))
    return width, height, colours


def _unfilter(raw: bytes, stride: int, height: int, bpp: int) -> list[bytes]:
    """Undo PNG's per-line filters (None, Sub, Up, Average, Paeth)."""
    prev, lines = bytearray(stride), []
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride) if kind else ():
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + ((a + b) >> 1)) & 255
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        lines.append(bytes(line))
        prev = line
    return lines


def test_a_headless_browser_draws_the_page_offline(tmp_path: Path) -> None:
    binary = _chromium()
    if binary is None:
        pytest.skip("no chromium binary (chromium, chromium-browser or /usr/bin/chromium)")
    data = report(timeline=month_of_days())
    data["groups"][0]["key"]["cost_center"] = '<img src=x onerror="document.title=1">'
    page = tmp_path / "report.html"
    page.write_text(render(data), encoding="utf-8")
    png = tmp_path / "report.png"

    shot = _headless(
        binary, tmp_path / "p1", f"--screenshot={png}", "--window-size=1280,2000", page.as_uri()
    )
    assert png.exists(), shot.stderr[-2000:]
    width, height, colours = _png(png)
    assert (width, height) == (1280, 2000)
    assert len(colours) > 50  # text, tables and charts, not a blank page
    assert bytes((0x2F, 0x6F, 0xB2)) in colours  # the daily bars were painted
    assert bytes((0xD9, 0x82, 0x2B)) in colours  # and the actual-cost bars

    dom = _headless(binary, tmp_path / "p2", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    parsed = Page(dom.stdout)
    assert len(parsed.in_chart("cost-over-time", "rect", "bar")) == 30
    assert len(parsed.in_chart("estimate-vs-actual", "g", "recon-row")) == 4
    assert len(parsed.in_chart("estimate-vs-actual", "rect", "actual")) == 3
    assert "img" not in {tag for tag, _, _ in parsed.tags}  # the tag value stayed text
    assert "&lt;img src=x" in dom.stdout
