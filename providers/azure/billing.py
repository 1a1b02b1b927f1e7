"""Azure billing data for `recipe cost report`: Cost Management exports in an Azure ML
datastore (`azureml://`), and the Cost Management Query API (`azure-cost:SCOPE`).

Exports: Cost Management writes each run of an export as
`<directory>/<export name>/<YYYYMMDD-YYYYMMDD>/<run id>/part_*.csv|.csv.gz|.parquet` beside a
`manifest.json` ("Tutorial: Improved exports", learn.microsoft.com/azure/
cost-management-billing/costs/tutorial-improved-exports). The export's storage container is
registered as a datastore of the workspace; download() copies every billing file under the
path. The files of actual and amortized cost have the same columns, so the dataset is told by
the path (recipes.cost.billing.azure): where a run's manifest names its dataset type
(`exportConfig.type`, e.g. AmortizedCost) and the path does not say "amortized", the files
are put under a folder named after the type.

Query API: azure-mgmt-costmanagement's query.usage on the scope, daily, the Sum of `Cost`
grouped by the tag key and ChargeType (the API takes at most two groupings, so one tag key
per query), ActualCost for BilledCost and AmortizedCost for EffectiveCost. The API has no
list (pay-as-you-go) cost, and no resource, service or region once grouped by tag: those
columns stay empty. Credits and taxes are applied on the invoice and are not in Cost
Management's data.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from providers.azure import sdk
from providers.azure.storage import DatastoreStorage, parse
from providers.base import BillingQuery, BillingRows
from recipes.cost.billing.files import kind_of
from recipes.cost.billing.schema import api_row, tag_column
from recipes.errors import ErrorKind, Problem, ProviderError, RecipeInputError

API_PREFIX = "azure-cost:"
# The scopes the Query API answers (QueryOperations.usage's docstring).
_SCOPE = re.compile(
    r"/?(subscriptions/[^/]+(/resourceGroups/[^/]+)?"
    r"|providers/Microsoft\.Billing/billingAccounts/[^/]+"
    r"(/billingProfiles/[^/]+(/invoiceSections/[^/]+)?|/departments/[^/]+"
    r"|/enrollmentAccounts/[^/]+|/customers/[^/]+)?"
    r"|providers/Microsoft\.Management/managementGroups/[^/]+)/?",
    re.IGNORECASE,
)
# ActualCost and AmortizedCost sum `Cost` (and CostUSD); `PreTaxCost` is the column of the
# legacy `Usage` type (REST reference "Query - Usage", examples per type).
AGGREGATE = "Cost"
_MAX_PAGES = 1000


class AzureBilling:
    name = "azure"
    schemes = ("azureml://",)
    api_schemes = (API_PREFIX,)

    def __init__(self, **clients: Any) -> None:
        """`ml`: an MLClient of the datastore's workspace; `cost`: a CostManagementClient.
        Made on first use from DefaultAzureCredential when not given (tests inject them)."""
        self.clients = clients

    # --- exports in a datastore --------------------------------------------------------

    def download(self, uri: str, directory: Path) -> list[Path]:
        where = parse(uri)
        client = self.clients.get("ml") or sdk.ml_client(
            where.subscription, where.resource_group, where.workspace
        )
        store = DatastoreStorage(client)
        prefix = where.path
        names = [n for n in store.names(where.datastore, prefix) if _under(n, prefix)]
        wanted = [n for n in names if kind_of(PurePosixPath(n)) is not None]
        if not wanted:
            raise RecipeInputError(
                Problem(
                    "no billing files under this datastore path",
                    file=uri,
                    hint="the path of a Cost Management export (its folder or one file): "
                    "CSV, gzipped CSV or Parquet beside a manifest.json",
                )
            )
        datasets: dict[str, str] = {}  # folder -> the dataset its manifest names
        copied = []
        for name in wanted:
            folder = str(PurePosixPath(name).parent)
            if folder not in datasets:
                datasets[folder] = _dataset(store, where.datastore, f"{folder}/manifest.json")
            relative = _relative(name, prefix)
            if datasets[folder] and "amortized" not in name.lower():
                relative = PurePosixPath(datasets[folder]) / relative
            target = directory / relative
            _copy(store.container(where.datastore).get_blob_client(name), target, name)
            copied.append(target)
        return copied

    # --- the Query API -----------------------------------------------------------------

    def query(self, source: str, query: BillingQuery) -> BillingRows:
        scope = _scope(source)
        if len(query.tag_keys) > 1:
            raise RecipeInputError(
                Problem(
                    f"the Azure Cost Management Query API groups by one tag key at a time "
                    f"(asked: {', '.join(query.tag_keys)})",
                    file=source,
                    field="tag",
                    hint="ask for one tag key per azure-cost: source, or read a cost export",
                )
            )
        if query.end <= query.start:
            raise RecipeInputError(
                Problem("the period is empty: its end is not after its start", file=source)
            )
        client = self.clients.get("cost") or sdk.cost_client()
        key = query.tag_keys[0] if query.tag_keys else None
        groupings = ([("TagKey", key)] if key else []) + [("Dimension", "ChargeType")]
        start = datetime.combine(query.start, time(0), timezone.utc)
        last = datetime.combine(query.end - timedelta(days=1), time(23, 59, 59), timezone.utc)
        totals: dict[tuple[date, str, str, str], list[float]] = {}
        for index, kind in enumerate(("ActualCost", "AmortizedCost")):
            body = sdk.cost_query_body(kind, start, last, AGGREGATE, groupings)
            for row in _pages(client, scope, body):
                slot = (row["day"], row["tag"], row["charge_type"], row["currency"])
                totals.setdefault(slot, [0.0, 0.0])[index] += row["cost"]
        rows = [_row(scope, key, slot, costs) for slot, costs in sorted(totals.items())]
        by = f"by TagKey {key} and ChargeType" if key else "by ChargeType"
        return BillingRows(
            source=source,
            format=f"Azure Cost Management Query API (ActualCost and AmortizedCost, daily, {by})",
            rows=rows,
            notes=(
                "Azure's Query API has no list (pay-as-you-go) cost: ListCost is empty",
                "credits and taxes are applied on Azure's invoice, not in Cost Management data",
            ),
        )


def _dataset(store: DatastoreStorage, datastore: str, manifest: str) -> str:
    """The dataset type an export run's manifest names ("" when there is none, or it does
    not say: the path alone decides then)."""
    text = store.read_text(datastore, manifest)
    try:
        config = json.loads(text).get("exportConfig") or {} if text else {}
    except (ValueError, AttributeError):
        return ""
    kind = str(config.get("type") or "") if isinstance(config, dict) else ""
    return kind if re.fullmatch(r"[A-Za-z]+", kind) else ""


def _copy(blob: Any, target: Path, name: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        sdk.call(lambda: blob.download_blob().readinto(out), f"read {name}")


def _under(name: str, prefix: str) -> bool:
    """A blob is the path itself or under it as a folder (not `exports/a` for `exports/abc`)."""
    folder = prefix.rstrip("/")
    return name == prefix or not folder or name.startswith(folder + "/")


def _relative(name: str, prefix: str) -> PurePosixPath:
    folder = prefix.rstrip("/")
    if name == prefix or not name.startswith(folder + "/"):
        return PurePosixPath(PurePosixPath(name).name)
    return PurePosixPath(name[len(folder) + 1 :])


def _scope(source: str) -> str:
    scope = source[len(API_PREFIX) :] if source.startswith(API_PREFIX) else source
    if not _SCOPE.fullmatch(scope):
        raise RecipeInputError(
            Problem(
                "not an Azure Cost Management scope",
                file=source,
                hint="azure-cost:/subscriptions/ID, azure-cost:/providers/Microsoft.Billing/"
                "billingAccounts/ID (or a billing profile, department, enrollment account, "
                "management group)",
            )
        )
    return scope.strip("/")


def _pages(client: Any, scope: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every row of the answer, following nextLink, as dicts of the parts we use."""
    found: list[dict[str, Any]] = []
    skiptoken = None
    for _ in range(_MAX_PAGES):
        page = sdk.cost_query(client, scope, body, skiptoken)
        names = [str(c.get("name") or "") for c in page.get("columns") or []]
        found.extend(_parse_row(names, row, scope) for row in page.get("rows") or [])
        skiptoken = _skiptoken(page.get("nextLink"))
        if not skiptoken:
            return found
    raise RecipeInputError(
        Problem(f"the Query API answered more than {_MAX_PAGES} pages", file=scope)
    )


def _skiptoken(next_link: str | None) -> str | None:
    if not next_link:
        return None
    from urllib.parse import parse_qs, urlsplit

    values = parse_qs(urlsplit(next_link).query).get("$skiptoken")
    return values[0] if values else None


def _parse_row(names: list[str], row: list[Any], scope: str) -> dict[str, Any]:
    lower = {n.lower(): i for i, n in enumerate(names)}

    def value(*candidates: str) -> Any:
        for name in candidates:
            if name.lower() in lower:
                return row[lower[name.lower()]]
        return None

    cost = value(AGGREGATE, "totalCost", "PreTaxCost")
    day = value("UsageDate", "BillingMonth")
    try:
        return {
            "cost": float(cost or 0.0),
            "day": _day(day),
            "tag": str(value("TagValue") or ""),
            "charge_type": str(value("ChargeType") or "Usage"),
            "currency": str(value("Currency", "BillingCurrency") or ""),
        }
    except (TypeError, ValueError):
        raise ProviderError(
            f"the Query API of {scope} answered a row we cannot read: columns {names}",
            ErrorKind.API,
        ) from None


def _day(value: Any) -> date:
    """UsageDate is a number (20261001) in daily answers; BillingMonth a datetime text."""
    text = str(value)
    if re.fullmatch(r"\d{8}(\.0)?", text):
        return datetime.strptime(text[:8], "%Y%m%d").date()
    return datetime.fromisoformat(text.replace("Z", "+00:00")).date()


def _charge_kind(charge_type: str) -> str:
    text = charge_type.lower().replace(" ", "")
    if text in ("", "usage", "unusedreservation", "unusedsavingsplan"):
        return "Usage"
    if text == "purchase":
        return "Purchase"
    if text == "refund":
        return "Refund"
    if "credit" in text:
        return "Credit"
    if "tax" in text:
        return "Tax"
    return "Adjustment"


def _row(
    scope: str, key: str | None, slot: tuple[date, str, str, str], costs: list[float]
) -> dict[str, Any]:
    day, tag, charge_type, currency = slot
    kind = _charge_kind(charge_type)
    parts = scope.split("/")
    subscription = parts[1] if parts[0].lower() == "subscriptions" else None
    account = parts[3] if scope.lower().startswith("providers/microsoft.billing/") else None
    start = datetime.combine(day, time(0))
    row = api_row(
        ProviderName="azure",
        BillingAccountId=account,
        SubAccountId=subscription,
        ChargePeriodStart=start,
        ChargePeriodEnd=start + timedelta(days=1),
        BilledCost=costs[0],
        EffectiveCost=costs[1],
        BillingCurrency=currency or None,
        ChargeCategory="Credit" if kind == "Refund" else kind,
        x_ChargeKind=kind,
        ChargeDescription=charge_type,
        Tags={key: tag} if key and tag else {},
    )
    if key:
        row[tag_column(key)] = tag or None
    return row
