"""Property-based tests (Hypothesis) for `recipe cost report` and `recipe cost sample`:
whatever flags and files a user feeds them, the answer is a report or one located message
(exit 0 or 2), never a crash (exit 1) or a traceback; and for any subset of synthetic
charges in any order, the report's total is the plain sum and its groups add up to it.

In-process through typer's CliRunner, like tests/test_properties.py; the "ci" profile in
conftest.py makes the examples the same on every run.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from recipes.app import costs
from recipes.cli import app
from recipes.cost.billing import focus, synthetic
from recipes.errors import RecipeInputError

CLI_RUNS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SCENARIO = synthetic.quickstart_scenario()
CHARGES = {p: synthetic.charges(p, SCENARIO) for p in ("aws", "azure", "gcp")}
FLAGS = ("--by", "--from", "--to", "--rate", "--currency", "--output", "--month", "--format")

runner = CliRunner()


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """A scratch folder, and an empty RECIPE_HOME so reconciliation reads no real ledger."""
    with (
        tempfile.TemporaryDirectory(prefix="recipe-cost-props-") as directory,
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setenv("RECIPE_HOME", str(Path(directory) / "home"))
        yield Path(directory)


@pytest.fixture(scope="module")
def bill(scratch: Path) -> Path:
    path = scratch / "bill.parquet"
    focus.write(CHARGES["aws"], path)
    return path


def invoke(*args: Any) -> Any:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code in (0, 2), (args, result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args,
        result.exception,
    )
    assert "Traceback" not in result.output, (args, result.output)
    return result


def refused_naming(result: Any, *names: str) -> None:
    """Exit 2: a message on stderr, each of its lines naming one of `names`."""
    assert result.exit_code == 2
    lines = [line for line in result.stderr.split("\n") if line.strip()]
    assert lines, result.output
    if lines[0].startswith("Usage:"):  # click's own usage error names the option or argument
        assert "Error:" in result.stderr, result.stderr
        assert any(n in result.stderr for n in (*FLAGS, "'output'", "'sources")), result.stderr
        return
    for line in lines:
        assert any(n in line for n in names), (names, result.stderr)


# --- flags --------------------------------------------------------------------------------

# Text that has bitten before: separators, quotes for SQL and JSON paths, control
# characters, unicode, very long.
awkward = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=300),
    st.sampled_from(
        [
            "cost_center,,month",
            ",",
            " , ",
            "cost_center,cost_center",
            "a'b",
            'a"b',
            "a.b",
            "$.x",
            "tag:run_id",
            "run_id\x00",
            "\x1b[31mred",
            "line\nbreak",
            "k" * 129,
            "k" * 128,
            "ключ,键,🔑",
            "month,day,provider,service,region,account,charge,cost_kind,pricing",
            "--by",
            "-f",
            "cost_center;DROP TABLE agg",
        ]
    ),
)


@CLI_RUNS
@given(st.lists(awkward, min_size=1, max_size=3))
def test_any_by_is_a_report_or_names_the_flag(bill: Path, by: list[str]) -> None:
    args: list[Any] = ["cost", "report", bill, "-f", "json", "--no-reconcile"]
    for value in by:
        args += ["--by", value]
    result = invoke(*args)
    if result.exit_code == 2:
        refused_naming(result, "--by")


dates = st.one_of(
    st.text(max_size=20),
    st.from_regex(r"\A[0-9]{4}-[0-9]{2}(-[0-9]{2})?\Z"),
    st.dates().map(str),
    st.sampled_from(["2026-10", "2026-13", "2026-02-30", "0000-01", "9999-12-31", "2026-10-1"]),
)


@CLI_RUNS
@given(st.none() | dates, st.none() | dates)
def test_any_period_is_a_report_or_names_the_flag(
    bill: Path, start: str | None, end: str | None
) -> None:
    args: list[Any] = ["cost", "report", bill, "-f", "json", "--no-reconcile"]
    if start is not None:
        args += ["--from", start]
    if end is not None:
        args += ["--to", end]
    result = invoke(*args)
    if result.exit_code == 2:
        refused_naming(result, "--from", "--to")


rates = st.one_of(
    st.text(max_size=30),
    st.builds(
        lambda code, number: f"{code}={number}",
        st.text(max_size=4),
        st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=8)),
    ),
    st.sampled_from(["EUR=1.08", "eur=0", "EUR=-1", "EUR=nan", "EUR=inf", "EUR=1e308", "=1"]),
)


@CLI_RUNS
@given(
    st.lists(rates, max_size=3), st.none() | st.text(max_size=6) | st.sampled_from(["usd", "EUR"])
)
def test_any_rate_and_currency_is_a_report_or_names_the_flag(
    bill: Path, values: list[str], currency: str | None
) -> None:
    args: list[Any] = ["cost", "report", bill, "-f", "json", "--no-reconcile"]
    for value in values:
        args += ["--rate", value]
    if currency is not None:
        args += ["--currency", currency]
    result = invoke(*args)
    if result.exit_code == 2:
        # A currency other than the data's, without a rate for the data's, names --rate.
        refused_naming(result, "--rate", "--currency")


@pytest.mark.parametrize("end", ["9999-12-31", "9999-12"])
def test_the_last_representable_day_is_a_report_or_a_message(bill: Path, end: str) -> None:
    # Refused (billing data lives in 1970-2199), never an overflow past 9999-12-31.
    result = invoke("cost", "report", bill, "-f", "json", "--no-reconcile", "--to", end)
    assert result.exit_code == 2
    refused_naming(result, "--to")


# --- files --------------------------------------------------------------------------------

MONEY_AND_DATES = (
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ChargePeriodStart",
    "ChargePeriodEnd",
)
FOCUS_HEADER = [name for name, _ in focus.COLUMNS_1_2]
cells = st.one_of(
    st.text(max_size=12),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers().map(str),
    st.sampled_from(
        ["", "NaN", "1e400", "-0", "12,5", "2026-10-01", "2026-02-30T00:00:00Z", "1/2/2026"]
    ),
)


def _csv(header: list[str], rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8", "surrogatepass")


@st.composite
def focus_with_bad_cells(draw: Any) -> bytes:
    """A FOCUS file whose money and date columns hold anything."""
    template = focus.rows(CHARGES["aws"][:3])
    rows = []
    for row in template:
        values = {k: ("" if v is None else str(v)) for k, v in row.items()}
        for column in draw(st.lists(st.sampled_from(MONEY_AND_DATES), min_size=1, max_size=3)):
            values[column] = draw(cells)
        rows.append([values.get(h, "") for h in FOCUS_HEADER])
    return _csv(FOCUS_HEADER, rows)


contents = st.one_of(
    st.binary(max_size=400),
    st.just(b""),
    st.just(_csv(FOCUS_HEADER, [])),  # a header and no rows
    st.builds(
        _csv,
        st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=6),
        st.lists(st.lists(cells, min_size=0, max_size=6), max_size=4),
    ),
    focus_with_bad_cells(),
    st.binary(max_size=200).map(lambda b: b"PAR1" + b + b"PAR1"),
    st.lists(st.text(max_size=30), max_size=4).map(lambda lines: "\n".join(lines).encode()),
)


@CLI_RUNS
@given(contents, st.sampled_from([".csv", ".parquet", ".jsonl", ".csv.gz"]))
def test_any_file_is_a_report_or_names_the_file(scratch: Path, raw: bytes, suffix: str) -> None:
    path = scratch / f"random{suffix}"
    path.write_bytes(raw)
    result = invoke("cost", "report", path, "-f", "json", "--no-reconcile")
    if result.exit_code == 2:
        refused_naming(result, str(path), path.name)


@CLI_RUNS
@given(
    st.one_of(
        st.text(max_size=20),
        st.sampled_from(["b.parquet", "b.csv", "b.csv.gz", "b.jsonl", "b.txt", "no/dir/b.csv"]),
    ),
    st.sampled_from(list(synthetic.WRITERS)),
    st.sampled_from(["aws", "azure", "gcp"]),
    st.one_of(dates, st.sampled_from(["2026-10", "2024-02", "1999-12"])),
)
def test_sample_writes_or_names_the_file_or_flag(
    scratch: Path, name: str, fmt: str, provider: str, month: str
) -> None:
    folder = Path(tempfile.mkdtemp(dir=scratch))
    output = folder / name if name else folder
    result = invoke(
        "cost", "sample", output, "--format", fmt, "--provider", provider, "--month", month
    )
    if result.exit_code == 2:
        refused_naming(result, str(output), "--month", "--format", "--provider")


def test_sample_of_the_last_representable_month_writes_or_names_the_flag(scratch: Path) -> None:
    output = Path(tempfile.mkdtemp(dir=scratch)) / "b.csv"
    result = invoke("cost", "sample", output, "--month", "9999-12")
    assert result.exit_code == 2
    refused_naming(result, "--month")


# --- sums ---------------------------------------------------------------------------------


@settings(CLI_RUNS, max_examples=50)
@given(
    st.sampled_from(["focus", "aws-cur2", "azure-actual", "gcp-detailed"]),
    st.sampled_from([("cost_center",), ("run_id",), ("charge",), ("cost_center", "month")]),
    st.data(),
)
def test_any_subset_of_charges_sums_to_its_plain_sum(
    scratch: Path, fmt: str, by: tuple[str, ...], data: Any
) -> None:
    provider = {"focus": "aws", "aws-cur2": "aws", "azure-actual": "azure"}.get(fmt, "gcp")
    charges = CHARGES[provider]
    indices = data.draw(
        st.lists(st.integers(0, len(charges) - 1), min_size=1, max_size=60, unique=True)
    )
    chosen = [charges[i] for i in indices]
    suffix = ".jsonl" if fmt.startswith("gcp") else ".parquet"
    path = Path(tempfile.mkdtemp(dir=scratch)) / f"part_0_0001{suffix}"
    synthetic.write(fmt, chosen, path)
    try:
        r = costs.report(costs.ReportOptions(sources=[str(path)], by=by, reconcile=False))
    except RecipeInputError as exc:  # pragma: no cover - a failure, with the input shown
        raise AssertionError(f"{fmt} {indices}: {exc}") from None
    expected = synthetic.expected_totals(chosen)[None]
    assert r["total"]["billed_cost"] == pytest.approx(expected.billed, abs=1e-6)
    assert r["total"]["effective_cost"] == pytest.approx(expected.effective, abs=1e-6)
    assert sum(g["billed_cost"] for g in r["groups"]) == pytest.approx(
        r["total"]["billed_cost"], abs=1e-5
    )
    assert sum(g["effective_cost"] for g in r["groups"]) == pytest.approx(
        r["total"]["effective_cost"], abs=1e-5
    )
    assert sum(c["billed_cost"] for c in r["charges"]) == pytest.approx(
        r["total"]["billed_cost"], abs=1e-5
    )
    shares = [g["share"] for g in r["groups"] if g["share"] is not None]
    if shares and abs(r["total"]["billed_cost"]) > 1e-3:
        assert sum(shares) == pytest.approx(1.0, abs=1e-4)
