"""AWS billing for `recipe cost report`: CUR exports in S3, and Cost Explorer.

- `s3://BUCKET/PREFIX`: every billing file of a Data Exports (CUR 2.0, FOCUS) or legacy
  CUR delivery under the prefix, downloaded for the report to read. Manifests are not
  data, but they say which files are current: a legacy CUR that keeps every version of a
  billing period writes each update to a new assembly folder, and its manifest's
  `reportKeys` name the files of the latest one
  (https://docs.aws.amazon.com/cur/latest/userguide/understanding-report-versions.html);
  a Data Exports manifest names them as `dataFiles` (s3:// URIs). Files a manifest
  supersedes are skipped, or the period would be counted twice.
- `aws-ce:` (or `aws-ce:ACCOUNT_ID` for one linked account): Cost Explorer
  GetCostAndUsage, daily, grouped by one tag key and RECORD_TYPE
  (https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_GetCostAndUsage.html;
  shapes from botocore's ce/2017-10-25/service-2.json). Each request costs USD 0.01.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from providers.aws import sdk
from providers.aws.storage import split_s3
from providers.base import BillingQuery, BillingRows
from recipes.cost.billing.files import kind_of
from recipes.cost.billing.schema import api_row, tag_column
from recipes.errors import ErrorKind, Problem, ProviderError, RecipeInputError

_MANIFEST = re.compile(r"manifest\.json$", re.IGNORECASE)
_ACCOUNT = re.compile(r"^\d{12}$")
# Cost Explorer's RECORD_TYPE values (the console's "Charge type"), lower case, no spaces.
_RECORD_KINDS = {
    "usage": "Usage",
    "discountedusage": "Usage",
    "savingsplancoveredusage": "Usage",
    "savingsplannegation": "Usage",
    "tax": "Tax",
    "credit": "Credit",
    "refund": "Refund",
}
CE_NOTE_LIST_COST = (
    "Cost Explorer has no public (list) price metric: ListCost is the unblended cost of usage "
    "and purchases, so spot and negotiated discounts do not show as savings against list"
)


def charge_kind(record_type: str) -> str:
    """x_ChargeKind of a Cost Explorer RECORD_TYPE value."""
    key = record_type.replace(" ", "").lower()
    if key in _RECORD_KINDS:
        return _RECORD_KINDS[key]
    if "fee" in key or "upfront" in key or "recurring" in key:
        return "Purchase"  # reservation and Savings Plans fees, support
    return "Adjustment"  # discounts and out-of-cycle charges


class AwsBilling:
    name = "aws"
    schemes = ("s3://",)
    api_schemes = ("aws-ce:",)

    def __init__(self, **clients: Any):
        # Injected by tests as "s3:<region>" / "ce:us-east-1", like the other aws modules.
        self.clients = sdk.Clients(clients)

    # --- export files in S3 --------------------------------------------------------------------

    def download(self, uri: str, directory: Path) -> list[Path]:
        bucket, key = split_s3(uri)
        if not bucket:
            raise RecipeInputError(Problem("expected s3://BUCKET/PREFIX", file=uri))
        s3 = self.clients.get("s3", sdk.CE_REGION)
        try:
            keys = sdk.list_keys(s3, bucket, key)
        except ProviderError as exc:
            if exc.kind == ErrorKind.NOT_FOUND:
                raise RecipeInputError(Problem(f"no such bucket: {bucket}", file=uri)) from None
            raise
        folder = key.rstrip("/")
        keys = [k for k in keys if k == key or not folder or k.startswith(folder + "/")]
        manifests = [k for k in keys if _MANIFEST.search(k)]
        data = [k for k in keys if kind_of(PurePosixPath(k)) and not k.endswith("/")]
        data = _current(data, {m: _listed(s3, bucket, m) for m in manifests})
        if not data:
            raise RecipeInputError(
                Problem(
                    "no billing files there",
                    file=uri,
                    hint="expected the S3 prefix of a Data Exports (CUR 2.0, FOCUS) or CUR "
                    "delivery: Parquet, CSV or gzipped CSV files",
                )
            )
        base = folder.rsplit("/", 1)[0] if key and key in data else folder
        paths = []
        for k in sorted(data):
            target = directory / _relative(k, base)
            target.parent.mkdir(parents=True, exist_ok=True)
            sdk.download_object(s3, bucket, k, str(target))
            paths.append(target)
        return paths

    # --- Cost Explorer -------------------------------------------------------------------------

    def query(self, source: str, query: BillingQuery) -> BillingRows:
        account = source[len("aws-ce:") :].strip() if source.startswith("aws-ce:") else source
        if account and not _ACCOUNT.match(account):
            raise RecipeInputError(
                Problem(
                    "expected aws-ce: or aws-ce:ACCOUNT_ID (a 12-digit linked account)",
                    file=source,
                )
            )
        if len(query.tag_keys) > 1:
            raise RecipeInputError(
                Problem(
                    f"Cost Explorer groups by at most 2 keys, and one is the charge type "
                    f"(RECORD_TYPE, so credits, refunds and tax stay apart): it cannot group by "
                    f"{len(query.tag_keys)} tag keys ({', '.join(query.tag_keys)})",
                    file=source,
                    hint="ask for one tag key with an API source (e.g. --by cost_center), or "
                    "report from a CUR 2.0 export (s3://...) for several",
                )
            )
        if query.end <= query.start:
            raise RecipeInputError(
                Problem("the period is empty (end is not after start)", file=source)
            )
        ce = self.clients.get("ce", sdk.CE_REGION)
        request = _request(query, account)
        pages = sdk.cost_and_usage(ce, request)
        rows = [row for page in pages for row in _rows(page, query.tag_keys, account)]
        notes = [CE_NOTE_LIST_COST, *self._tag_notes(ce, list(query.tag_keys))]
        by = f"TAG {query.tag_keys[0]}, " if query.tag_keys else ""
        return BillingRows(
            source=source,
            format=f"AWS Cost Explorer GetCostAndUsage (by {by}RECORD_TYPE, daily)",
            rows=rows,
            notes=tuple(notes),
        )

    def _tag_notes(self, ce: Any, keys: list[str]) -> list[str]:
        if not keys:
            return []
        try:
            status = sdk.cost_allocation_tags(ce, keys)
        except ProviderError as exc:
            if exc.kind != ErrorKind.AUTH:
                raise
            return [
                "could not check whether the tag keys are activated for cost allocation "
                "(ce:ListCostAllocationTags was denied)"
            ]
        return [
            f"tag {key} is not activated as a cost allocation tag: activate it in Billing > "
            "Cost allocation tags; data before activation is never tagged"
            + ("" if key in status else " (AWS has not seen this key on any resource yet)")
            for key in keys
            if status.get(key) != "Active"
        ]


def _request(query: BillingQuery, account: str) -> dict[str, Any]:
    group_by = [{"Type": "TAG", "Key": key} for key in query.tag_keys]
    group_by.append({"Type": "DIMENSION", "Key": "RECORD_TYPE"})
    request: dict[str, Any] = {
        # Start inclusive, End exclusive (GetCostAndUsageRequest.TimePeriod), as BillingQuery.
        "TimePeriod": {"Start": query.start.isoformat(), "End": query.end.isoformat()},
        "Granularity": "DAILY",
        "Metrics": ["UnblendedCost", "AmortizedCost"],
        "GroupBy": group_by,
    }
    if account:
        request["Filter"] = {"Dimensions": {"Key": "LINKED_ACCOUNT", "Values": [account]}}
    return request


def _rows(page: dict[str, Any], tag_keys: tuple[str, ...], account: str) -> list[dict[str, Any]]:
    rows = []
    for result in page.get("ResultsByTime", []):
        period = result.get("TimePeriod", {})
        start, end = _day(period.get("Start")), _day(period.get("End"))
        final = not result.get("Estimated", False)
        for group in result.get("Groups", []):
            keys = group.get("Keys", [])
            tags: dict[str, str] = {}
            values: dict[str, str | None] = {}
            for key, raw in zip(tag_keys, keys, strict=False):
                value = _tag_value(raw)
                values[tag_column(key)] = value
                if value:
                    tags[key] = value
            record = keys[len(tag_keys)] if len(keys) > len(tag_keys) else "Usage"
            metrics = group.get("Metrics", {})
            billed, currency = _amount(metrics.get("UnblendedCost"))
            effective, _ = _amount(metrics.get("AmortizedCost"))
            if billed == 0 and effective == 0:
                continue
            kind = charge_kind(record)
            rows.append(
                api_row(
                    ProviderName="aws",
                    SubAccountId=account or None,
                    ChargePeriodStart=start,
                    ChargePeriodEnd=end,
                    BilledCost=billed,
                    EffectiveCost=effective,
                    # No list price in Cost Explorer: usage and purchases at what they cost
                    # (CE_NOTE_LIST_COST); credits, refunds and tax have none, as in FOCUS.
                    ListCost=billed if kind in ("Usage", "Purchase") else 0.0,
                    BillingCurrency=currency,
                    ChargeCategory="Credit" if kind == "Refund" else kind,
                    x_ChargeKind=kind,
                    ChargeDescription=record,
                    x_CostKind="other",  # no usage type in this grouping
                    x_Final=final,
                    Tags=tags,
                    **values,
                )
            )
    return rows


def _tag_value(raw: str) -> str | None:
    """A TAG group key as Cost Explorer writes it, "key$value"; "key$" is untagged."""
    _, sep, value = raw.partition("$")
    return (value if sep else raw) or None


def _amount(metric: dict[str, Any] | None) -> tuple[float, str | None]:
    if not metric:
        return 0.0, None
    try:
        return float(metric.get("Amount", 0) or 0), metric.get("Unit")
    except (TypeError, ValueError):
        raise ProviderError(
            f"Cost Explorer answered a malformed amount: {metric.get('Amount')!r}", ErrorKind.API
        ) from None


def _day(text: str | None) -> datetime | None:
    return datetime.combine(date.fromisoformat(text), datetime.min.time()) if text else None


def _listed(s3: Any, bucket: str, key: str) -> set[str] | None:
    """The data keys a manifest names (legacy `reportKeys`, Data Exports `dataFiles`)."""
    try:
        manifest = json.loads(sdk.read_object(s3, bucket, key))
    except ValueError:
        return None
    if not isinstance(manifest, dict):
        return None
    listed = manifest.get("reportKeys") or manifest.get("dataFiles")
    if not isinstance(listed, list):
        return None
    keys = set()
    for item in listed:
        if isinstance(item, str):
            keys.add(split_s3(item)[1] if item.startswith("s3://") else item)
    return keys


def _current(data: list[str], manifests: dict[str, set[str] | None]) -> list[str]:
    """Data keys less those a manifest supersedes: files in the manifest's scope (its own
    folder; for Data Exports, the matching `data/` folder of its `metadata/` one) that it
    does not list."""
    stale: set[str] = set()
    for manifest, listed in manifests.items():
        if not listed:
            continue
        folder = manifest.rsplit("/", 1)[0] + "/" if "/" in manifest else ""
        scopes = {folder, folder.replace("/metadata/", "/data/")}
        stale |= {k for k in data if any(k.startswith(s) for s in scopes) and k not in listed}
    return [k for k in data if k not in stale]


def _relative(key: str, base: str) -> Path:
    """Where a key goes under the download folder: its path below the prefix, with no part
    that could climb out of the folder."""
    rest = key[len(base) :].lstrip("/") if base and key.startswith(base) else key
    parts = [p for p in rest.split("/") if p not in ("", ".", "..")]
    return Path(*parts) if parts else Path(PurePosixPath(key).name)
