"""AWS billing: CUR 2.0 and legacy CUR files read to the synthetic totals, S3 export
prefixes downloaded (moto), Cost Explorer queried through boto3 (moto's queued results;
ListCostAllocationTags and throttling answered at botocore's HTTP layer)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from providers.aws import sdk
from providers.aws.billing import AwsBilling, charge_kind
from providers.base import BillingQuery
from recipes.cost.billing import files, focus, synthetic
from recipes.cost.billing.aws import CUR2, LEGACY_CUR
from recipes.cost.billing.schema import COLUMNS, tag_column
from recipes.errors import ErrorKind, ProviderError, RecipeInputError
from tests.fakes.aws import (
    REGION,
    BotocoreFake,
    ce_client,
    cost_allocation_tags,
    cost_explorer_pages,
    register_cost_and_usage,
    use_fake_keys,
)

FORMATS = {"aws-cur2": CUR2, "aws-cur-legacy": LEGACY_CUR}
PERIOD = BillingQuery(date(2026, 10, 1), date(2026, 10, 31), ("cost_center",))


@pytest.fixture(scope="module")
def charges() -> list[synthetic.Charge]:
    return synthetic.charges("aws", synthetic.quickstart_scenario())


@pytest.fixture(scope="module")
def written(charges: list[synthetic.Charge], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The charges written once per format and suffix (writing is the slow part)."""
    cache: dict[tuple[str, str], Path] = {}
    folder = tmp_path_factory.mktemp("cur")

    def write(name: str, suffix: str) -> Path:
        if (name, suffix) not in cache:
            path = folder / name / f"part-00001{suffix}"
            synthetic.write(name, charges, path)
            cache[(name, suffix)] = path
        return cache[(name, suffix)]

    return write


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Any:
    use_fake_keys(monkeypatch)
    monkeypatch.setattr(sdk, "CE_BACKOFF_S", 0.0)
    with mock_aws():
        yield


def read(fmt: Any, paths: list[Path], tag_keys: list[str]) -> tuple[Any, str]:
    con = files.connect()
    table = files.open_table(con, files.kind_of(paths[0]), paths)
    assert fmt.matches(table.columns, str(paths[0]))
    # Read the files once; the checks then query the normalized rows.
    con.execute(f"CREATE TABLE normalized AS {fmt.select(table, tag_keys)}")
    return con, "SELECT * FROM normalized"


def assert_totals(con: Any, sql: str, expected: synthetic.Totals, where: str = "TRUE") -> None:
    billed, effective, listed = con.execute(
        f"SELECT sum(BilledCost), sum(EffectiveCost), sum(ListCost) FROM ({sql}) WHERE {where}"
    ).fetchone()
    assert billed == pytest.approx(expected.billed, abs=1e-6)
    assert effective == pytest.approx(expected.effective, abs=1e-6)
    assert listed == pytest.approx(expected.list, abs=1e-6)
    kinds = dict(
        con.execute(
            f"SELECT x_ChargeKind, sum(BilledCost) FROM ({sql}) WHERE {where} GROUP BY 1"
        ).fetchall()
    )
    assert kinds == pytest.approx(expected.by_kind, abs=1e-6)


# --- files ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "suffix"),
    [
        ("aws-cur2", ".parquet"),
        ("aws-cur2", ".csv.gz"),
        ("aws-cur2", ".csv"),
        ("aws-cur-legacy", ".csv"),
        ("aws-cur-legacy", ".csv.gz"),
    ],
)
def test_cur_reads_to_the_synthetic_totals(
    name: str, suffix: str, charges: list[synthetic.Charge], written: Any
) -> None:
    path = written(name, suffix)
    fmt = FORMATS[name]
    con, sql = read(fmt, [path], ["cost_center", "run_id"])

    columns = [d[0] for d in con.execute(f"DESCRIBE {sql}").fetchall()]
    assert set(COLUMNS) <= set(columns)
    assert {tag_column("cost_center"), tag_column("run_id")} <= set(columns)
    assert_totals(con, sql, synthetic.expected_totals(charges)[None])

    # Per run: the tag column against the charges' own run_id tag.
    by_run = synthetic.expected_totals(charges, key=lambda c: c.tags.get("run_id"))
    for run_id, expected in by_run.items():
        where = f"\"tag:run_id\" = '{run_id}'" if run_id else '"tag:run_id" IS NULL'
        assert_totals(con, sql, expected, where)

    # Untagged: transfer, the other team's instance and the account-level lines.
    untagged = [c for c in charges if "cost_center" not in c.tags]
    (billed,) = con.execute(
        f'SELECT sum(BilledCost) FROM ({sql}) WHERE "tag:cost_center" IS NULL'
    ).fetchone()
    assert billed == pytest.approx(sum(c.billed_cost for c in untagged), abs=1e-6)


def test_cur_rows_are_normalized(charges: list[synthetic.Charge], written: Any) -> None:
    path = written("aws-cur2", ".parquet")
    con, sql = read(CUR2, [path], ["cost_center"])
    rows = con.execute(
        f"SELECT x_ChargeKind, ChargeCategory, PricingCategory, x_CostKind, x_Final, Tags, "
        f"ServiceName, RegionId FROM ({sql})"
    ).fetchall()
    kinds = {(r[0], r[1]) for r in rows}
    assert (
        ("Refund", "Credit") in kinds and ("Tax", "Tax") in kinds and ("Credit", "Credit") in kinds
    )
    assert {r[2] for r in rows if r[0] == "Usage"} == {"Standard", "Dynamic"}
    assert {r[2] for r in rows if r[0] != "Usage"} == {None}
    assert {r[3] for r in rows} == {"compute", "storage", "transfer", "other"}
    assert sum(1 for r in rows if r[4] is False) == sum(1 for c in charges if not c.final)
    tagged = [json.loads(r[5]) for r in rows if r[5] != "{}"]
    assert all(not k.startswith("user") for t in tagged for k in t)  # `user_` taken off
    assert {"run_id", "cost_center", "team"} <= {k for t in tagged for k in t}
    assert "Amazon SageMaker" in {r[6] for r in rows}
    assert {r[7] for r in rows if r[0] == "Usage"} == {"us-east-1"}


def test_cur2_effective_cost_amortizes_commitments(tmp_path: Path) -> None:
    """AWS's amortization: covered usage at its effective cost, the negation and upfront
    fee at zero, a recurring fee at its unused part, RI fees at their unused part."""
    con = files.connect()
    path = tmp_path / "sp.parquet"
    con.execute(
        "COPY (SELECT * FROM (VALUES "
        "('SavingsPlanCoveredUsage', 1.0, 0.6, 0.0, 0.0, 0.0, 1.0), "
        "('SavingsPlanNegation', -1.0, 0.0, 0.0, 0.0, 0.0, 0.0), "
        "('SavingsPlanRecurringFee', 0.8, 0.0, 0.8, 0.6, 0.0, 0.0), "
        "('SavingsPlanUpfrontFee', 100.0, 0.0, 0.0, 0.0, 0.0, 0.0), "
        "('DiscountedUsage', 0.0, 0.0, 0.0, 0.0, 0.4, 1.0)"
        ") t(line_item_line_item_type, line_item_unblended_cost, "
        "savings_plan_savings_plan_effective_cost, savings_plan_total_commitment_to_date, "
        "savings_plan_used_commitment, reservation_effective_cost, pricing_public_on_demand_cost), "
        "(SELECT TIMESTAMP '2026-10-01' AS line_item_usage_start_date)) "
        f"TO '{path}' (FORMAT parquet)"
    )
    con, sql = read(CUR2, [path], [])
    effective = con.execute(
        f"SELECT EffectiveCost, x_ChargeKind, PricingCategory FROM ({sql})"
    ).fetchall()
    assert [round(e[0], 6) for e in effective] == [0.6, 0.0, 0.2, 0.0, 0.4]
    assert [e[1] for e in effective] == ["Usage", "Usage", "Purchase", "Purchase", "Usage"]
    assert effective[0][2] == "Committed" and effective[4][2] == "Committed"


def test_athena_legacy_parquet_is_legacy(tmp_path: Path) -> None:
    columns = {
        "line_item_line_item_type": "VARCHAR",
        "line_item_unblended_cost": "DOUBLE",
        "line_item_usage_start_date": "TIMESTAMP",
        "resource_tags_user_cost_center": "VARCHAR",
    }
    assert LEGACY_CUR.matches(columns, "x.parquet") and not CUR2.matches(columns, "x.parquet")
    con = files.connect()
    path = tmp_path / "athena.parquet"
    con.execute(
        "COPY (SELECT 'Usage' AS line_item_line_item_type, 2.5 AS line_item_unblended_cost, "
        "TIMESTAMP '2026-10-01' AS line_item_usage_start_date, "
        "'demo' AS resource_tags_user_cost_center) "
        f"TO '{path}' (FORMAT parquet)"
    )
    con, sql = read(LEGACY_CUR, [path], ["cost_center"])
    assert con.execute(f'SELECT "tag:cost_center", Tags, BilledCost FROM ({sql})').fetchall() == [
        ("demo", '{"cost_center":"demo"}', 2.5)
    ]


def test_matches_claims_only_aws_curs(
    charges: list[synthetic.Charge], written: Any, tmp_path: Path
) -> None:
    focus_columns = dict(focus.COLUMNS_1_2)  # what focus.write writes
    assert not CUR2.matches(focus_columns, "focus.parquet")
    assert not LEGACY_CUR.matches(focus_columns, "focus.parquet")
    con = files.connect()

    for name, suffix in (("aws-cur2", ".parquet"), ("aws-cur-legacy", ".csv")):
        path = written(name, suffix)
        columns = files.open_table(con, files.kind_of(path), [path]).columns
        assert not focus.FORMAT.matches(columns, str(path))
        others = [f for n, f in FORMATS.items() if n != name]
        assert FORMATS[name].matches(columns, str(path))
        assert not any(f.matches(columns, str(path)) for f in others)

    # Azure cost details and the GCP BigQuery export (their column names, per each doc).
    azure = dict.fromkeys(
        [
            "Date",
            "CostInBillingCurrency",
            "BillingCurrencyCode",
            "ChargeType",
            "SubscriptionId",
            "MeterCategory",
            "Tags",
            "PricingModel",
        ],
        "VARCHAR",
    )
    gcp = dict.fromkeys(
        [
            "billing_account_id",
            "service",
            "sku",
            "usage_start_time",
            "cost",
            "currency",
            "labels",
            "credits",
            "invoice",
            "cost_type",
        ],
        "VARCHAR",
    )
    for columns in (azure, gcp):
        assert not CUR2.matches(columns, "x.parquet") and not LEGACY_CUR.matches(columns, "x.csv")


def test_a_cur_missing_a_required_column_is_not_claimed(written: Any) -> None:
    path = written("aws-cur2", ".parquet")
    con = files.connect()
    columns = dict(files.open_table(con, "parquet", [path]).columns)
    for required in ("line_item_unblended_cost", "line_item_line_item_type"):
        fewer = {k: v for k, v in columns.items() if k != required}
        assert not CUR2.matches(fewer, str(path)) and not LEGACY_CUR.matches(fewer, str(path))


# --- S3 --------------------------------------------------------------------------------------


def _put(s3: Any, bucket: str, key: str, data: bytes) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=data)


def test_download_reads_every_part_of_an_export_and_skips_manifests(
    aws: Any,
    charges: list[synthetic.Charge],
    written: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3

    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="billing")
    whole = written("aws-cur2", ".parquet")
    base = "exports/recipe-cur2"
    data_keys = []
    con = files.connect()
    for n, half in enumerate(("< 400", ">= 400"), start=1):
        local = tmp_path / f"p{n}.snappy.parquet"
        con.execute(
            f"COPY (SELECT * FROM read_parquet('{whole}') "
            f"WHERE CAST(substr(identity_line_item_id, 4) AS INTEGER) {half}) "
            f"TO '{local}' (FORMAT parquet)"
        )
        key = f"{base}/data/BILLING_PERIOD=2026-10/recipe-cur2-0000{n}.snappy.parquet"
        _put(s3, "billing", key, local.read_bytes())
        data_keys.append(key)
    manifest = {"dataFiles": [f"s3://billing/{k}" for k in data_keys]}
    _put(
        s3,
        "billing",
        f"{base}/metadata/BILLING_PERIOD=2026-10/recipe-cur2-Manifest.json",
        json.dumps(manifest).encode(),
    )
    _put(s3, "billing", f"{base}/README.txt", b"not billing data")
    # Four keys in pages of 2: the listing takes two ListObjectsV2 calls.
    s3_fake = BotocoreFake(s3).watch("ListObjectsV2")
    monkeypatch.setattr(sdk, "S3_PAGE_SIZE", 2)

    out = tmp_path / "download"
    paths = AwsBilling(**{f"s3:{REGION}": s3}).download(f"s3://billing/{base}/", out)
    assert s3_fake.calls("ListObjectsV2") == 2
    assert [p.name for p in paths] == [
        "recipe-cur2-00001.snappy.parquet",
        "recipe-cur2-00002.snappy.parquet",
    ]
    assert all(p.is_relative_to(out) for p in paths)
    con, sql = read(CUR2, paths, [])
    assert_totals(con, sql, synthetic.expected_totals(charges)[None])

    # One object by its key.
    one = AwsBilling().download(f"s3://billing/{data_keys[0]}", tmp_path / "one")
    assert [p.name for p in one] == ["recipe-cur2-00001.snappy.parquet"]


def test_download_skips_versions_a_legacy_manifest_supersedes(
    aws: Any, charges: list[synthetic.Charge], written: Any, tmp_path: Path
) -> None:
    import boto3

    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="billing")
    local = written("aws-cur-legacy", ".csv.gz")
    period = "cur/recipe/20261001-20261101"
    for assembly in ("old-assembly", "new-assembly"):
        _put(s3, "billing", f"{period}/{assembly}/recipe-00001.csv.gz", local.read_bytes())
    _put(
        s3,
        "billing",
        f"{period}/recipe-Manifest.json",
        json.dumps({"reportKeys": [f"{period}/new-assembly/recipe-00001.csv.gz"]}).encode(),
    )

    paths = AwsBilling().download("s3://billing/cur/recipe", tmp_path / "d")
    assert [p.parent.name for p in paths] == ["new-assembly"]
    con, sql = read(LEGACY_CUR, paths, [])
    assert_totals(con, sql, synthetic.expected_totals(charges)[None])


@pytest.mark.parametrize("uri", ["s3://billing/nothing-here/", "s3://no-such-bucket/x", "s3://"])
def test_download_of_nothing_names_the_uri(aws: Any, uri: str, tmp_path: Path) -> None:
    import boto3

    boto3.client("s3", region_name=REGION).create_bucket(Bucket="billing")
    with pytest.raises(RecipeInputError) as info:
        AwsBilling().download(uri, tmp_path)
    assert uri in str(info.value)


# --- Cost Explorer ---------------------------------------------------------------------------


def billing_with_ce(statuses: dict[str, str] | None = None) -> tuple[AwsBilling, BotocoreFake]:
    ce = ce_client()
    fake = BotocoreFake(ce)
    fake.watch("GetCostAndUsage")
    cost_allocation_tags(fake, {"cost_center": "Active"} if statuses is None else statuses)
    return AwsBilling(**{"ce:us-east-1": ce}), fake


def sum_rows(rows: list[dict[str, Any]], field: str, **where: Any) -> float:
    return sum(r[field] for r in rows if all(r.get(k) == v for k, v in where.items()))


def test_cost_explorer_rows_sum_to_the_synthetic_totals(
    aws: Any, charges: list[synthetic.Charge]
) -> None:
    pages = cost_explorer_pages(charges, "cost_center", days_per_page=10)
    assert len(pages) == 3
    register_cost_and_usage(pages)
    billing, fake = billing_with_ce()

    answer = billing.query("aws-ce:", PERIOD)

    requests = fake.bodies("GetCostAndUsage")
    assert len(requests) == 3  # NextPageToken followed
    first = requests[0]
    assert first["TimePeriod"] == {"Start": "2026-10-01", "End": "2026-10-31"}
    assert first["Granularity"] == "DAILY"
    assert first["Metrics"] == ["UnblendedCost", "AmortizedCost"]
    assert first["GroupBy"] == [
        {"Type": "TAG", "Key": "cost_center"},
        {"Type": "DIMENSION", "Key": "RECORD_TYPE"},
    ]
    assert [r.get("NextPageToken") for r in requests] == [None, "page-2", "page-3"]

    rows = answer.rows
    expected = synthetic.expected_totals(charges)[None]
    assert sum_rows(rows, "BilledCost") == pytest.approx(expected.billed, abs=1e-5)
    assert sum_rows(rows, "EffectiveCost") == pytest.approx(expected.effective, abs=1e-5)
    for kind, amount in expected.by_kind.items():
        assert sum_rows(rows, "BilledCost", x_ChargeKind=kind) == pytest.approx(amount, abs=1e-5)
    # No list price in Cost Explorer: usage at what it cost, and a note says so.
    assert sum_rows(rows, "ListCost") == pytest.approx(expected.by_kind["Usage"], abs=1e-5)
    assert any("no public (list) price" in n for n in answer.notes)

    by_center = synthetic.expected_totals(charges, key=lambda c: c.tags.get("cost_center"))
    for center, totals in by_center.items():
        assert sum_rows(rows, "BilledCost", **{"tag:cost_center": center}) == pytest.approx(
            totals.billed, abs=1e-5
        )
    untagged = [r for r in rows if r["tag:cost_center"] is None]
    assert untagged and all(r["Tags"] == {} for r in untagged)
    assert all(
        r["Tags"] == {"cost_center": r["tag:cost_center"]} for r in rows if r not in untagged
    )
    assert sum(1 for r in rows if r["x_Final"] is False) > 0
    assert {r["ChargePeriodStart"].date() for r in rows if not r["x_Final"]} == {
        c.start.date() for c in charges if not c.final
    }
    assert {r["ChargeCategory"] for r in rows if r["x_ChargeKind"] == "Refund"} == {"Credit"}
    assert all(r["ProviderName"] == "aws" and r["BillingCurrency"] == "USD" for r in rows)
    assert not any("not activated" in n for n in answer.notes)


def test_cost_explorer_retries_throttling(aws: Any, charges: list[synthetic.Charge]) -> None:
    register_cost_and_usage(cost_explorer_pages(charges, "cost_center", days_per_page=31))
    billing, fake = billing_with_ce()
    fake.error("GetCostAndUsage", 400, "LimitExceededException", "You made too many calls", times=2)

    rows = billing.query("aws-ce:", PERIOD).rows

    assert fake.calls("GetCostAndUsage") == 3
    assert sum_rows(rows, "BilledCost") == pytest.approx(
        synthetic.expected_totals(charges)[None].billed, abs=1e-5
    )


def test_cost_explorer_throttled_past_the_last_try_is_a_provider_error(aws: Any) -> None:
    billing, fake = billing_with_ce()
    fake.error("GetCostAndUsage", 400, "ThrottlingException", "Rate exceeded", times=None)
    with pytest.raises(ProviderError) as info:
        billing.query("aws-ce:", PERIOD)
    assert info.value.kind == ErrorKind.THROTTLED
    assert fake.calls("GetCostAndUsage") == sdk.CE_ATTEMPTS


def test_cost_explorer_access_denied_is_an_auth_error(aws: Any) -> None:
    billing, fake = billing_with_ce()
    fake.error(
        "GetCostAndUsage", 400, "AccessDeniedException", "not authorized to ce:GetCostAndUsage"
    )
    with pytest.raises(ProviderError) as info:
        billing.query("aws-ce:", PERIOD)
    assert info.value.kind == ErrorKind.AUTH


def test_inactive_or_unknown_tag_keys_are_noted(aws: Any, charges: list[synthetic.Charge]) -> None:
    register_cost_and_usage(cost_explorer_pages(charges, "cost_center", days_per_page=31))
    billing, fake = billing_with_ce({"cost_center": "Inactive"})
    notes = billing.query("aws-ce:", PERIOD).notes
    assert any(
        n.startswith("tag cost_center is not activated as a cost allocation tag") for n in notes
    )
    assert fake.bodies("ListCostAllocationTags")[0]["TagKeys"] == ["cost_center"]

    billing, _ = billing_with_ce({})
    notes = billing.query("aws-ce:", PERIOD).notes
    assert any("has not seen this key" in n for n in notes)


def test_cost_explorer_groups_by_one_tag_key_at_most(aws: Any) -> None:
    billing, fake = billing_with_ce()
    query = BillingQuery(date(2026, 10, 1), date(2026, 10, 31), ("cost_center", "run_id"))
    with pytest.raises(RecipeInputError) as info:
        billing.query("aws-ce:", query)
    assert "at most 2" in str(info.value) and "one tag key" in str(info.value)
    assert fake.calls("GetCostAndUsage") == 0


def test_cost_explorer_without_tags_and_for_one_account(
    aws: Any, charges: list[synthetic.Charge]
) -> None:
    register_cost_and_usage(cost_explorer_pages(charges, None, days_per_page=31))
    billing, fake = billing_with_ce()
    query = BillingQuery(date(2026, 10, 1), date(2026, 10, 31), ())
    answer = billing.query("aws-ce:444455556666", query)
    body = fake.bodies("GetCostAndUsage")[0]
    assert body["GroupBy"] == [{"Type": "DIMENSION", "Key": "RECORD_TYPE"}]
    assert body["Filter"] == {"Dimensions": {"Key": "LINKED_ACCOUNT", "Values": ["444455556666"]}}
    assert fake.calls("ListCostAllocationTags") == 0
    assert sum_rows(answer.rows, "BilledCost") == pytest.approx(
        synthetic.expected_totals(charges)[None].billed, abs=1e-5
    )
    assert {r["SubAccountId"] for r in answer.rows} == {"444455556666"}
    with pytest.raises(RecipeInputError):
        billing.query("aws-ce:my-account", query)


@pytest.mark.parametrize(
    ("record", "kind"),
    [
        ("Usage", "Usage"),
        ("Tax", "Tax"),
        ("Credit", "Credit"),
        ("Refund", "Refund"),
        ("Recurring reservation fee", "Purchase"),
        ("Savings Plan Upfront Fee", "Purchase"),
        ("Savings Plan Covered Usage", "Usage"),
        ("Enterprise Discount Program Discount", "Adjustment"),
    ],
)
def test_record_types(record: str, kind: str) -> None:
    assert charge_kind(record) == kind
