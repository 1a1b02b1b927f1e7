"""Google Cloud billing: the BigQuery billing export (standard and detailed) as Parquet and
JSON lines files, gs:// downloads through google-cloud-storage, and the bq: aggregation
through google-cloud-bigquery against a REST fake."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

import pytest

from providers.base import BillingQuery
from providers.gcp.billing import GcpBilling, aggregate_sql, table_id
from recipes.cost.billing import files, focus, gcp, synthetic
from recipes.cost.billing.schema import COLUMNS, tag_column
from recipes.errors import ProviderError, RecipeInputError
from tests.fakes import bigquery as fakebq
from tests.fakes.gcp import fast_retries

TAG_KEYS = ("project", "run_id", "cost_center")


@pytest.fixture(scope="module")
def charges() -> list[synthetic.Charge]:
    return synthetic.charges("gcp", synthetic.quickstart_scenario())


def read(path: Path, tag_keys: Sequence[str] = TAG_KEYS) -> tuple[object, object, str]:
    """The file through the format that matches it: (connection, normalized SQL, name)."""
    con = files.connect()
    table = files.open_table(con, files.kind_of(path), [path])
    found = [
        f for f in (gcp.STANDARD, gcp.DETAILED, focus.FORMAT) if f.matches(table.columns, str(path))
    ]
    assert len(found) == 1, [f.name for f in found]
    return con, found[0].select(table, tag_keys), found[0].name


def close(a: float, b: float) -> bool:
    return abs(a - b) < 1e-6


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
@pytest.mark.parametrize("name", ["gcp-standard", "gcp-detailed"])
def test_export_totals_equal_synthetic(charges, tmp_path: Path, name: str, suffix: str) -> None:
    path = tmp_path / f"export{suffix}"
    synthetic.write(name, charges, path)
    con, sql, matched = read(path)
    assert matched == name
    expected = synthetic.expected_totals(charges)[None]
    billed, effective, listed = con.execute(
        f"SELECT sum(BilledCost), sum(EffectiveCost), sum(ListCost) FROM ({sql})"
    ).fetchone()
    assert close(billed, expected.billed) and close(effective, expected.effective)
    assert close(listed, expected.list)
    by_kind = dict(
        con.execute(f"SELECT x_ChargeKind, sum(BilledCost) FROM ({sql}) GROUP BY 1").fetchall()
    )
    assert set(by_kind) == set(expected.by_kind)
    assert all(close(by_kind[k], v) for k, v in expected.by_kind.items())
    # Every normalized column and one column per requested tag key.
    described = [r[0] for r in con.execute(f"DESCRIBE {sql}").fetchall()]
    assert set(COLUMNS) | {tag_column(k) for k in TAG_KEYS} == set(described)


@pytest.mark.parametrize("name", ["gcp-standard", "gcp-detailed"])
def test_label_totals_and_row_rules(charges, tmp_path: Path, name: str) -> None:
    path = tmp_path / "export.parquet"
    synthetic.write(name, charges, path)
    con, sql, _ = read(path)
    for key in TAG_KEYS:
        expected = synthetic.expected_totals(charges, key=lambda c, k=key: c.tags.get(k))
        got = dict(
            con.execute(
                f'SELECT "{tag_column(key)}", sum(BilledCost) FROM ({sql}) GROUP BY 1'
            ).fetchall()
        )
        assert set(got) == set(expected)
        assert all(close(got[v], t.billed) for v, t in expected.items()), key
    # Spot SKUs are Dynamic; the Credit is its own row; x_Final unknown; no resource in standard.
    spot = sum(
        c.billed_cost for c in charges if c.pricing == "Dynamic" and c.charge_kind == "Usage"
    )
    (dynamic,) = con.execute(
        f"SELECT sum(BilledCost) FROM ({sql}) WHERE PricingCategory = 'Dynamic'"
    ).fetchone()
    assert close(dynamic, spot)
    assert con.execute(f"SELECT count(*) FROM ({sql}) WHERE x_Final IS NOT NULL").fetchone() == (0,)
    credit = con.execute(
        f"SELECT ChargeCategory, ChargeDescription, ListCost FROM ({sql}) WHERE x_ChargeKind = 'Credit'"
    ).fetchall()
    assert credit == [("Credit", "Promotional credit", 0.0)]
    refund = con.execute(
        f"SELECT ChargeCategory FROM ({sql}) WHERE x_ChargeKind = 'Refund'"
    ).fetchall()
    assert refund == [("Adjustment",)]
    (resources,) = con.execute(f"SELECT count(ResourceId) FROM ({sql})").fetchone()
    assert (resources > 0) == (name == "gcp-detailed")
    assert con.execute(f"SELECT DISTINCT ProviderName FROM ({sql})").fetchall() == [("gcp",)]


def test_credit_rides_on_a_usage_row(charges) -> None:
    """The synthetic Credit is a PROMOTION credit in a usage row's credits array, the row's
    cost unchanged (credits are never netted into cost)."""
    exported = gcp.rows(charges, detailed=False)
    carriers = [r for r in exported if r["credits"]]
    assert len(carriers) == 1 and carriers[0]["cost_type"] == "regular"
    assert carriers[0]["credits"][0]["type"] == "PROMOTION"
    assert carriers[0]["cost"] > 0
    assert len(exported) == len(charges) - 1


def test_formats_are_told_apart(charges, tmp_path: Path) -> None:
    synthetic.write("focus", charges, tmp_path / "focus.parquet")
    con = files.connect()
    table = files.open_table(con, "parquet", [tmp_path / "focus.parquet"])
    assert not gcp.STANDARD.matches(table.columns, "") and not gcp.DETAILED.matches(
        table.columns, ""
    )
    for name in ("gcp-standard", "gcp-detailed"):
        path = tmp_path / f"{name}.jsonl"
        synthetic.write(name, charges, path)
        table = files.open_table(con, "json", [path])
        assert not focus.FORMAT.matches(table.columns, str(path))
        assert (
            "detailed" in gcp.DETAILED.describe(table.columns, str(path)) or name == "gcp-standard"
        )


def test_json_export_with_no_labels_or_credits(tmp_path: Path) -> None:
    """A JSON part whose arrays are all empty reads them as JSON[]: still readable."""
    scenario = synthetic.quickstart_scenario()
    plain = [
        c for c in synthetic.charges("gcp", scenario) if not c.tags and c.charge_kind == "Usage"
    ]
    path = tmp_path / "part.jsonl"
    gcp.write_standard(plain, path)
    con, sql, _ = read(path, ("project",))
    total, tagged = con.execute(
        f'SELECT sum(BilledCost), count("tag:project") FROM ({sql})'
    ).fetchone()
    assert close(total, sum(c.billed_cost for c in plain)) and tagged == 0


# --- gs:// ----------------------------------------------------------------------------------


def test_download_lists_pages_and_skips_manifests(charges, tmp_path: Path) -> None:
    built = tmp_path / "built"
    gcp.write_standard(charges[:400], built / "a.parquet")
    gcp.write_standard(charges[400:], built / "b.parquet")
    objects = {
        "billing-exports/gcp/2026-10/billing-000000000000.parquet": (
            built / "a.parquet"
        ).read_bytes(),
        "billing-exports/gcp/2026-10/billing-000000000001.parquet": (
            built / "b.parquet"
        ).read_bytes(),
        "billing-exports/gcp/2026-10/manifest.json": b'{"files": 2}',
        "billing-exports/gcp/2026-10/_SUCCESS": b"",
        "billing-exports/other/x.parquet": b"not ours",
    }
    with fakebq.gcs_listing(objects, page_size=2) as server:
        backend = GcpBilling(storage=fakebq.storage_client(server))
        got = backend.download("gs://billing-exports/gcp/", tmp_path / "down")
        listings = [s for s in server.seen if s.path.endswith("/o")]
    assert sorted(p.name for p in got) == [
        "billing-000000000000.parquet",
        "billing-000000000001.parquet",
    ]
    assert len(listings) == 2  # four objects under the prefix, two per page
    con = files.connect()
    table = files.open_table(con, "parquet", got)
    sql = gcp.STANDARD.select(table, ())
    (billed,) = con.execute(f"SELECT sum(BilledCost) FROM ({sql})").fetchone()
    assert close(billed, synthetic.expected_totals(charges)[None].billed)


def test_download_of_nothing_names_the_uri(tmp_path: Path) -> None:
    with fakebq.gcs_listing({"billing-exports/readme.txt": b"hi"}) as server:
        backend = GcpBilling(storage=fakebq.storage_client(server))
        with pytest.raises(RecipeInputError) as raised:
            backend.download("gs://billing-exports/gcp/", tmp_path)
    assert raised.value.problems[0].file == "gs://billing-exports/gcp/"


# --- bq: ------------------------------------------------------------------------------------


def test_table_ids_are_validated() -> None:
    assert (
        table_id("bq:my-project.billing.gcp_billing_export_v1_X")
        == "my-project.billing.gcp_billing_export_v1_X"
    )
    for bad in ("bq:billing.table", "bq:p.d.t; DROP TABLE x", "bq:my-project.d.t`--", "bq:"):
        with pytest.raises(RecipeInputError):
            table_id(bad)


def test_query_pages_retries_and_sums_to_synthetic(
    charges, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_retries(monkeypatch)
    from providers.gcp import sdk

    monkeypatch.setattr(sdk, "BIGQUERY_PAGE_SIZE", 50)
    source = f"bq:{fakebq.PROJECT}.{fakebq.DATASET}.{fakebq.TABLE}"
    with fakebq.FakeBigQuery(rows=gcp.rows(charges, detailed=False)) as fake:
        fake.failures["query"] = [fakebq.RATE_LIMITED]
        backend = GcpBilling(bigquery=fakebq.bigquery_client(fake))
        answer = backend.query(source, BillingQuery(date(2026, 10, 1), date(2026, 11, 1), TAG_KEYS))
        pages = fake.seen("GET", r"/queries/")
        posts = fake.seen("POST", r"/queries$")
    assert len(posts) == 2  # the rate-limited one, then the retry
    assert len([p for p in pages if p.query.get("pageToken")]) >= 2
    body = fake.queries[-1]
    params = {
        p["name"]: (p["parameterType"]["type"], p["parameterValue"]["value"])
        for p in body["queryParameters"]
    }
    assert params["label_0"] == ("STRING", "project") and params["start"][0] == "TIMESTAMP"
    assert "2026-10-01" not in body["query"] and "'project'" not in body["query"]
    assert f"`{fakebq.PROJECT}.{fakebq.DATASET}.{fakebq.TABLE}`" in body["query"]

    rows = answer.rows
    expected = synthetic.expected_totals(charges)[None]
    assert close(sum(r["BilledCost"] for r in rows), expected.billed)
    assert close(sum(r["EffectiveCost"] for r in rows), expected.effective)
    assert close(sum(r["ListCost"] for r in rows), expected.list)
    for kind, total in expected.by_kind.items():
        assert close(sum(r["BilledCost"] for r in rows if r["x_ChargeKind"] == kind), total), kind
    by_project = synthetic.expected_totals(charges, key=lambda c: c.tags.get("project"))
    for value, totals in by_project.items():
        got = sum(r["BilledCost"] for r in rows if r["tag:project"] == value)
        assert close(got, totals.billed), value
    assert all(r["x_Final"] is None and r["ProviderName"] == "gcp" for r in rows)


def test_query_period_is_a_parameter(charges) -> None:
    """A shorter period answers less: the fake filters by the parameters it was sent."""
    source = f"bq:{fakebq.PROJECT}.{fakebq.DATASET}.{fakebq.TABLE}"
    with fakebq.FakeBigQuery(rows=gcp.rows(charges, detailed=True)) as fake:
        backend = GcpBilling(bigquery=fakebq.bigquery_client(fake))
        answer = backend.query(source, BillingQuery(date(2026, 10, 1), date(2026, 10, 2), ()))
    day_one = [c for c in charges if c.start.date() == date(2026, 10, 1)]
    assert close(sum(r["BilledCost"] for r in answer.rows), sum(c.billed_cost for c in day_one))
    assert "@label_" not in aggregate_sql("p-roject.d.t", 0)


def test_query_refused_is_a_provider_error(charges, monkeypatch: pytest.MonkeyPatch) -> None:
    fast_retries(monkeypatch)
    denied = fakebq.json_reply(
        403,
        {
            "error": {
                "code": 403,
                "message": "Access Denied: Table recipe-billing:billing_export.t: User does not have permission",
                "errors": [
                    {"reason": "accessDenied", "domain": "global", "message": "Access Denied"}
                ],
                "status": "PERMISSION_DENIED",
            }
        },
    )
    with fakebq.FakeBigQuery(rows=[]) as fake:
        fake.failures["query"] = [denied]
        backend = GcpBilling(bigquery=fakebq.bigquery_client(fake))
        with pytest.raises(ProviderError) as raised:
            backend.query(
                f"bq:{fakebq.PROJECT}.d.t", BillingQuery(date(2026, 10, 1), date(2026, 11, 1), ())
            )
    assert "roles/bigquery.dataViewer" in str(raised.value)
