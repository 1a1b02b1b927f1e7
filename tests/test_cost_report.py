"""`recipe cost report`: FOCUS data in every physical shape, money kept apart by kind,
currencies, untagged spend, bad input, outputs, and reconciliation with the ledger.

Totals are checked against `synthetic.expected_totals`, a plain-Python sum over the
generated charges: an independent computation, not DuckDB reading its own output.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from providers.base import EndpointRef, State
from recipes.app import costs
from recipes.app.ledger import EstimateRow, Ledger
from recipes.cost.billing import focus, synthetic
from recipes.errors import RecipeInputError
from tests.conftest import CLI, REPO

SCENARIO = synthetic.quickstart_scenario()


def close(a: float, b: float) -> bool:
    return abs(a - b) < 1e-6


@pytest.fixture(scope="module")
def aws_charges() -> list[synthetic.Charge]:
    return synthetic.charges("aws", SCENARIO)


@pytest.fixture
def focus_file(tmp_path: Path, aws_charges: list[synthetic.Charge]) -> Path:
    path = tmp_path / "focus.parquet"
    focus.write(aws_charges, path)
    return path


def report(*sources: Path | str, **options: object) -> dict:
    options.setdefault("reconcile", False)
    return costs.report(costs.ReportOptions([str(s) for s in sources], **options))  # type: ignore[arg-type]


# --- acceptance: the quickstart's tags, through the CLI -------------------------------------


def test_report_of_a_generated_focus_file_shows_groups_untagged_and_exact_totals(
    cli: CLI, tmp_path: Path
) -> None:
    bill = tmp_path / "bill.parquet"
    made = cli("cost", "sample", bill, "--month", "2026-10")
    assert made.returncode == 0, made.stderr
    result = cli("cost", "report", bill, "--by", "cost_center,month", "--format", "json")
    assert result.returncode == 0, result.stderr
    r = json.loads(result.stdout)

    charges = synthetic.charges("aws", synthetic.quickstart_scenario(date(2026, 10, 1), 31))
    expected = synthetic.expected_totals(charges)[None]
    assert close(r["total"]["billed_cost"], expected.billed)
    assert close(r["total"]["effective_cost"], expected.effective)
    assert close(r["total"]["list_cost"], expected.list)
    by_center = synthetic.expected_totals(charges, key=lambda c: c.tags.get("cost_center"))
    got = {g["key"]["cost_center"]: g["billed_cost"] for g in r["groups"]}
    assert set(got) == {"demo", "cc-4711", None}
    for center, totals in by_center.items():
        assert close(got[center], totals.billed), center
    assert r["untagged"]["keys"] == ["cost_center"]
    assert close(r["untagged"]["billed_cost"], by_center[None].billed)
    assert close(r["untagged"]["share"], round(by_center[None].billed / expected.billed, 6))
    assert [g for g in r["groups"] if g["key"]["cost_center"] is None][0]["untagged"] is True
    assert r["sources"][0]["format"].startswith("FOCUS 1.2")
    assert r["period"] == {"from": "2026-10-01", "to": "2026-10-31"}
    assert r["by"] == ["cost_center", "month"]

    text = cli("cost", "report", bill, "--by", "cost_center")
    assert text.returncode == 0, text.stderr
    assert "(untagged)" in text.stdout and "demo" in text.stdout and "Tax" in text.stdout


# --- money ---------------------------------------------------------------------------------


def test_credits_refunds_and_tax_stay_apart(focus_file: Path, aws_charges: list) -> None:
    r = report(focus_file)
    expected = synthetic.expected_totals(aws_charges)[None].by_kind
    got = {c["kind"]: c["billed_cost"] for c in r["charges"]}
    assert set(got) == {"Usage", "Credit", "Refund", "Tax"}
    for kind, amount in expected.items():
        assert close(got[kind], amount), kind
    assert got["Credit"] < 0 and got["Refund"] < 0 and got["Tax"] > 0
    # Account-level lines carry no tags: counted in the untagged spend and named there.
    assert close(r["untagged"]["account_level"], got["Credit"] + got["Refund"] + got["Tax"])


def test_spot_list_cost_is_above_effective(focus_file: Path, aws_charges: list) -> None:
    r = report(focus_file, by=("pricing",))
    spot = next(g for g in r["groups"] if g["key"]["pricing"] == "Dynamic")
    assert spot["list_cost"] > spot["effective_cost"] > 0


def test_rows_not_yet_final_and_the_latest_charge_are_shown(focus_file: Path) -> None:
    r = report(focus_file)
    assert r["not_final"]["rows"] > 0
    assert (
        r["not_final"]["since"] == (SCENARIO.start + timedelta(days=SCENARIO.days - 2)).isoformat()
    )
    assert r["latest_charge"].startswith("2026-10-30T23")


def test_mixed_currencies_are_refused_unless_a_rate_is_stated(
    tmp_path: Path, aws_charges: list
) -> None:
    eur = [replace(c, currency="EUR") for c in aws_charges[:50]]
    focus.write(aws_charges, tmp_path / "usd.parquet")
    focus.write(eur, tmp_path / "eur.csv")
    with pytest.raises(RecipeInputError) as err:
        report(tmp_path)
    text = str(err.value)
    assert "mixes currencies" in text and "EUR" in text and "--rate" in text

    r = report(tmp_path, rates={"EUR": 2.0})
    assert r["currency"] == "USD"
    usd = synthetic.expected_totals(aws_charges)[None].billed
    eur_sum = synthetic.expected_totals(eur)[None].billed
    assert close(r["total"]["billed_cost"], usd + 2.0 * eur_sum)
    assert any("EUR" in n and "2.0" in n for n in r["notes"])


def test_a_period_filters_rows_and_no_rows_is_an_error(focus_file: Path, aws_charges: list) -> None:
    r = report(focus_file, start=date(2026, 10, 8), end=date(2026, 10, 8))
    day = [c for c in aws_charges if c.start.date() == date(2026, 10, 8)]
    assert close(r["total"]["billed_cost"], synthetic.expected_totals(day)[None].billed)
    with pytest.raises(RecipeInputError, match="no billing rows in the period"):
        report(focus_file, start=date(2027, 1, 1))


# --- FOCUS in every physical shape -----------------------------------------------------------


def _rewrite(src: Path, dest: Path, select: str) -> None:
    con = duckdb.connect()
    fmt = "parquet" if dest.suffix == ".parquet" else "csv, HEADER true"
    con.execute(f"COPY (SELECT {select} FROM read_parquet('{src}')) TO '{dest}' (FORMAT {fmt})")


@pytest.mark.parametrize(
    ("name", "select", "version"),
    [
        # AWS writes Tags as a MAP in Parquet.
        (
            "map.parquet",
            "* REPLACE (CAST(json_transform(Tags, '\"MAP(VARCHAR, VARCHAR)\"') "
            "AS MAP(VARCHAR, VARCHAR)) AS Tags)",
            None,
        ),
        # FOCUS 1.0: without the columns 1.1 and 1.2 added.
        (
            "v10.csv",
            "* EXCLUDE (InvoiceId, PricingCurrency, ServiceSubcategory, SkuMeter, "
            "BillingAccountType, SubAccountType)",
            "FOCUS 1.0",
        ),
        # FOCUS 1.3: ServiceProviderName beside (and later instead of) ProviderName.
        (
            "v13.parquet",
            "* EXCLUDE (ProviderName), ProviderName AS ServiceProviderName",
            "FOCUS 1.3",
        ),
    ],
)
def test_focus_versions_and_shapes_give_the_same_totals(
    tmp_path: Path, focus_file: Path, aws_charges: list, name: str, select: str, version: str | None
) -> None:
    dest = tmp_path / name
    _rewrite(focus_file, dest, select)
    r = report(dest, by=("cost_center",))
    expected = synthetic.expected_totals(aws_charges, key=lambda c: c.tags.get("cost_center"))
    for g in r["groups"]:
        assert close(g["billed_cost"], expected[g["key"]["cost_center"]].billed)
    if version:
        assert r["sources"][0]["format"].startswith(version)


def test_bigquery_style_tags_as_key_value_structs(
    tmp_path: Path, focus_file: Path, aws_charges: list
) -> None:
    dest = tmp_path / "gcp-focus.parquet"
    _rewrite(
        focus_file,
        dest,
        "* REPLACE (map_entries(CAST(json_transform(Tags, '\"MAP(VARCHAR, VARCHAR)\"') "
        "AS MAP(VARCHAR, VARCHAR))) AS Tags)",
    )
    r = report(dest, by=("run_id",))
    expected = synthetic.expected_totals(aws_charges, key=lambda c: c.tags.get("run_id"))
    got = {g["key"]["run_id"]: g["billed_cost"] for g in r["groups"]}
    assert set(got) == set(expected)
    for run_id, totals in expected.items():
        assert close(got[run_id], totals.billed)


def test_a_directory_of_parts_in_mixed_file_types(tmp_path: Path, aws_charges: list) -> None:
    half = len(aws_charges) // 2
    focus.write(aws_charges[:half], tmp_path / "export" / "part-0.parquet")
    focus.write(aws_charges[half:], tmp_path / "export" / "part-1.csv.gz")
    (tmp_path / "export" / "manifest.json").write_text("{}")
    r = report(tmp_path / "export")
    assert close(r["total"]["billed_cost"], synthetic.expected_totals(aws_charges)[None].billed)
    assert len(r["sources"]) == 2


# --- bad input -----------------------------------------------------------------------------


def test_missing_and_unknown_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(RecipeInputError, match="no such file"):
        report(tmp_path / "nope.parquet")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(RecipeInputError, match="not a billing file"):
        report(tmp_path / "notes.txt")
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(RecipeInputError) as err:
        report(other)
    assert "other.csv" in str(err.value) and "BilledCost" in str(err.value)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(RecipeInputError, match="broken.parquet"):
        report(broken)


def test_a_malformed_amount_names_file_line_and_column(tmp_path: Path, aws_charges: list) -> None:
    path = tmp_path / "bad.csv"
    focus.write(aws_charges[:20], path)
    lines = path.read_text().splitlines()
    header = next(csv.reader([lines[0]]))
    row = next(csv.reader([lines[7]]))
    row[header.index("BilledCost")] = "12,5 USD"
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(row)
    lines[7] = buffer.getvalue()
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecipeInputError) as err:
        report(path)
    problem = err.value.problems[0]
    assert problem.file == str(path) and problem.line == 8 and problem.field == "BilledCost"
    assert "'12,5 USD' is not a number" in problem.message


def test_cli_bad_flags_exit_2_with_one_message(cli: CLI, focus_file: Path) -> None:
    for args, needle in (
        (("--from", "yesterday"), "--from"),
        (("--from", "2026-10-05", "--to", "2026-10-01"), "--from is after --to"),
        (("--rate", "EUR"), "--rate"),
        (("--currency", "dollars"), "--currency"),
        (("--by", "cost_center,,month"), "--by"),
        (("--format", "parquet"), "--output"),
    ):
        result = cli("cost", "report", focus_file, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert needle in result.stderr and "Traceback" not in result.stderr, args
    unknown = cli("cost", "report", "ftp://billing/x.csv")
    assert unknown.returncode == 2 and "not a billing source" in unknown.stderr


# --- outputs -------------------------------------------------------------------------------


def test_csv_parquet_and_html_outputs(cli: CLI, tmp_path: Path, focus_file: Path) -> None:
    out = tmp_path / "r.parquet"
    assert (
        cli(
            "cost", "report", focus_file, "--by", "cost_center,month", "-f", "parquet", "-o", out
        ).returncode
        == 0
    )
    rows = (
        duckdb.connect().execute(f"SELECT cost_center, month, billed_cost FROM '{out}'").fetchall()
    )
    via_json = cli.json("cost", "report", focus_file, "--by", "cost_center,month")
    assert sorted(rows, key=str) == sorted(
        [
            (g["key"]["cost_center"], g["key"]["month"], g["billed_cost"])
            for g in via_json["groups"]
        ],
        key=str,
    )
    text = cli("cost", "report", focus_file, "-f", "csv")
    assert text.returncode == 0
    parsed = list(csv.DictReader(io.StringIO(text.stdout)))
    assert {r["cost_center"] for r in parsed} == {"demo", "cc-4711", ""}
    page = tmp_path / "r.html"
    assert cli("cost", "report", focus_file, "-f", "html", "-o", page).returncode == 0
    html = page.read_text()
    assert (
        'data-chart="cost-over-time"' in html and "http://" not in html and "https://" not in html
    )


# --- the FOCUS export ----------------------------------------------------------------------

FOCUS_VENV = REPO / ".venv-focus"
# focus-validator 1.0.0 (the newest on PyPI) checks FOCUS 1.0 with some pre-release column
# names (InvoiceIssuer, Provider, Publisher, ResourceID; ChargeType in a SkuPriceId rule);
# FOCUS 1.0 names them InvoiceIssuerName, ProviderName, PublisherName, ResourceId,
# ChargeCategory. Those rules are skipped; test_focus_export_has_the_1_0_columns checks
# the released names instead.
PRE_RELEASE_RULES = [
    "InvoiceIssuer_Required",
    "Provider_Required",
    "Publisher_Required",
    "ResourceID_Required",
    "SkuPriceId_Nullable",
]


def test_focus_export_passes_the_finops_validator(tmp_path: Path, focus_file: Path) -> None:
    exe = FOCUS_VENV / "bin" / "focus-validator"
    if not exe.exists():
        pytest.skip("focus-validator is not installed (`make tools` installs it in .venv-focus)")
    export = tmp_path / "export.parquet"
    report(focus_file, focus_export=export)
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("overrides:\n" + "".join(f"  - {r}\n" for r in PRE_RELEASE_RULES))
    # It reads its currency list from a path relative to the working directory.
    site = next((FOCUS_VENV / "lib").glob("python3*/site-packages"))
    result = subprocess.run(
        [str(exe), "--data-file", str(export), "--validate-version", "1.0", "--override-file", str(overrides)],
        capture_output=True, text=True, cwd=site, timeout=300,
    )  # fmt: skip
    assert "Validation succeeded" in result.stdout + result.stderr, result.stdout[-3000:]


def test_focus_export_has_the_1_0_columns_and_reads_back_the_same(
    tmp_path: Path, focus_file: Path, aws_charges: list
) -> None:
    export = tmp_path / "export.csv"
    first = report(focus_file, by=("cost_center",), focus_export=export)
    header = export.read_text().splitlines()[0].split(",")
    for column in (
        "InvoiceIssuerName",
        "ProviderName",
        "PublisherName",
        "ResourceId",
        "ChargeCategory",
        "Tags",
    ):
        assert column in header
    again = report(export, by=("cost_center",))
    assert again["groups"] == first["groups"]
    assert again["charges"] == first["charges"]


# --- reconciliation with the ledger's estimates -------------------------------------------------


def _at(day: int, hour: int = 9) -> float:
    start = datetime(
        SCENARIO.start.year, SCENARIO.start.month, SCENARIO.start.day, tzinfo=timezone.utc
    )
    return (start + timedelta(days=day, hours=hour)).timestamp()


def _ledger_for(provider: str, home: Path) -> Ledger:
    """The ledger as launches and a deploy would have left it for the synthetic runs."""
    ledger = Ledger()
    from providers.base import RunRef

    for run in SCENARIO.runs:
        planned = run.hours * 0.9  # the estimate was a little optimistic
        ledger.record(RunRef(provider, run.run_id, {}), run.recipe, "/r.yaml", State.QUEUED)
        ledger.record_estimate(
            EstimateRow(
                "run", run.run_id, provider, "us-east-1", "USD",
                usd=round(planned * 1.515 * run.nodes * (0.35 if run.spot else 1), 4),
                hours=planned,
                detail={"nodes": run.nodes, "spot": run.spot, "cluster": "gpu-cluster"},
                created_at=_at(run.day),
            )
        )  # fmt: skip
        ledger.update_state(run.run_id, State.SUCCEEDED)
    with ledger._db() as db:  # the runs' real submit and finish times
        for run in SCENARIO.runs:
            db.execute(
                "UPDATE runs SET created_at = ?, updated_at = ? WHERE run_id = ?",
                (_at(run.day), _at(run.day) + run.hours * 3600, run.run_id),
            )
    ref = EndpointRef(provider, SCENARIO.endpoint, "quickstart-v1", {})
    plan = {
        "region": "us-east-1",
        "estimate": {"currency": "USD", "hourly_usd": 1.21, "instance_type": "ml.g5.2xlarge"},
        "compute": {"min_replicas": 1, "max_replicas": 2},
        "artifact": {"run_id": SCENARIO.endpoint_run},
    }
    ledger.record_endpoint(ref, SCENARIO.endpoint_run, plan)
    with ledger._db() as db:
        db.execute("UPDATE estimates SET created_at = ? WHERE kind = 'endpoint'", (_at(0, 0),))
    return ledger


def test_each_run_and_endpoint_beside_its_estimate(
    home: Path, focus_file: Path, aws_charges: list
) -> None:
    _ledger_for("aws", home)
    r = report(focus_file, by=("run_id",), reconcile=True)
    rows = {(x["kind"], x["id"]): x for x in r["reconciliation"]}
    assert len(rows) == len(SCENARIO.runs) + 1
    per_run = synthetic.expected_totals(
        aws_charges, key=lambda c: (c.tags.get("run_id"), "endpoint" in c.tags)
    )
    for run in SCENARIO.runs:
        row = rows[("run", run.run_id)]
        actual = per_run[(run.run_id, False)].effective
        assert close(row["actual"], actual), run.run_id
        assert close(row["variance"], actual - row["estimate"])
        assert row["explanations"][0].startswith(
            f"compute: {run.hours * run.nodes:.2f} instance-hours billed"
        )
    spot = rows[("run", SCENARIO.runs[1].run_id)]
    assert any(e.startswith("spot: USD ") for e in spot["explanations"])
    endpoint = rows[("endpoint", SCENARIO.endpoint)]
    hours = 24 * SCENARIO.days
    assert close(endpoint["estimate"], round(1.21 * hours, 6))
    assert close(endpoint["actual"], per_run[(SCENARIO.endpoint_run, True)].effective)
    assert f"{hours} instance-hours" in endpoint["explanations"][0]


def test_runs_without_billing_rows_say_so(home: Path, focus_file: Path, aws_charges: list) -> None:
    _ledger_for("gcp", home)  # estimates on another provider than the data
    r = report(focus_file, reconcile=True)
    assert all(x["actual"] is None for x in r["reconciliation"])
    assert all("no billing rows" in x["explanations"][0] for x in r["reconciliation"])


def test_azure_runs_share_their_clusters_cost_by_node_hours(home: Path, tmp_path: Path) -> None:
    charges = synthetic.charges("azure", SCENARIO)
    path = tmp_path / "azure-focus.parquet"
    focus.write(charges, path)
    _ledger_for("azure", home)
    r = report(path, reconcile=True)
    runs = [x for x in r["reconciliation"] if x["kind"] == "run"]
    assert all(x["split"] for x in runs)
    cluster = sum(
        c.effective_cost for c in charges if c.resource_id.endswith("/computes/gpu-cluster")
    )
    assert close(sum(x["actual"] for x in runs), cluster)
    node_hours = {run.run_id: run.hours * run.nodes for run in SCENARIO.runs}
    total = sum(node_hours.values())
    for x in runs:
        assert close(x["actual"], cluster * node_hours[x["id"]] / total)
        assert "a split" in x["explanations"][0]


def test_estimates_are_kept_when_runs_launch_and_endpoints_deploy(home: Path) -> None:
    from providers.base import Plan, RunIdentity
    from recipes.app.ledger import run_estimate
    from recipes.cost.estimate import Estimate

    plan = Plan(
        provider="aws",
        identity=RunIdentity(run_id="r-1", recipe_name="r", recipe_hash="h"),
        requests=(),
        compute={"instance_type": "ml.g5.2xlarge", "nodes": 2, "spot": True, "region": "us-east-1"},
        tags={},
        estimate=Estimate(hours=1.5, on_demand_usd=4.5, spot_usd=1.6),
    )
    row = run_estimate(plan)
    assert (row.usd, row.hours, row.detail["nodes"]) == (1.6, 1.5, 2)
    ledger = Ledger()
    ledger.record_estimate(row)
    ref = EndpointRef("aws", "ep", "ep-v1", {})
    ledger.record_endpoint(
        ref, "r-1", {"estimate": {"hourly_usd": 1.13}, "compute": {"min_replicas": 1}}
    )
    kinds = {(e.kind, e.id): e for e in ledger.estimates()}
    assert kinds[("run", "r-1")].usd == 1.6
    assert kinds[("endpoint", "ep")].usd == 1.13 and kinds[("endpoint", "ep")].ended_at is None
    ledger.forget_endpoint("aws", "ep")
    assert next(e for e in ledger.estimates() if e.kind == "endpoint").ended_at is not None


def test_launch_records_the_plans_estimate(
    home: Path, write_recipe, small_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recipes.app import runs
    from tests.conftest import tiny_recipe

    monkeypatch.setenv("SAGEMAKER_ROLE_ARN", "arn:aws:iam::111122223333:role/sm")
    monkeypatch.setenv("RECIPE_AWS_BUCKET", "s3://bucket/recipes")
    recipe = write_recipe(tiny_recipe(small_data))
    plan = runs.prepare(recipe, [], "aws").plan

    from providers.base import RunRef, Submitted

    backend = runs.prepare(recipe, [], "aws").backend  # the real SageMaker backend: its plan
    backend.submit = lambda p: Submitted(RunRef("aws", p.identity.run_id, {}), existing=False)  # type: ignore[method-assign]
    runs.run(recipe, [], "aws", backend=backend)
    estimate = next(e for e in Ledger().estimates() if e.kind == "run")
    assert estimate.provider == "aws" and estimate.usd == plan.estimate.on_demand_usd
    assert estimate.detail["instance_type"] == plan.compute["instance_type"]


def test_cost_commands_in_a_fresh_process_do_not_import_cloud_sdks(
    tmp_path: Path, focus_file: Path
) -> None:
    probe = (
        "import sys, json\nfrom recipes.cli import app\n"
        "try:\n    app(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)"
    )
    env = {**os.environ, "RECIPE_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [sys.executable, "-c", probe, "cost", "report", str(focus_file), "-f", "json"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
    )  # fmt: skip
    modules = json.loads(result.stderr.strip().splitlines()[-1])
    sdks = ("boto3", "azure.core", "google.cloud.bigquery", "google.auth", "torch")
    assert not [m for m in modules if m.startswith(sdks)]
    assert "duckdb" in modules


def test_the_html_report_of_real_data_draws_in_a_headless_browser(
    home: Path, cli: CLI, tmp_path: Path, focus_file: Path
) -> None:
    """The whole path: billing file and ledger -> `recipe cost report -f html` -> Chromium."""
    from tests.test_cost_html import Page, _chromium, _headless, _png

    binary = _chromium()
    if binary is None:
        pytest.skip("no chromium binary (`make tools` installs Debian's chromium)")
    _ledger_for("aws", home)
    page = tmp_path / "report.html"
    made = cli("cost", "report", focus_file, "--by", "cost_center,month", "-f", "html", "-o", page)
    assert made.returncode == 0, made.stderr
    png = tmp_path / "report.png"
    _headless(
        binary, tmp_path / "p1", f"--screenshot={png}", "--window-size=1280,2400", page.as_uri()
    )
    width, height, colours = _png(png)
    assert (width, height) == (1280, 2400) and len(colours) > 50
    dom = _headless(binary, tmp_path / "p2", "--dump-dom", page.as_uri())
    parsed = Page(dom.stdout)
    assert len(parsed.in_chart("cost-over-time", "rect", "bar")) == SCENARIO.days
    assert len(parsed.in_chart("estimate-vs-actual", "g", "recon-row")) == len(SCENARIO.runs) + 1
