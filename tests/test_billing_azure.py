"""Azure billing: cost-details exports (actual and amortized, MCA and EA, CSV and Parquet)
read to the normalized rows, exports downloaded from an Azure ML datastore, and the Cost
Management Query API, all through the real SDKs against loopback fakes.

Test names and paths of ACTUAL-cost files never contain the word "amortized": the dataset
is told by the path, and pytest's tmp_path carries the test's name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from providers.azure import sdk
from providers.azure.billing import AzureBilling
from providers.base import BillingQuery
from recipes.cost.billing import azure, files, focus, synthetic
from recipes.cost.billing.schema import COLUMNS, tag_column
from recipes.errors import RecipeInputError
from tests.fakes.azure import SUB, FakeCredential
from tests.fakes.azure_cost import (
    QUERY_CHARGE_TYPES,
    FakeCostManagement,
    cost_client,
    datastore_exports,
    manifest,
)

SCENARIO = synthetic.quickstart_scenario()
CHARGES = synthetic.charges("azure", SCENARIO)
EXPECTED = synthetic.expected_totals(CHARGES)[None]


def read(path: Path, tag_keys: Sequence[str] = ()) -> tuple[Any, str, list[tuple]]:
    """The file as the report reads it: (the format that claims it, its SELECT, rows)."""
    found = files.billing_files(path)
    kind = files.kind_of(found[0])
    con = files.connect()
    table = files.open_table(con, kind, found)
    claimed = [
        f
        for f in (azure.ACTUAL, azure.AMORTIZED, focus.FORMAT)
        if f.matches(table.columns, str(path))
    ]
    assert len(claimed) == 1, [f.name for f in claimed]
    sql = claimed[0].select(table, tag_keys)
    return claimed[0], sql, con


def totals(con: Any, sql: str) -> dict[str, Any]:
    billed, effective, listed = con.execute(
        f"SELECT sum(BilledCost), sum(EffectiveCost), sum(ListCost) FROM ({sql})"
    ).fetchone()
    by_kind = dict(
        con.execute(f"SELECT x_ChargeKind, sum(BilledCost) FROM ({sql}) GROUP BY 1").fetchall()
    )
    return {"billed": billed, "effective": effective, "list": listed, "by_kind": by_kind}


def assert_totals(got: dict[str, Any], expected: synthetic.Totals) -> None:
    assert got["billed"] == pytest.approx(expected.billed, abs=1e-6)
    assert got["effective"] == pytest.approx(expected.effective, abs=1e-6)
    assert got["list"] == pytest.approx(expected.list, abs=1e-6)
    assert set(got["by_kind"]) == set(expected.by_kind)
    for kind, value in expected.by_kind.items():
        assert got["by_kind"][kind] == pytest.approx(value, abs=1e-6), kind


# --- the formats -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("contract", "name"),
    [("mca", "part_0_0001.csv"), ("ea", "part_0_0001.csv.gz"), ("mca", "part_0_0001.parquet")],
)
def test_actual_cost_export_gives_the_synthetic_totals(
    tmp_path: Path, contract: str, name: str
) -> None:
    path = tmp_path / "ActualCost" / name
    azure.write_actual(CHARGES, path, contract=contract)
    fmt, sql, con = read(path)
    assert fmt is azure.ACTUAL
    assert_totals(totals(con, sql), EXPECTED)
    columns = [d[0] for d in con.execute(f"DESCRIBE {sql}").fetchall()]
    assert set(COLUMNS) <= set(columns)
    text = fmt.describe(dict.fromkeys(columns, "VARCHAR"), str(path))
    assert "no amortization" in text and "AmortizedCost or FocusCost" in text
    # Credit, refund and tax keep their own kinds and categories.
    kinds = dict(
        con.execute(
            f"SELECT x_ChargeKind, any_value(ChargeCategory) FROM ({sql}) GROUP BY 1"
        ).fetchall()
    )
    assert kinds == {"Usage": "Usage", "Credit": "Credit", "Refund": "Credit", "Tax": "Tax"}
    # Spot runs are Dynamic, the rest Standard; non-usage rows have no pricing category.
    pricing = dict(
        con.execute(
            f"SELECT PricingCategory, sum(BilledCost) FROM ({sql}) WHERE x_ChargeKind = 'Usage' GROUP BY 1"
        ).fetchall()
    )
    spot = sum(c.billed_cost for c in CHARGES if c.pricing == "Dynamic")
    assert set(pricing) == {"Standard", "Dynamic"}
    assert pricing["Dynamic"] == pytest.approx(spot)
    # Days, not hours: Azure rates usage daily.
    first, last = con.execute(
        f"SELECT min(ChargePeriodStart), max(ChargePeriodEnd) FROM ({sql})"
    ).fetchone()
    assert first == datetime(2026, 10, 1) and last == datetime(2026, 10, 31)


def test_final_comes_from_the_invoice_id(tmp_path: Path) -> None:
    mca = tmp_path / "mca" / "part_0_0001.csv"
    azure.write_actual(CHARGES, mca)
    _, sql, con = read(mca)
    not_final = con.execute(f"SELECT sum(BilledCost) FROM ({sql}) WHERE NOT x_Final").fetchone()[0]
    assert not_final == pytest.approx(sum(c.billed_cost for c in CHARGES if not c.final))
    ea = tmp_path / "ea" / "part_0_0001.csv"
    azure.write_actual(CHARGES, ea, contract="ea")
    _, sql, con = read(ea)
    assert con.execute(f"SELECT count(*) FROM ({sql}) WHERE x_Final IS NOT NULL").fetchone()[0] == 0


def test_amortized_export_is_told_by_its_path(tmp_path: Path) -> None:
    path = tmp_path / "exports" / "recipe-AmortizedCost" / "20261001-20261031" / "part_0_0001.csv"
    azure.write_amortized(CHARGES, path)
    fmt, sql, con = read(path)
    assert fmt is azure.AMORTIZED
    assert_totals(totals(con, sql), EXPECTED)
    assert "amortized" in fmt.describe({}, str(path)).lower()


def test_both_contracts_name_columns_in_their_own_case(tmp_path: Path) -> None:
    mca, ea = tmp_path / "mca.csv", tmp_path / "ea.csv"
    azure.write_actual(CHARGES, mca)
    azure.write_actual(CHARGES, ea, contract="ea")
    mca_header = mca.read_text().splitlines()[0].split(",")
    ea_header = ea.read_text().splitlines()[0].split(",")
    assert "costInBillingCurrency" in mca_header and "invoiceId" in mca_header
    assert "CostInBillingCurrency" in ea_header and "BillingCurrencyCode" in ea_header
    assert "invoiceId" not in ea_header
    assert azure.contract_of(dict.fromkeys(mca_header, "")) == "MCA"
    assert azure.contract_of(dict.fromkeys(ea_header, "")) == "EA"


def test_tags_without_braces_are_read(tmp_path: Path) -> None:
    path = tmp_path / "part_0_0001.csv"
    azure.write_actual(CHARGES, path)
    raw = path.read_text()
    assert '"""project"": ""quickstart""' in raw  # MCA's tags: no outer braces
    _, sql, con = read(path, ["project", "endpoint"])
    got = dict(
        con.execute(
            f'SELECT "{tag_column("project")}", sum(BilledCost) FROM ({sql}) GROUP BY 1'
        ).fetchall()
    )
    expected = synthetic.expected_totals(CHARGES, key=lambda c: c.tags.get("project"))
    assert {k: round(v, 6) for k, v in got.items()} == pytest.approx(
        {k: t.billed for k, t in expected.items()}
    )
    tags = con.execute(
        f"SELECT Tags FROM ({sql}) WHERE \"{tag_column('endpoint')}\" = 'quickstart' LIMIT 1"
    ).fetchone()[0]
    assert json.loads(tags)["run_id"] == SCENARIO.endpoint_run


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"env": "dev","team": "ml"', {"env": "dev", "team": "ml"}),
        ('{"env": "dev"}', {"env": "dev"}),
        ("", {}),
        ("not json", None),
    ],
)
def test_tag_texts(tmp_path: Path, text: str, expected: dict | None) -> None:
    path = tmp_path / "tags.csv"
    path.write_text(
        "date,meterCategory,chargeType,quantity,costInBillingCurrency,tags\n"
        f'10/13/2026,Storage,Usage,1,2.5,"{text.replace(chr(34), chr(34) * 2)}"\n'
    )
    _, sql, con = read(path, ["env"])
    tags, env, day = con.execute(
        f'SELECT Tags, "tag:env", ChargePeriodStart FROM ({sql})'
    ).fetchone()
    assert (json.loads(tags) if tags else None) == expected
    assert env == (expected or {}).get("env")
    assert day == datetime(2026, 10, 13)


def test_formats_claim_only_their_files(tmp_path: Path) -> None:
    focus_file = tmp_path / "focus.csv"
    focus.write(CHARGES, focus_file)
    actual = tmp_path / "part_0_0001.csv"
    azure.write_actual(CHARGES, actual)
    con = files.connect()
    focus_cols = files.open_table(con, "csv", [focus_file]).columns
    azure_cols = files.open_table(con, "csv", [actual]).columns
    assert not azure.ACTUAL.matches(focus_cols, str(focus_file))
    assert not azure.AMORTIZED.matches(focus_cols, str(tmp_path / "amortized" / "focus.csv"))
    assert not focus.FORMAT.matches(azure_cols, str(actual))
    assert azure.ACTUAL.matches(azure_cols, str(actual))
    assert not azure.AMORTIZED.matches(azure_cols, str(actual))
    # Another cloud's export (GCP's BigQuery columns) is not Azure's.
    other = {"billing_account_id": "", "cost": "", "usage_start_time": "", "service": ""}
    assert not azure.ACTUAL.matches(other, "gcp.jsonl")


def test_writers_are_registered() -> None:
    assert synthetic.WRITERS["azure-actual"] == "recipes.cost.billing.azure:write_actual"
    assert synthetic.WRITERS["azure-amortized"] == "recipes.cost.billing.azure:write_amortized"
    assert azure.ACTUAL.name == "azure-actual" and azure.AMORTIZED.name == "azure-amortized"


# --- exports in an Azure ML datastore -----------------------------------------------------

RUN = "exports/recipe-costs/20261001-20261031/7f3e"


def _export_blobs(tmp_path: Path) -> dict[str, bytes]:
    actual, amortized = tmp_path / "a.csv", tmp_path / "m.csv.gz"
    azure.write_actual(CHARGES, actual)
    azure.write_amortized(CHARGES, amortized)
    return {
        f"{RUN}/actual/part_0_0001.csv": actual.read_bytes(),
        f"{RUN}/actual/manifest.json": manifest("ActualCost", [f"{RUN}/actual/part_0_0001.csv"]),
        f"{RUN}/costs2/part_0_0001.csv.gz": amortized.read_bytes(),
        f"{RUN}/costs2/manifest.json": manifest(
            "AmortizedCost", [f"{RUN}/costs2/part_0_0001.csv.gz"]
        ),
        "exports/recipe-costs-old/part_0_0001.csv": b"not ours",
    }


def test_download_an_export_from_a_datastore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.ai.ml import MLClient

    blobs = _export_blobs(tmp_path)
    with datastore_exports(blobs) as server:
        monkeypatch.setenv("AZUREML_DEV_URL_MFE", server.url)
        monkeypatch.setenv("RECIPE_AZURE_BLOB_ENDPOINT", f"{server.url}/stmlworkspace")
        monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUB)
        monkeypatch.setenv("AZURE_RESOURCE_GROUP", "rg-ml")
        monkeypatch.setenv("AZUREML_WORKSPACE_NAME", "ws-ml")
        client = MLClient(FakeCredential(), SUB, "rg-ml", "ws-ml", enable_telemetry=False)
        billing = AzureBilling(ml=client)
        out = tmp_path / "downloaded"
        got = billing.download(
            "azureml://datastores/workspaceblobstore/paths/exports/recipe-costs/", out
        )
        one = billing.download(
            f"azureml://datastores/workspaceblobstore/paths/{RUN}/actual/part_0_0001.csv",
            tmp_path / "one",
        )
        assert [p.relative_to(tmp_path / "one").as_posix() for p in one] == [
            "ActualCost/part_0_0001.csv"
        ]
        with pytest.raises(RecipeInputError, match="no billing files"):
            billing.download("azureml://datastores/workspaceblobstore/paths/nothing/here", out)
    relative = sorted(str(p.relative_to(out)) for p in got)
    assert relative == [
        "ActualCost/20261001-20261031/7f3e/actual/part_0_0001.csv",
        "AmortizedCost/20261001-20261031/7f3e/costs2/part_0_0001.csv.gz",
    ]
    lists = [s for s in server.seen if s.query.get("comp") == ["list"]]
    assert lists and lists[0].query["prefix"] == ["exports/recipe-costs/"]
    for path in got:
        fmt, sql, con = read(path)
        assert fmt is (azure.AMORTIZED if "AmortizedCost" in str(path) else azure.ACTUAL)
        assert_totals(totals(con, sql), EXPECTED)


# --- the Query API ------------------------------------------------------------------------


def _query_expected(key: str | None = None) -> dict[object, synthetic.Totals]:
    kept = [c for c in CHARGES if c.charge_kind in QUERY_CHARGE_TYPES]
    return synthetic.expected_totals(kept, key=(lambda c: c.tags.get(key)) if key else None)


def test_query_api_pages_retries_and_sums(tmp_path: Path) -> None:
    with FakeCostManagement(CHARGES, page_size=25) as fake:
        fake.fail = [429]
        billing = AzureBilling(cost=cost_client(fake))
        query = BillingQuery(start=date(2026, 10, 1), end=date(2026, 10, 31), tag_keys=("run_id",))
        answer = billing.query(f"azure-cost:/subscriptions/{SUB}", query)
    requests = fake.queries()
    # The first POST was throttled and sent again as it was; every page after it followed
    # nextLink's $skiptoken with the same body.
    assert fake.fail == []  # the 429 was answered
    assert requests[0].body == requests[1].body
    assert "$skiptoken" not in requests[0].query and "$skiptoken" not in requests[1].query
    pages = [r for r in requests[1:]]
    assert len(pages) > 4 and any("$skiptoken" in r.query for r in pages)
    start = datetime(2026, 10, 1, tzinfo=timezone.utc)
    last = datetime(2026, 10, 30, 23, 59, 59, tzinfo=timezone.utc)
    groupings = [("TagKey", "run_id"), ("Dimension", "ChargeType")]
    bodies = [r.json() for r in requests]
    assert bodies[0] == sdk.cost_query_body("ActualCost", start, last, "Cost", groupings)
    assert bodies[-1] == sdk.cost_query_body("AmortizedCost", start, last, "Cost", groupings)
    assert bodies[0] == {
        "type": "ActualCost",
        "timeframe": "Custom",
        "timePeriod": {"from": "2026-10-01T00:00:00Z", "to": "2026-10-30T23:59:59Z"},
        "dataset": {
            "granularity": "Daily",
            "aggregation": {"totalCost": {"name": "Cost", "function": "Sum"}},
            "grouping": [
                {"type": "TagKey", "name": "run_id"},
                {"type": "Dimension", "name": "ChargeType"},
            ],
        },
    }
    assert all(
        r.path == f"/subscriptions/{SUB}/providers/Microsoft.CostManagement/query" for r in requests
    )
    assert all(r.headers["authorization"] == "Bearer fake-token" for r in requests)

    rows = answer.rows
    assert set(COLUMNS) <= set(rows[0])
    expected = _query_expected()[None]
    assert sum(r["BilledCost"] for r in rows) == pytest.approx(expected.billed)
    assert sum(r["EffectiveCost"] for r in rows) == pytest.approx(expected.effective)
    for kind, value in expected.by_kind.items():
        assert sum(r["BilledCost"] for r in rows if r["x_ChargeKind"] == kind) == pytest.approx(
            value
        )
    by_run: dict[object, float] = {}
    for r in rows:
        by_run[r[tag_column("run_id")]] = by_run.get(r[tag_column("run_id")], 0.0) + r["BilledCost"]
    assert by_run == pytest.approx({k: t.billed for k, t in _query_expected("run_id").items()})
    tagged = next(r for r in rows if r[tag_column("run_id")])
    assert tagged["Tags"] == {"run_id": tagged[tag_column("run_id")]}
    assert tagged["SubAccountId"] == SUB and tagged["ProviderName"] == "azure"
    assert tagged["ChargePeriodEnd"] - tagged["ChargePeriodStart"] == timedelta(days=1)
    assert any("ListCost" in n for n in answer.notes)


def test_query_api_without_tag_keys_groups_by_charge_type(tmp_path: Path) -> None:
    with FakeCostManagement(CHARGES, page_size=1000) as fake:
        billing = AzureBilling(cost=cost_client(fake))
        query = BillingQuery(start=date(2026, 10, 1), end=date(2026, 11, 1), tag_keys=())
        answer = billing.query(
            "azure-cost:/providers/Microsoft.Billing/billingAccounts/8611537", query
        )
    assert [g["name"] for g in fake.queries()[0].json()["dataset"]["grouping"]] == ["ChargeType"]
    assert sum(r["BilledCost"] for r in answer.rows) == pytest.approx(
        _query_expected()[None].billed
    )
    assert {r["BillingAccountId"] for r in answer.rows} == {"8611537"}


@pytest.mark.parametrize(
    ("source", "keys", "message"),
    [
        (f"azure-cost:/subscriptions/{SUB}", ("run_id", "recipe"), "one tag key at a time"),
        ("azure-cost:/nowhere/at/all", ("run_id",), "not an Azure Cost Management scope"),
    ],
)
def test_query_api_bad_input(source: str, keys: tuple[str, ...], message: str) -> None:
    billing = AzureBilling(cost=object())  # never called: the input is refused first
    with pytest.raises(RecipeInputError, match=message):
        billing.query(
            source, BillingQuery(start=date(2026, 10, 1), end=date(2026, 11, 1), tag_keys=keys)
        )
