"""Cost reports on the data people actually have: found by trying to break them.

Each test is one way a report was wrong or crashed: money rounded by a guessed CSV type,
spend counted twice, days moved by the machine's time zone, bad values let through.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from datetime import date
from pathlib import Path

import duckdb
import pytest

from recipes.app import costs
from recipes.app.ledger import EstimateRow, Ledger
from recipes.cost.billing import focus, synthetic
from recipes.errors import RecipeInputError
from tests.conftest import CLI

SCENARIO = synthetic.quickstart_scenario()


@pytest.fixture(scope="module")
def charges() -> list[synthetic.Charge]:
    return synthetic.charges("aws", SCENARIO)


@pytest.fixture(scope="module")
def bill(tmp_path_factory: pytest.TempPathFactory, charges: list) -> Path:
    path = tmp_path_factory.mktemp("bill") / "focus.parquet"
    focus.write(charges, path)
    return path


def report(*sources: Path | str, **options: object) -> dict:
    options.setdefault("reconcile", False)
    return costs.report(costs.ReportOptions([str(s) for s in sources], **options))  # type: ignore[arg-type]


def billed(charges: list) -> float:
    return synthetic.expected_totals(charges)[None].billed


def close(a: float, b: float) -> bool:
    return abs(a - b) < 1e-6


def test_csv_cents_survive_a_long_run_of_whole_numbers(tmp_path: Path, bill: Path) -> None:
    """DuckDB guesses CSV types from the first rows: 25,000 zero-cost lines first made the
    cost column an integer and rounded every later cent."""
    path = tmp_path / "zeros-first.csv"
    duckdb.execute(
        f"COPY (SELECT p.* REPLACE (0.0 AS BilledCost, 0.0 AS EffectiveCost, 0.0 AS ListCost) "
        f"FROM read_parquet('{bill}') p, range(30) UNION ALL SELECT * FROM read_parquet('{bill}')) "
        f"TO '{path}' (FORMAT csv, HEADER true)"
    )
    expected = duckdb.execute(f"SELECT sum(BilledCost) FROM read_parquet('{bill}')").fetchone()[0]
    assert close(report(path)["total"]["billed_cost"], float(expected))


def test_a_file_named_twice_or_linked_is_read_once(
    tmp_path: Path, bill: Path, charges: list
) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    shutil.copy(bill, folder / "part-0.parquet")
    os.symlink(folder / "part-0.parquet", folder / "link.parquet")
    r = report(folder, folder / "part-0.parquet")
    assert close(r["total"]["billed_cost"], billed(charges))


def test_hidden_and_temporary_files_are_not_parts_of_an_export(
    tmp_path: Path, bill: Path, charges: list
) -> None:
    folder = tmp_path / "export"
    (folder / "_temporary").mkdir(parents=True)
    shutil.copy(bill, folder / "part-0.parquet")
    shutil.copy(bill, folder / ".part-0.parquet.crc.parquet")
    shutil.copy(bill, folder / "_temporary" / "part-0.parquet")
    assert close(report(folder)["total"]["billed_cost"], billed(charges))


def test_two_exports_of_the_same_account_are_flagged(
    tmp_path: Path, bill: Path, charges: list
) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    shutil.copy(bill, folder / "focus.parquet")
    focus.write(charges, folder / "focus.csv")
    r = report(folder)
    assert any("counted twice" in n and "444455556666" in n for n in r["notes"])


def test_azure_actual_and_amortized_exports_together_count_once(tmp_path: Path) -> None:
    azure = synthetic.charges("azure", SCENARIO)
    synthetic.write("azure-actual", azure, tmp_path / "exports" / "actual" / "part0.csv")
    synthetic.write("azure-amortized", azure, tmp_path / "exports" / "amortized" / "part0.csv")
    r = report(tmp_path / "exports")
    expected = synthetic.expected_totals(azure)[None]
    assert close(r["total"]["billed_cost"], expected.billed)
    assert close(r["total"]["effective_cost"], expected.effective)
    assert any("amortized" in n for n in r["notes"])


def test_days_and_months_are_utc_whatever_the_machines_time_zone(
    cli: CLI, tmp_path: Path, bill: Path
) -> None:
    zoned = tmp_path / "zoned.parquet"
    duckdb.execute(
        "SET TimeZone = 'UTC'; "
        f"COPY (SELECT * REPLACE (timezone('UTC', ChargePeriodStart) AS ChargePeriodStart) "
        f"FROM read_parquet('{bill}')) TO '{zoned}' (FORMAT parquet)"
    )
    cli.env["TZ"] = "America/Los_Angeles"
    r = cli.json("cost", "report", zoned, "--by", "day")
    assert r["period"] == {"from": "2026-10-01", "to": "2026-10-30"}
    assert r["latest_charge"].startswith("2026-10-30T23")


def test_not_final_means_the_open_month_when_the_data_cannot_say(
    tmp_path: Path, bill: Path
) -> None:
    old = tmp_path / "focus-1.1.parquet"  # before 1.2 there is no InvoiceId
    duckdb.execute(
        f"COPY (SELECT * EXCLUDE (InvoiceId, PricingCurrency) FROM read_parquet('{bill}')) "
        f"TO '{old}' (FORMAT parquet)"
    )
    assert report(old)["not_final"]["rows"] == 0  # October, reported in a later month


def test_rows_without_a_date_are_refused_not_dropped(tmp_path: Path, charges: list) -> None:
    path = tmp_path / "nodate.csv"
    focus.write(charges[:30], path)
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[5].split(",")
    cells[header.index("ChargePeriodStart")] = ""
    lines[5] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    for options in ({}, {"start": date(2026, 10, 1), "end": date(2026, 10, 31)}):
        with pytest.raises(RecipeInputError) as err:
            report(path, **options)
        problem = err.value.problems[0]
        assert problem.file == str(path) and "no readable charge date" in problem.message
        assert "ChargePeriodStart" in (problem.field or "")


@pytest.mark.parametrize("value", ["'NaN'", "'Infinity'"])
def test_a_cost_that_is_not_finite_is_refused(tmp_path: Path, bill: Path, value: str) -> None:
    path = tmp_path / "odd.parquet"
    duckdb.execute(
        f"COPY (SELECT * REPLACE (CASE WHEN BilledCost > 1 THEN CAST({value} AS DOUBLE) "
        f"ELSE BilledCost END AS BilledCost) FROM read_parquet('{bill}')) TO '{path}' (FORMAT parquet)"
    )
    with pytest.raises(RecipeInputError, match="NaN or infinite"):
        report(path)


def test_text_in_a_parquet_cost_column_is_named_with_its_row(tmp_path: Path, bill: Path) -> None:
    path = tmp_path / "text-cost.parquet"
    duckdb.execute(
        f"COPY (SELECT * REPLACE (CASE WHEN row_number() OVER () = 4 THEN 'abc' "
        f"ELSE CAST(BilledCost AS VARCHAR) END AS BilledCost) FROM read_parquet('{bill}')) "
        f"TO '{path}' (FORMAT parquet)"
    )
    with pytest.raises(RecipeInputError) as err:
        report(path)
    problem = err.value.problems[0]
    assert (problem.field, problem.line) == ("BilledCost", 4) and "'abc'" in problem.message


def test_currency_codes_are_compared_in_upper_case(tmp_path: Path, charges: list) -> None:
    mixed = [replace(c, currency="usd") if i % 7 == 0 else c for i, c in enumerate(charges)]
    focus.write(mixed, tmp_path / "mixed.parquet")
    r = report(tmp_path / "mixed.parquet")
    assert r["currency"] == "USD" and close(r["total"]["billed_cost"], billed(charges))


def test_a_currency_the_data_does_not_have_says_so(bill: Path) -> None:
    with pytest.raises(RecipeInputError, match="is in USD .*, not EUR"):
        report(bill, currency="EUR")


def test_estimates_in_another_currency_are_converted_or_left_out(
    home: Path, tmp_path: Path, charges: list
) -> None:
    eur = [replace(c, currency="EUR") for c in charges]
    focus.write(eur, tmp_path / "eur.parquet")
    run = SCENARIO.runs[0]
    Ledger().record_estimate(
        EstimateRow("run", run.run_id, "aws", "us-east-1", "USD", 4.0, 2.5, {}, 1791190800.0)
    )
    plain = report(tmp_path / "eur.parquet", reconcile=True)
    assert plain["reconciliation"] == []
    assert any("--rate USD=" in n for n in plain["notes"])
    converted = report(tmp_path / "eur.parquet", reconcile=True, rates={"USD": 0.5})
    (row,) = converted["reconciliation"]
    assert row["estimate"] == 2.0 and all("$" not in e for e in row["explanations"])


def test_estimates_of_providers_the_data_does_not_cover_are_left_out(
    home: Path, bill: Path
) -> None:
    Ledger().record_estimate(
        EstimateRow("run", "gcp-run", "gcp", "us-central1", "USD", 4.0, 2.5, {}, 1791190800.0)
    )
    assert report(bill, reconcile=True)["reconciliation"] == []


def test_outputs_to_unwritable_places_and_clashing_columns(
    cli: CLI, tmp_path: Path, bill: Path
) -> None:
    folder = tmp_path / "a-directory.parquet"
    folder.mkdir()
    for args in (
        ("-f", "parquet", "-o", folder),
        ("-f", "csv", "-o", folder),
        ("--focus-export", folder),
    ):
        result = cli("cost", "report", bill, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert str(folder) in result.stderr and "Traceback" not in result.stderr
    sample = cli("cost", "sample", folder)
    assert sample.returncode == 2 and "Traceback" not in sample.stderr
    out = tmp_path / "by-currency.csv"
    made = cli("cost", "report", bill, "--by", "currency", "-f", "csv", "-o", out)
    assert made.returncode == 0, made.stderr
    assert out.read_text().splitlines()[0].startswith("key_currency,billed_cost")


def test_text_output_to_a_file_and_terminal_escapes_are_neutralised(
    cli: CLI, tmp_path: Path, charges: list
) -> None:
    hostile = [
        replace(c, tags={**c.tags, "cost_center": '\x1b[31m=HYPERLINK("x")'})
        if c.tags.get("cost_center") == "cc-4711"
        else c
        for c in charges
    ]
    path = tmp_path / "hostile.parquet"
    focus.write(hostile, path)
    out = tmp_path / "report.txt"
    result = cli("cost", "report", path, "-o", out)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "\x1b" not in text and "?[31m" in text and "(untagged)" in text
    csv_text = cli("cost", "report", path, "-f", "csv").stdout
    assert "'\x1b" not in csv_text  # not a formula start; the escape is data, kept as is
    formula = [replace(c, tags={**c.tags, "cost_center": "=1+1"}) if c.tags else c for c in charges]
    focus.write(formula, tmp_path / "formula.parquet")
    rows = cli("cost", "report", tmp_path / "formula.parquet", "-f", "csv").stdout
    assert "'=1+1" in rows


def test_json_output_is_strict_json(cli: CLI, bill: Path) -> None:
    result = cli("cost", "report", bill, "-f", "json")
    json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))


def test_a_charge_time_with_an_offset_lands_on_its_utc_day(tmp_path: Path, charges: list) -> None:
    path = tmp_path / "offsets.csv"
    focus.write(charges[:5], path)
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[1].split(",")
    cells[header.index("ChargePeriodStart")] = "2026-10-01T01:00:00+02:00"
    lines[1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    days = {g["key"]["day"] for g in report(path, by=("day",))["groups"]}
    assert "2026-09-30" in days
