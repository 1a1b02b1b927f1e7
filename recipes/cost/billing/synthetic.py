"""Realistic synthetic spend, one list of charges written in every billing format.

The same `Charge` list is written as FOCUS, AWS CUR 2.0 and legacy CUR, Azure cost
details (actual, amortized), the GCP BigQuery billing export (standard, detailed), and
the answers of the cost APIs; a report of any of them must give the same totals, and
`expected_totals` is the independent sum the tests compare with.

What a month of this project's spend looks like, per provider:
- training runs: instance hours tagged with the recipe's tags and the run's identity
  (`recipe`, `recipe_hash`, `run_id`); some on spot (list price above effective);
- an endpoint: one instance around the clock, tagged with `endpoint` and its run_id;
- storage of the project's bucket (tagged with the recipe's tags, no run_id);
- data transfer and another team's instance: untagged;
- a tax line, a credit and a refund, so they are kept apart in the report;
- the last two days not final (still estimated by the provider).

Writers live next to each format's reader (focus.py, aws.py, azure.py, gcp.py) and are
found through WRITERS, so this module imports no format.
"""

from __future__ import annotations

import hashlib
import importlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

QUICKSTART_TAGS = {
    "project": "quickstart",
    "cost_center": "demo",
    "owner": "ml-platform",
    "env": "dev",
}
OTHER_TAGS = {
    "project": "support-triage",
    "cost_center": "cc-4711",
    "owner": "ml-platform",
    "env": "prod",
}
# Azure ML bills a job's nodes to its compute cluster, which carries the cluster's tags,
# not the job's: reports split the cluster's cost across runs by node-hours.
AZURE_CLUSTER_TAGS = {"cost_center": "ml-shared", "owner": "ml-platform", "env": "dev"}


@dataclass(frozen=True)
class Charge:
    """One line of a bill, before any format: what every writer renders."""

    provider: str  # aws | azure | gcp
    billing_account: str
    sub_account: str  # AWS account id, Azure subscription id, GCP project id
    start: datetime  # UTC
    end: datetime
    service: str  # the provider's service name, e.g. "Amazon SageMaker"
    service_code: str  # e.g. "AmazonSageMaker", "Microsoft.MachineLearningServices"
    region: str  # the provider's region id
    resource_id: str  # ARN, Azure resource id, GCP resource name ("" for account-level lines)
    description: str
    usage_type: str  # the provider's usage type / meter / SKU description
    quantity: float
    unit: str  # "Hrs", "GB-Mo", "GB", as the provider writes it
    cost_kind: str  # compute | storage | transfer | other
    charge_kind: str  # Usage | Purchase | Tax | Credit | Refund | Adjustment
    pricing: str  # Standard | Dynamic | Committed
    list_cost: float
    billed_cost: float
    effective_cost: float
    currency: str
    tags: dict[str, str] = field(default_factory=dict)
    final: bool = True
    sku_id: str = ""


@dataclass(frozen=True)
class SyntheticRun:
    run_id: str
    recipe: str
    tags: dict[str, str]
    hours: float  # per node; the instance and its price are the provider's (_INSTANCE)
    spot: bool = False
    nodes: int = 1
    day: int = 0  # days after the period's start


@dataclass(frozen=True)
class Scenario:
    """What is generated: a period, runs and an endpoint per provider."""

    start: date
    days: int
    runs: tuple[SyntheticRun, ...]
    endpoint: str = "quickstart"
    endpoint_run: str = ""
    endpoint_hourly: float = 1.21
    currency: str = "USD"
    seed: int = 7


# Instance names and list prices per provider for a 1-GPU A10G/L4-class machine; the
# prices are close to the providers' public on-demand prices, not exact.
_INSTANCE = {
    "aws": ("ml.g5.2xlarge", 1.515, "us-east-1"),
    "azure": ("Standard_NV36ads_A10_v5", 3.20, "eastus"),
    "gcp": ("g2-standard-8", 0.854, "us-central1"),
}
_ACCOUNTS = {
    "aws": ("111122223333", "444455556666"),
    "azure": ("8611537", "00000000-0000-0000-0000-00000000aaaa"),
    "gcp": ("01A2B3-C4D5E6-F7A8B9", "recipe-demo-project"),
}
_SERVICES = {
    "aws": {
        "ml": ("Amazon SageMaker", "AmazonSageMaker"),
        "storage": ("Amazon Simple Storage Service", "AmazonS3"),
        "transfer": ("AWS Data Transfer", "AWSDataTransfer"),
        "other": ("Amazon Elastic Compute Cloud", "AmazonEC2"),
        "tax": ("Amazon SageMaker", "AmazonSageMaker"),
    },
    "azure": {
        "ml": ("Azure Machine Learning", "Microsoft.MachineLearningServices"),
        "storage": ("Storage", "Microsoft.Storage"),
        "transfer": ("Bandwidth", "Microsoft.Network"),
        "other": ("Virtual Machines", "Microsoft.Compute"),
        "tax": ("Azure Machine Learning", "Microsoft.MachineLearningServices"),
    },
    "gcp": {
        "ml": ("Vertex AI", "aiplatform.googleapis.com"),
        "storage": ("Cloud Storage", "storage.googleapis.com"),
        "transfer": ("Networking", "networking.googleapis.com"),
        "other": ("Compute Engine", "compute.googleapis.com"),
        "tax": ("Vertex AI", "aiplatform.googleapis.com"),
    },
}


def quickstart_scenario(start: date = date(2026, 10, 1), days: int = 30, seed: int = 7) -> Scenario:
    """Three quickstart runs and one of another team's recipe, and the quickstart endpoint."""
    qs, other = QUICKSTART_TAGS, OTHER_TAGS
    runs = (
        SyntheticRun("quickstart-20261001-090000-a1b2", "quickstart", qs, 2.5, day=0),
        SyntheticRun("quickstart-20261008-101500-c3d4", "quickstart", qs, 3.0, spot=True, day=7),
        SyntheticRun("quickstart-20261015-141000-e5f6", "quickstart", qs, 1.5, nodes=2, day=14),
        SyntheticRun("support-triage-20261020-080000-0a0b", "support-triage", other, 6.0, day=19),
    )
    return Scenario(start, days, runs, endpoint_run=runs[0].run_id, seed=seed)


def charges(provider: str, scenario: Scenario) -> list[Charge]:
    """The scenario's spend on one provider, hour by hour for compute, day by day otherwise."""
    instance, hourly, region = _INSTANCE[provider]
    account, sub = _ACCOUNTS[provider]
    rng = random.Random(f"{scenario.seed}-{provider}")
    svc = _SERVICES[provider]
    base = datetime(
        scenario.start.year, scenario.start.month, scenario.start.day, tzinfo=timezone.utc
    )
    not_final_from = base + timedelta(days=scenario.days - 2)
    out: list[Charge] = []

    def add(c: Charge) -> None:
        out.append(replace(c, final=c.start < not_final_from))

    def common(start: datetime, end: datetime, kind: str) -> dict:
        name, code = svc[kind]
        return {
            "provider": provider,
            "billing_account": account,
            "sub_account": sub,
            "start": start,
            "end": end,
            "service": name,
            "service_code": code,
            "region": region,
            "currency": scenario.currency,
        }

    # Training runs: one line per node and hour (the last hour partial).
    for run in scenario.runs:
        tags = {
            **run.tags,
            "recipe": run.recipe,
            "recipe_hash": _hash(run.recipe),
            "run_id": run.run_id,
        }
        if provider == "azure":
            tags = dict(AZURE_CLUSTER_TAGS)
        t0 = base + timedelta(days=run.day, hours=9)
        remaining = run.hours
        hour = 0
        while remaining > 1e-9:
            q = min(1.0, remaining)
            for node in range(run.nodes):
                list_cost = round(q * hourly, 6)
                billed = round(list_cost * (0.35 if run.spot else 1.0), 6)
                add(
                    Charge(
                        **common(t0 + timedelta(hours=hour), t0 + timedelta(hours=hour + q), "ml"),
                        resource_id=_resource(
                            provider, "training-job", run.run_id, sub, region, node
                        ),
                        description=f"{instance} training{' (spot)' if run.spot else ''}",
                        usage_type=_usage_type(provider, instance, "Training", run.spot),
                        quantity=q,
                        unit=_HOURS[provider],
                        cost_kind="compute",
                        charge_kind="Usage",
                        pricing="Dynamic" if run.spot else "Standard",
                        list_cost=list_cost,
                        billed_cost=billed,
                        effective_cost=billed,
                        tags=tags,
                        sku_id=_sku(provider, instance, run.spot),
                    )
                )
            remaining -= q
            hour += 1

    # The endpoint: one instance every hour of the period, tagged with its run.
    if scenario.endpoint_run:
        run = next(r for r in scenario.runs if r.run_id == scenario.endpoint_run)
        tags = {
            **run.tags,
            "recipe": run.recipe,
            "run_id": run.run_id,
            "endpoint": scenario.endpoint,
        }
        for h in range(24 * scenario.days):
            t = base + timedelta(hours=h)
            price = scenario.endpoint_hourly
            add(
                Charge(
                    **common(t, t + timedelta(hours=1), "ml"),
                    resource_id=_resource(provider, "endpoint", scenario.endpoint, sub, region, 0),
                    description=f"{instance} hosting",
                    usage_type=_usage_type(provider, instance, "Hosting", False),
                    quantity=1.0,
                    unit=_HOURS[provider],
                    cost_kind="compute",
                    charge_kind="Usage",
                    pricing="Standard",
                    list_cost=price,
                    billed_cost=price,
                    effective_cost=price,
                    tags=tags,
                    sku_id=_sku(provider, instance, False),
                )
            )

    # Day by day: the project's storage, untagged transfer, another team's instance.
    for d in range(scenario.days):
        t = base + timedelta(days=d)
        gb = 40 + d * 0.5
        storage = round(gb * 0.023 / 30, 6)
        add(
            Charge(
                **common(t, t + timedelta(days=1), "storage"),
                resource_id=_resource(provider, "bucket", "recipe-artifacts", sub, region, 0),
                description="Standard storage",
                usage_type=_STORAGE_TYPE[provider],
                quantity=round(gb / 30, 6),
                unit=_STORAGE_UNIT[provider],
                cost_kind="storage",
                charge_kind="Usage",
                pricing="Standard",
                list_cost=storage,
                billed_cost=storage,
                effective_cost=storage,
                tags=dict(QUICKSTART_TAGS),
                sku_id=f"{provider}-storage-std",
            )
        )
        gb_out = round(rng.uniform(1, 8), 3)
        transfer = round(gb_out * 0.09, 6)
        add(
            Charge(
                **common(t, t + timedelta(days=1), "transfer"),
                resource_id="",
                description="Data transfer out to the internet",
                usage_type=_TRANSFER_TYPE[provider],
                quantity=gb_out,
                unit="GB",
                cost_kind="transfer",
                charge_kind="Usage",
                pricing="Standard",
                list_cost=transfer,
                billed_cost=transfer,
                effective_cost=transfer,
                tags={},
                sku_id=f"{provider}-egress",
            )
        )
        other = round(24 * 0.192, 6)
        add(
            Charge(
                **common(t, t + timedelta(days=1), "other"),
                resource_id=_resource(provider, "instance", "build-runner", sub, region, 0),
                description="General purpose instance",
                usage_type=_usage_type(provider, "m5.xlarge", "BoxUsage", False),
                quantity=24.0,
                unit=_HOURS[provider],
                cost_kind="compute",
                charge_kind="Usage",
                pricing="Standard",
                list_cost=other,
                billed_cost=other,
                effective_cost=other,
                tags={"team": "ci"},
                sku_id=f"{provider}-vm",
            )
        )

    # Account-level lines: a credit, a refund and tax, on the period's last full day.
    usage = sum(c.billed_cost for c in out)
    t = base + timedelta(days=scenario.days - 3)
    for kind, amount, text in (
        ("Credit", -round(usage * 0.05, 2), "Promotional credit"),
        ("Refund", -12.5, "Refund for a failed endpoint deployment"),
        ("Tax", round(usage * 0.08, 2), "Sales tax"),
    ):
        add(
            Charge(
                **common(t, t + timedelta(days=1), "tax"),
                resource_id="",
                description=text,
                usage_type=kind,
                quantity=0.0,
                unit="",
                cost_kind="other",
                charge_kind=kind,
                pricing="Standard",
                list_cost=0.0,
                billed_cost=amount,
                effective_cost=amount,
                tags={},
                sku_id="",
            )
        )
    return out


@dataclass(frozen=True)
class Totals:
    billed: float
    effective: float
    list: float
    by_kind: dict[str, float]  # x_ChargeKind -> billed


def expected_totals(items: Sequence[Charge], key: Callable[[Charge], object] | None = None) -> dict:
    """An independent sum (plain Python over the Charge list, not DuckDB over a file)."""
    groups: dict[object, list[Charge]] = {}
    for c in items:
        groups.setdefault(key(c) if key else None, []).append(c)
    return {
        k: Totals(
            billed=round(sum(c.billed_cost for c in v), 6),
            effective=round(sum(c.effective_cost for c in v), 6),
            list=round(sum(c.list_cost for c in v), 6),
            by_kind={
                kind: round(sum(c.billed_cost for c in v if c.charge_kind == kind), 6)
                for kind in {c.charge_kind for c in v}
            },
        )
        for k, v in groups.items()
    }


# format name -> "module:function"; each writer is (charges, path) -> None and picks
# CSV, gzipped CSV, Parquet or JSON lines from the path's suffix where it can.
WRITERS: dict[str, str] = {
    "focus": "recipes.cost.billing.focus:write",
    "aws-cur2": "recipes.cost.billing.aws:write_cur2",
    "aws-cur-legacy": "recipes.cost.billing.aws:write_legacy_cur",
    "azure-actual": "recipes.cost.billing.azure:write_actual",
    "azure-amortized": "recipes.cost.billing.azure:write_amortized",
    "gcp-standard": "recipes.cost.billing.gcp:write_standard",
    "gcp-detailed": "recipes.cost.billing.gcp:write_detailed",
}


def write(format_name: str, items: Sequence[Charge], path: Path) -> None:
    module, function = WRITERS[format_name].split(":")
    getattr(importlib.import_module(module), function)(items, path)


# --- provider-style names ------------------------------------------------------------------

_HOURS = {"aws": "Hrs", "azure": "1 Hour", "gcp": "hour"}
_STORAGE_UNIT = {"aws": "GB-Mo", "azure": "1 GB/Month", "gcp": "gibibyte month"}
_STORAGE_TYPE = {
    "aws": "USE1-TimedStorage-ByteHrs",
    "azure": "Hot LRS Data Stored",
    "gcp": "Standard Storage US Multi-region",
}
_TRANSFER_TYPE = {
    "aws": "USE1-DataTransfer-Out-Bytes",
    "azure": "Standard Data Transfer Out",
    "gcp": "Network Internet Data Transfer Out from Americas to Americas",
}


def _usage_type(provider: str, instance: str, what: str, spot: bool) -> str:
    if provider == "aws":
        return (
            f"USE1-{'Spot' if spot else ''}{what}:{instance}"
            if what != "BoxUsage"
            else f"USE1-BoxUsage:{instance}"
        )
    if provider == "azure":
        return f"{instance}{' Spot' if spot else ''}"
    return f"{'Spot Preemptible ' if spot else ''}{instance} {what} running in Americas"


def _sku(provider: str, instance: str, spot: bool) -> str:
    return hashlib.sha1(f"{provider}{instance}{spot}".encode()).hexdigest()[:14].upper()


def _resource(provider: str, kind: str, name: str, sub: str, region: str, node: int) -> str:
    if provider == "aws":
        service = {
            "training-job": "sagemaker",
            "endpoint": "sagemaker",
            "bucket": "s3",
            "instance": "ec2",
        }[kind]
        if kind == "bucket":
            return f"arn:aws:s3:::{name}"
        return f"arn:aws:{service}:{region}:{sub}:{kind}/{name}"
    if provider == "azure":
        rg = f"/subscriptions/{sub}/resourceGroups/recipe-rg/providers"
        return {
            "training-job": f"{rg}/Microsoft.MachineLearningServices/workspaces/recipe-ws/computes/gpu-cluster",
            "endpoint": f"{rg}/Microsoft.MachineLearningServices/workspaces/recipe-ws/onlineEndpoints/{name}",
            "bucket": f"{rg}/Microsoft.Storage/storageAccounts/recipeartifacts",
            "instance": f"{rg}/Microsoft.Compute/virtualMachines/{name}",
        }[kind]
    return {
        "training-job": f"//aiplatform.googleapis.com/projects/{sub}/locations/{region}/customJobs/{name}",
        "endpoint": f"//aiplatform.googleapis.com/projects/{sub}/locations/{region}/endpoints/{name}",
        "bucket": f"//storage.googleapis.com/projects/_/buckets/{name}",
        "instance": f"//compute.googleapis.com/projects/{sub}/zones/{region}-a/instances/{name}",
    }[kind]


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]
