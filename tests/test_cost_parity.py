"""Acceptance (issue 13): the same report from each native format and API source gives the
same totals for the same synthetic spend.

For each cloud, one `synthetic.charges` list is written as FOCUS and as every native format
of that cloud, put behind its storage scheme (s3://, azureml://, gs://) and behind its cost
API (aws-ce:, azure-cost:, bq:) with the SDK fakes, and `recipe cost report`'s use case
(`costs.report`, the whole pipeline: download or query, detect, normalize, aggregate) runs
on each, by cost_center and by run_id. Every report is compared with
`synthetic.expected_totals` (a plain-Python sum over the charges) and with the FOCUS
report of the same spend.

Where a source cannot carry something, the difference is asserted, not skipped:
- Cost Explorer has no list (public on-demand) price: ListCost is the unblended cost of
  usage and purchases (providers/aws/billing.py CE_NOTE_LIST_COST).
- Azure's Cost Management Query API has no list (pay-as-you-go) cost, and no credits or
  taxes: they are applied on the invoice, not in Cost Management's data
  (learn.microsoft.com/azure/cost-management-billing/costs/understand-cost-mgt-data).
- Azure's actual-cost dataset has no amortization: its effective cost is its billed cost.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from recipes.app import costs
from recipes.cost.billing import focus, gcp, synthetic

SCENARIO = synthetic.quickstart_scenario()
FIRST = SCENARIO.start
LAST = SCENARIO.start + timedelta(days=SCENARIO.days - 1)
KEYS = ("cost_center", "run_id")
CHARGES = {p: synthetic.charges(p, SCENARIO) for p in ("aws", "azure", "gcp")}
ABS = 1e-5  # the APIs' amounts travel as decimal text (Cost Explorer: 10 places)

# What a source leaves out or defines its own way (see the module docstring).
LIST_ALL = "list"  # ListCost: the charges' list cost
LIST_BILLED_USAGE = "billed usage"  # ListCost: billed cost of Usage and Purchase
LIST_NONE = "none"  # ListCost empty (0 in the report)
NO_CREDIT_OR_TAX = ("Credit", "Tax")


@dataclass(frozen=True)
class Source:
    provider: str
    name: str  # the id: a format and suffix, a scheme or an API
    format: str | None = None  # a synthetic.WRITERS name, for a file or a storage source
    suffix: str = ""
    via: str = "file"  # file | storage | api
    list_rule: str = LIST_ALL
    missing_kinds: tuple[str, ...] = ()
    effective_is_billed: bool = False  # no amortization in this dataset
    notes: tuple[str, ...] = ()  # notes the report must carry about the differences
    described: str = ""  # text the report's source description starts with or contains

    @property
    def id(self) -> str:
        return f"{self.provider}:{self.name}"


STANDARD = "Google Cloud Billing export to BigQuery (standard usage cost)"
DETAILED = "Google Cloud Billing export to BigQuery (detailed usage cost)"
ACTUAL = "Azure cost details, actual cost"
AMORTIZED = "Azure cost details, amortized cost"

SOURCES = [
    # --- AWS
    Source("aws", "focus.parquet", "focus", ".parquet", described="FOCUS 1.2"),
    Source("aws", "focus.csv", "focus", ".csv", described="FOCUS 1.2"),
    Source("aws", "cur2.parquet", "aws-cur2", ".parquet", described="AWS CUR 2.0"),
    Source("aws", "cur2.csv.gz", "aws-cur2", ".csv.gz", described="AWS CUR 2.0"),
    Source("aws", "cur-legacy.csv", "aws-cur-legacy", ".csv", described="legacy CUR"),
    Source("aws", "cur-legacy.csv.gz", "aws-cur-legacy", ".csv.gz", described="legacy CUR"),
    Source("aws", "s3://", "aws-cur2", ".parquet", via="storage", described="AWS CUR 2.0"),
    Source(
        "aws",
        "aws-ce:",
        via="api",
        list_rule=LIST_BILLED_USAGE,
        notes=("no public (list) price",),
        described="AWS Cost Explorer",
    ),
    # --- Azure
    Source("azure", "focus.parquet", "focus", ".parquet", described="FOCUS 1.2"),
    Source(
        "azure",
        "actual.csv",
        "azure-actual",
        ".csv",
        effective_is_billed=True,
        described=ACTUAL,
    ),
    Source(
        "azure",
        "actual.parquet",
        "azure-actual",
        ".parquet",
        effective_is_billed=True,
        described=ACTUAL,
    ),
    Source("azure", "amortized.csv.gz", "azure-amortized", ".csv.gz", described=AMORTIZED),
    Source(
        "azure",
        "azureml://",
        "azure-actual",
        ".csv",
        via="storage",
        effective_is_billed=True,
        described=ACTUAL,
    ),
    Source(
        "azure",
        "azure-cost:",
        via="api",
        list_rule=LIST_NONE,
        missing_kinds=NO_CREDIT_OR_TAX,
        notes=("no list (pay-as-you-go) cost", "credits and taxes are applied on Azure's invoice"),
        described="Azure Cost Management Query API",
    ),
    # --- Google Cloud
    Source("gcp", "focus.parquet", "focus", ".parquet", described="FOCUS 1.2"),
    Source("gcp", "standard.parquet", "gcp-standard", ".parquet", described=STANDARD),
    Source("gcp", "standard.jsonl", "gcp-standard", ".jsonl", described=STANDARD),
    Source("gcp", "detailed.parquet", "gcp-detailed", ".parquet", described=DETAILED),
    Source("gcp", "detailed.jsonl", "gcp-detailed", ".jsonl", described=DETAILED),
    Source("gcp", "gs://", "gcp-standard", ".parquet", via="storage", described=STANDARD),
    Source("gcp", "bq:", via="api", described="Cloud Billing export in BigQuery"),
]
BY_ID = {s.id: s for s in SOURCES}


def kept(source: Source) -> list[synthetic.Charge]:
    """The charges the source carries."""
    return [c for c in CHARGES[source.provider] if c.charge_kind not in source.missing_kinds]


def expected_list(source: Source, charges: list[synthetic.Charge]) -> float:
    if source.list_rule == LIST_ALL:
        return sum(c.list_cost for c in charges)
    if source.list_rule == LIST_BILLED_USAGE:
        return sum(c.billed_cost for c in charges if c.charge_kind in ("Usage", "Purchase"))
    return 0.0


# --- writing each file once, and the reports once per source and key ----------------------


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Source], Path]:
    folder = tmp_path_factory.mktemp("parity")
    cache: dict[tuple[str, str, str], Path] = {}

    def write(source: Source) -> Path:
        assert source.format
        key = (source.provider, source.format, source.suffix)
        if key not in cache:
            # Azure's amortized dataset is told by its path; actual-cost paths never say so.
            sub = "AmortizedCost" if source.format == "azure-amortized" else "ActualCost"
            path = folder / source.provider / source.format / sub / f"part_0_0001{source.suffix}"
            synthetic.write(source.format, CHARGES[source.provider], path)
            cache[key] = path
        return cache[key]

    return write


@pytest.fixture(scope="module")
def reports(written: Callable[[Source], Path]) -> Iterator[Callable[[str, str], dict[str, Any]]]:
    cache: dict[tuple[str, str], dict[str, Any]] = {}

    def get(source_id: str, key: str) -> dict[str, Any]:
        if (source_id, key) not in cache:
            source = BY_ID[source_id]
            with pytest.MonkeyPatch.context() as patch:
                cache[(source_id, key)] = _report(source, key, written, patch)
        return cache[(source_id, key)]

    yield get


def _options(source: str, key: str) -> costs.ReportOptions:
    return costs.ReportOptions(sources=[source], by=(key,), start=FIRST, end=LAST, reconcile=False)


def _report(
    source: Source, key: str, written: Callable[[Source], Path], patch: pytest.MonkeyPatch
) -> dict[str, Any]:
    if source.via == "file":
        return costs.report(_options(str(written(source)), key))
    return {
        ("aws", "storage"): _aws_s3,
        ("aws", "api"): _aws_ce,
        ("azure", "storage"): _azure_datastore,
        ("azure", "api"): _azure_query,
        ("gcp", "storage"): _gcs,
        ("gcp", "api"): _bigquery,
    }[(source.provider, source.via)](source, key, written, patch)


def _aws_s3(source: Source, key: str, written: Any, patch: pytest.MonkeyPatch) -> dict:
    import boto3
    from moto import mock_aws

    from tests.fakes.aws import REGION, use_fake_keys

    use_fake_keys(patch)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="billing")
        prefix = "exports/recipe-cur2/data/BILLING_PERIOD=2026-10"
        s3.put_object(
            Bucket="billing",
            Key=f"{prefix}/recipe-cur2-00001.snappy.parquet",
            Body=written(source).read_bytes(),
        )
        s3.put_object(
            Bucket="billing",
            Key="exports/recipe-cur2/metadata/BILLING_PERIOD=2026-10/recipe-cur2-Manifest.json",
            Body=json.dumps(
                {"dataFiles": [f"s3://billing/{prefix}/recipe-cur2-00001.snappy.parquet"]}
            ).encode(),
        )
        return costs.report(
            _options("s3://billing/exports/recipe-cur2/", key),
            aws={f"s3:{REGION}": s3},
        )


def _aws_ce(source: Source, key: str, written: Any, patch: pytest.MonkeyPatch) -> dict:
    from moto import mock_aws

    from providers.aws import sdk
    from tests.fakes.aws import (
        BotocoreFake,
        ce_client,
        cost_allocation_tags,
        cost_explorer_pages,
        register_cost_and_usage,
        use_fake_keys,
    )

    use_fake_keys(patch)
    patch.setattr(sdk, "CE_BACKOFF_S", 0.0)
    with mock_aws():
        register_cost_and_usage(cost_explorer_pages(CHARGES["aws"], key, days_per_page=10))
        ce = ce_client()
        cost_allocation_tags(BotocoreFake(ce), {key: "Active"})
        return costs.report(_options("aws-ce:", key), aws={"ce:us-east-1": ce})


def _azure_datastore(source: Source, key: str, written: Any, patch: pytest.MonkeyPatch) -> dict:
    from azure.ai.ml import MLClient

    from tests.fakes.azure import SUB, FakeCredential
    from tests.fakes.azure_cost import datastore_exports, manifest

    run = "exports/recipe-costs/20261001-20261031/7f3e"
    blobs = {
        f"{run}/part_0_0001.csv": written(source).read_bytes(),
        f"{run}/manifest.json": manifest("ActualCost", [f"{run}/part_0_0001.csv"]),
    }
    with datastore_exports(blobs) as server:
        patch.setenv("AZUREML_DEV_URL_MFE", server.url)
        patch.setenv("RECIPE_AZURE_BLOB_ENDPOINT", f"{server.url}/stmlworkspace")
        patch.setenv("AZURE_SUBSCRIPTION_ID", SUB)
        patch.setenv("AZURE_RESOURCE_GROUP", "rg-ml")
        patch.setenv("AZUREML_WORKSPACE_NAME", "ws-ml")
        client = MLClient(FakeCredential(), SUB, "rg-ml", "ws-ml", enable_telemetry=False)
        return costs.report(
            _options("azureml://datastores/workspaceblobstore/paths/exports/recipe-costs/", key),
            azure={"ml": client},
        )


def _azure_query(source: Source, key: str, written: Any, patch: pytest.MonkeyPatch) -> dict:
    from tests.fakes.azure import SUB
    from tests.fakes.azure_cost import FakeCostManagement, cost_client

    with FakeCostManagement(CHARGES["azure"], page_size=500) as fake:
        return costs.report(
            _options(f"azure-cost:/subscriptions/{SUB}", key), azure={"cost": cost_client(fake)}
        )


def _gcs(source: Source, key: str, written: Any, patch: pytest.MonkeyPatch) -> dict:
    from tests.fakes import bigquery as fakebq

    objects = {
        "billing-exports/gcp/2026-10/billing-000000000000.parquet": written(source).read_bytes(),
        "billing-exports/gcp/2026-10/_SUCCESS": b"",
    }
    with fakebq.gcs_listing(objects, page_size=10) as server:
        return costs.report(
            _options("gs://billing-exports/gcp/", key),
            gcp={"storage": fakebq.storage_client(server)},
        )


def _bigquery(source: Source, key: str, written: Any, patch: pytest.MonkeyPatch) -> dict:
    from tests.fakes import bigquery as fakebq

    table = f"bq:{fakebq.PROJECT}.{fakebq.DATASET}.{fakebq.TABLE}"
    with fakebq.FakeBigQuery(rows=gcp.rows(CHARGES["gcp"], detailed=False)) as fake:
        return costs.report(_options(table, key), gcp={"bigquery": fakebq.bigquery_client(fake)})


# --- the parity table: one test per provider and source, each by both keys ----------------


def _group_sums(report: dict[str, Any], key: str) -> dict[object, dict[str, float]]:
    out: dict[object, dict[str, float]] = {}
    for g in report["groups"]:
        value = g["key"][key]
        assert value not in out, f"group {value!r} appears twice"
        out[value] = {m: g[m] for m in ("billed_cost", "effective_cost", "list_cost")}
    return out


@pytest.mark.parametrize("source_id", [s.id for s in SOURCES], ids=[s.id for s in SOURCES])
def test_report_totals_equal_the_synthetic_spend(
    reports: Callable[[str, str], dict[str, Any]], source_id: str
) -> None:
    source = BY_ID[source_id]
    charges = kept(source)
    expected = synthetic.expected_totals(charges)[None]
    for key in KEYS:
        r = reports(source_id, key)
        where = f"{source_id} by {key}"
        assert r["currency"] == "USD", where
        assert r["period"] == {"from": FIRST.isoformat(), "to": LAST.isoformat()}, where
        assert len(r["sources"]) == 1, (where, r["sources"])
        if source.described:
            assert source.described in r["sources"][0]["format"], (where, r["sources"])

        total = r["total"]
        assert total["billed_cost"] == pytest.approx(expected.billed, abs=ABS), where
        assert total["effective_cost"] == pytest.approx(expected.effective, abs=ABS), where
        assert total["list_cost"] == pytest.approx(expected_list(source, charges), abs=ABS), where
        if source.effective_is_billed:
            assert total["effective_cost"] == pytest.approx(total["billed_cost"], abs=ABS), where

        kinds = {c["kind"]: c["billed_cost"] for c in r["charges"]}
        assert set(kinds) == set(expected.by_kind), where
        for kind, amount in expected.by_kind.items():
            assert kinds[kind] == pytest.approx(amount, abs=ABS), (where, kind)
        assert not set(kinds) & set(source.missing_kinds), where

        groups = _group_sums(r, key)
        want = synthetic.expected_totals(charges, key=lambda c, k=key: c.tags.get(k))
        assert set(groups) == set(want), where
        for value, totals in want.items():
            got = groups[value]
            assert got["billed_cost"] == pytest.approx(totals.billed, abs=ABS), (where, value)
            assert got["effective_cost"] == pytest.approx(totals.effective, abs=ABS), (
                where,
                value,
            )
            in_group = [c for c in charges if c.tags.get(key) == value]
            assert got["list_cost"] == pytest.approx(expected_list(source, in_group), abs=ABS), (
                where,
                value,
            )
        assert sum(g["billed_cost"] for g in groups.values()) == pytest.approx(
            total["billed_cost"], abs=ABS
        ), where

        for note in source.notes:
            assert any(note in n for n in r["notes"]), (where, note, r["notes"])


# --- the sources against each other --------------------------------------------------------


@pytest.mark.parametrize("provider", ["aws", "azure", "gcp"])
@pytest.mark.parametrize("key", KEYS)
def test_every_source_agrees_with_the_focus_report(
    reports: Callable[[str, str], dict[str, Any]], provider: str, key: str
) -> None:
    """Group by group, each source's report equals the FOCUS report of the same spend, but
    for what it documents it lacks: then the gap is exactly the charges it cannot carry."""
    base_report = reports(f"{provider}:focus.parquet", key)
    base = _group_sums(base_report, key)
    base_kinds = {c["kind"]: c for c in base_report["charges"]}
    for source in (s for s in SOURCES if s.provider == provider):
        r = reports(source.id, key)
        groups = _group_sums(r, key)
        assert set(groups) == set(base), source.id
        lacking = [c for c in CHARGES[provider] if c.charge_kind in source.missing_kinds]
        for value, money in base.items():
            gap = sum(c.billed_cost for c in lacking if c.tags.get(key) == value)
            assert groups[value]["billed_cost"] == pytest.approx(
                money["billed_cost"] - gap, abs=ABS
            ), (source.id, value)
            if source.list_rule == LIST_ALL:
                assert groups[value]["list_cost"] == pytest.approx(money["list_cost"], abs=ABS), (
                    source.id,
                    value,
                )
        kinds = {c["kind"]: c for c in r["charges"]}
        assert set(kinds) == set(base_kinds) - set(source.missing_kinds), source.id
        for kind, row in kinds.items():
            assert row["billed_cost"] == pytest.approx(base_kinds[kind]["billed_cost"], abs=ABS), (
                source.id,
                kind,
            )
            assert row["effective_cost"] == pytest.approx(
                base_kinds[kind]["effective_cost"], abs=ABS
            ), (source.id, kind)


def test_the_documented_differences_are_real_differences() -> None:
    """The table's exceptions are not vacuous: the synthetic spend has credits and tax on
    every cloud, and list cost above billed cost (spot) that Cost Explorer cannot show."""
    for provider, charges in CHARGES.items():
        kinds = {c.charge_kind for c in charges}
        assert {"Credit", "Tax", "Refund", "Usage"} <= kinds, provider
        assert sum(c.list_cost for c in charges) > sum(
            c.billed_cost for c in charges if c.charge_kind == "Usage"
        ), provider
    aws = BY_ID["aws:aws-ce:"]
    assert expected_list(aws, CHARGES["aws"]) < sum(c.list_cost for c in CHARGES["aws"])
    assert {s.id for s in SOURCES if s.missing_kinds} == {"azure:azure-cost:"}


def test_every_native_format_is_in_the_table() -> None:
    for provider in CHARGES:
        native = {n for n in synthetic.WRITERS if n.startswith(provider) or n == "focus"}
        covered = {s.format for s in SOURCES if s.provider == provider and s.via == "file"}
        assert native == covered, provider
        vias = {s.via for s in SOURCES if s.provider == provider}
        assert vias == {"file", "storage", "api"}, provider


def test_a_directory_of_every_format_of_one_cloud_is_each_cloud_counted_once(
    tmp_path: Path,
) -> None:
    """FOCUS beside a native export of other spend: one report sums both."""
    half = len(CHARGES["gcp"]) // 2
    first, second = CHARGES["gcp"][:half], CHARGES["gcp"][half:]
    focus.write(first, tmp_path / "bill" / "focus.parquet")
    gcp.write_detailed(second, tmp_path / "bill" / "export.jsonl")
    r = costs.report(_options(str(tmp_path / "bill"), "cost_center"))
    assert len(r["sources"]) == 2
    assert r["total"]["billed_cost"] == pytest.approx(
        synthetic.expected_totals(CHARGES["gcp"])[None].billed, abs=ABS
    )


def test_azure_datasets_differ_only_as_documented_when_commitments_amortize(
    tmp_path: Path,
) -> None:
    """With committed (reservation) usage, effective differs from billed: the actual-cost
    export reports effective = billed, the amortized export reports billed = effective (one
    cost column each), FOCUS and the Query API (ActualCost for billed, AmortizedCost for
    effective) keep both."""
    from dataclasses import replace

    from recipes.cost.billing import azure

    charges = [
        replace(c, pricing="Committed", effective_cost=round(c.billed_cost * 0.6, 6))
        if c.charge_kind == "Usage" and c.cost_kind == "compute"
        else c
        for c in CHARGES["azure"]
    ]
    expected = synthetic.expected_totals(charges)[None]
    assert expected.effective < expected.billed - 1  # the data has something to amortize
    focus.write(charges, tmp_path / "focus" / "part.parquet")
    azure.write_actual(charges, tmp_path / "ActualCost" / "part_0_0001.csv")
    azure.write_amortized(charges, tmp_path / "AmortizedCost" / "part_0_0001.csv")

    def totals(path: Path) -> dict[str, float]:
        return costs.report(_options(str(path), "cost_center"))["total"]

    full = totals(tmp_path / "focus")
    assert full["billed_cost"] == pytest.approx(expected.billed, abs=ABS)
    assert full["effective_cost"] == pytest.approx(expected.effective, abs=ABS)
    actual = totals(tmp_path / "ActualCost")
    assert actual["billed_cost"] == pytest.approx(expected.billed, abs=ABS)
    assert actual["effective_cost"] == pytest.approx(expected.billed, abs=ABS)
    amortized = totals(tmp_path / "AmortizedCost")
    assert amortized["billed_cost"] == pytest.approx(expected.effective, abs=ABS)
    assert amortized["effective_cost"] == pytest.approx(expected.effective, abs=ABS)
    for r in (full, actual, amortized):
        assert r["list_cost"] == pytest.approx(expected.list, abs=ABS)

    from tests.fakes.azure import SUB
    from tests.fakes.azure_cost import FakeCostManagement, cost_client

    with FakeCostManagement(charges, page_size=500) as fake:
        api = costs.report(
            _options(f"azure-cost:/subscriptions/{SUB}", "cost_center"),
            azure={"cost": cost_client(fake)},
        )["total"]
    carried = synthetic.expected_totals(
        [c for c in charges if c.charge_kind not in NO_CREDIT_OR_TAX]
    )[None]
    assert api["billed_cost"] == pytest.approx(carried.billed, abs=ABS)
    assert api["effective_cost"] == pytest.approx(carried.effective, abs=ABS)
    assert api["list_cost"] == 0.0
