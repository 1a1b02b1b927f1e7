"""Azure Cost Management "Cost and usage details" exports: actual cost and amortized cost.

Sources of the column rules (Microsoft Learn, cost-management-billing):
- MCA schema, dataset 2023-12-01-preview (camelCase, with a few PascalCase columns such as
  SubscriptionId, ResourceId, ProductName, PayGPrice):
  https://learn.microsoft.com/azure/cost-management-billing/dataset-schema/cost-usage-details-mca
- EA schema, dataset 2024-08-01 (PascalCase: CostInBillingCurrency, BillingCurrencyCode,
  PayGPrice, SubscriptionId; older EA files say SubscriptionGuid and PreTaxCost):
  https://learn.microsoft.com/azure/cost-management-billing/dataset-schema/cost-usage-details-ea
- "Understand cost details fields" (ChargeType, PricingModel, Tags):
  https://learn.microsoft.com/azure/cost-management-billing/automate/understand-usage-details-fields
- MCA vs EA column names: .../understand/mca-understand-your-usage

The two contracts name the same fields in different case (CostInBillingCurrency vs
costInBillingCurrency), so every column is found case-insensitively (schema.columns_lower).

Actual or amortized: the two datasets have the same columns; only the numbers differ
(amortized spreads reservation and savings-plan purchases over the days they cover).
The file cannot say which it is, so the PATH does: a file or folder name containing
"amortized" (any case) is the amortized dataset, as Azure's export names it (dataset type
`AmortizedCost`; providers.azure.billing puts downloaded exports under a folder named
after the dataset type in the export's manifest.json). Anything else is actual cost.

- Actual cost: BilledCost = EffectiveCost = the cost column (no amortization; export
  AmortizedCost or FocusCost for effective cost).
- Amortized cost: EffectiveCost = the cost column, and BilledCost is the same number: the
  amortized file does not carry the invoiced amount of a purchase.
- ListCost: paygCostInBillingCurrency where the file has it, else PayGPrice x Quantity,
  else the cost.
- x_Final: an MCA row with an invoiceId is invoiced; empty means not yet. EA files have no
  invoice column: NULL (cannot say).
- Tags: JSON text; some exports leave out the outer braces (`"k": "v","k2": "v2"`), others
  keep them; both are read. Text that still is not JSON gives NULL tags.
- ChargeType: Usage, Purchase, Refund, UnusedReservation, UnusedSavingsPlan, Adjustment;
  Microsoft's cost details leave out credits and taxes ("Understand the terms in your Azure
  usage and charges file": fees don't include credits, taxes or other charges), yet a
  `Credit` or `Tax` ChargeType (e.g. a file joined with invoice lines) keeps its own kind.
- Dates: `Date`/`date` is MM/DD/YYYY in CSV (older files YYYY-MM-DD); a day, so
  ChargePeriodEnd is the next day.

The writers render synthetic charges as an MCA export (the MCA schema above; MCA is the
contract that has invoiceId and refunds), or as EA with `contract="ea"`, as CSV,
gzipped CSV or Parquet by suffix (Azure exports CSV, CSV gzip and Parquet).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path, PurePath

from recipes.cost.billing import synthetic
from recipes.cost.billing.files import write_rows
from recipes.cost.billing.schema import (
    Table,
    columns_lower,
    cost_kind_sql,
    json_tag_sql,
    quote,
    tag_column,
)

# Lower-cased names; the first one a file has wins.
COST = ("costinbillingcurrency", "pretaxcost", "cost")
CURRENCY = ("billingcurrency", "billingcurrencycode", "currency")
SUBSCRIPTION = ("subscriptionid", "subscriptionguid")
# Enough to tell a cost-details file from FOCUS and other clouds' exports.
REQUIRED = ("date", "metercategory", "chargetype", "quantity")


def _first(lower: Mapping[str, str], names: Sequence[str]) -> str | None:
    return next((lower[n] for n in names if n in lower), None)


def is_amortized(path: str) -> bool:
    """Whether a path names the amortized dataset (see the module's docstring)."""
    return any("amortized" in part.lower() for part in PurePath(path).parts)


def contract_of(columns: Mapping[str, str]) -> str:
    lower = columns_lower(columns)
    if "invoiceid" in lower or "billingcurrency" in lower and "accountownerid" not in lower:
        return "MCA"
    if "accountownerid" in lower or "billingcurrencycode" in lower:
        return "EA"
    return "EA or MCA"


def _is_cost_details(columns: Mapping[str, str]) -> bool:
    lower = columns_lower(columns)
    return (
        all(n in lower for n in REQUIRED)
        and _first(lower, COST) is not None
        and "billedcost" not in lower  # FOCUS (Azure's FocusCost export) is focus.py's
    )


class AzureCostDetails:
    """The reader of one dataset: actual (`amortized=False`) or amortized cost."""

    def __init__(self, amortized: bool) -> None:
        self.amortized = amortized
        self.name = "azure-amortized" if amortized else "azure-actual"

    def matches(self, columns: Mapping[str, str], path: str) -> bool:
        return _is_cost_details(columns) and is_amortized(path) == self.amortized

    def describe(self, columns: Mapping[str, str], path: str) -> str:
        which = contract_of(columns)
        if self.amortized:
            return (
                f"Azure cost details, amortized cost ({which}; told by 'amortized' in the path): "
                "EffectiveCost is the amortized cost, and BilledCost the same number"
            )
        return (
            f"Azure cost details, actual cost ({which}): actual cost: no amortization; "
            "export AmortizedCost or FocusCost for effective cost"
        )

    def select(self, table: Table, tag_keys: Sequence[str]) -> str:
        lower = columns_lower(table.columns)

        def col(*names: str, default: str = "NULL") -> str:
            found = _first(lower, names)
            return quote(found) if found else default

        cost_name = _first(lower, COST)
        cost = f"CAST({quote(cost_name)} AS DOUBLE)" if cost_name else "NULL"
        quantity = f"CAST({col('quantity')} AS DOUBLE)"
        list_cost = _list_cost_sql(lower, cost, quantity)
        day = _date_sql(lower)
        charge_type = f"lower(coalesce(CAST({col('chargetype')} AS VARCHAR), ''))"
        kind = _charge_kind_sql(charge_type)
        category = f"CASE WHEN {kind} = 'Refund' THEN 'Credit' ELSE {kind} END"
        usage = f"({kind} = 'Usage')"
        tags = _tags_sql(col("tags"))
        invoice = col("invoiceid")
        final = (
            f"(coalesce(CAST({invoice} AS VARCHAR), '') <> '')" if "invoiceid" in lower else "NULL"
        )
        location = f"lower(replace(CAST({col('resourcelocation', 'location', 'meterregion')} AS VARCHAR), ' ', ''))"
        description = f"coalesce({col('productname', 'product')}, {col('metername')})"
        tag_exprs = [f"{json_tag_sql(tags, key)} AS {quote(tag_column(key))}" for key in tag_keys]
        return (
            "SELECT "
            + ", ".join(
                [
                    "'azure' AS ProviderName",
                    f"CAST({col('billingaccountid')} AS VARCHAR) AS BillingAccountId",
                    f"CAST({col(*SUBSCRIPTION)} AS VARCHAR) AS SubAccountId",
                    f"{day} AS ChargePeriodStart",
                    f"{day} + INTERVAL 1 DAY AS ChargePeriodEnd",
                    f"{cost} AS BilledCost",
                    f"{cost} AS EffectiveCost",
                    f"{list_cost} AS ListCost",
                    f"CAST({col(*CURRENCY)} AS VARCHAR) AS BillingCurrency",
                    f"{category} AS ChargeCategory",
                    f"{kind} AS x_ChargeKind",
                    f"CASE WHEN {usage} THEN {_pricing_sql(col('pricingmodel'))} END AS PricingCategory",
                    f"CAST({col('metercategory', 'servicename')} AS VARCHAR) AS ServiceName",
                    f"nullif({location}, '') AS RegionId",
                    f"CAST(nullif(CAST({col('resourceid', 'instanceid', 'instancename')} AS VARCHAR), '') AS VARCHAR) AS ResourceId",
                    f"CAST({description} AS VARCHAR) AS ChargeDescription",
                    f"CASE WHEN {usage} THEN {quantity} END AS ConsumedQuantity",
                    f"CASE WHEN {usage} THEN CAST({col('unitofmeasure')} AS VARCHAR) END AS ConsumedUnit",
                    f"CASE WHEN {usage} THEN {cost_kind_sql(col('metercategory'), col('metersubcategory'), col('metername'), col('unitofmeasure'))} ELSE 'other' END AS x_CostKind",
                    f"{final} AS x_Final",
                    f"{tags} AS Tags",
                    *tag_exprs,
                ]
            )
            + f" FROM {table.relation}"
        )


def _list_cost_sql(lower: Mapping[str, str], cost: str, quantity: str) -> str:
    parts = []
    if "paygcostinbillingcurrency" in lower:
        parts.append(f"CAST({quote(lower['paygcostinbillingcurrency'])} AS DOUBLE)")
    if "paygprice" in lower:
        parts.append(f"CAST({quote(lower['paygprice'])} AS DOUBLE) * {quantity}")
    parts.append(cost)
    return parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"


def _date_sql(lower: Mapping[str, str]) -> str:
    """The charge's day as a TIMESTAMP, from a DATE/TIMESTAMP DuckDB sniffed, or from text
    (MM/DD/YYYY as Azure's CSV writes it, or ISO)."""
    name = lower.get("date") or lower.get("usagedatetime")
    if name is None:
        return "CAST(NULL AS TIMESTAMP)"
    text = f"CAST({quote(name)} AS VARCHAR)"
    formats = (
        "['%m/%d/%Y', '%Y-%m-%d', '%Y-%m-%dT%H:%M:%S', '%Y-%m-%d %H:%M:%S', '%m/%d/%Y %H:%M:%S']"
    )
    return f"coalesce(TRY_CAST({quote(name)} AS TIMESTAMP), try_strptime({text}, {formats}))"


def _charge_kind_sql(charge_type: str) -> str:
    """Azure's ChargeType as x_ChargeKind; unused commitments are usage (FOCUS does the same:
    ChargeCategory Usage with CommitmentDiscountStatus Unused)."""
    return (
        f"CASE WHEN {charge_type} IN ('', 'usage', 'unusedreservation', 'unusedsavingsplan') THEN 'Usage' "
        f"WHEN {charge_type} = 'purchase' THEN 'Purchase' "
        f"WHEN {charge_type} = 'refund' THEN 'Refund' "
        f"WHEN {charge_type} LIKE '%credit%' THEN 'Credit' "
        f"WHEN {charge_type} LIKE '%tax%' THEN 'Tax' "
        f"ELSE 'Adjustment' END"
    )


def _pricing_sql(model: str) -> str:
    text = f"lower(replace(coalesce(CAST({model} AS VARCHAR), ''), ' ', ''))"
    return (
        f"CASE WHEN {text} IN ('ondemand', '') THEN 'Standard' "
        f"WHEN {text} = 'spot' THEN 'Dynamic' "
        f"WHEN {text} IN ('reservation', 'savingsplan') THEN 'Committed' "
        f"ELSE 'Other' END"
    )


def _tags_sql(tags: str) -> str:
    """The Tags column as a JSON object: braces added where the export left them out."""
    if tags == "NULL":
        return "CAST(NULL AS VARCHAR)"
    text = f"trim(coalesce(CAST({tags} AS VARCHAR), ''))"
    wrapped = f"CASE WHEN {text} = '' THEN '{{}}' WHEN {text} LIKE '{{%' THEN {text} ELSE '{{' || {text} || '}}' END"
    return f"CASE WHEN json_valid({wrapped}) THEN CAST(json({wrapped}) AS VARCHAR) END"


ACTUAL = AzureCostDetails(amortized=False)
AMORTIZED = AzureCostDetails(amortized=True)


# --- the synthetic writers -----------------------------------------------------------------

# MCA cost details (dataset 2023-12-01-preview), the columns we have data for, in the
# schema's order and case; EA's names for the same fields (dataset 2024-08-01) beside them.
_MCA_TO_EA = {
    "invoiceId": None,
    "billingAccountId": "BillingAccountId",
    "billingAccountName": "BillingAccountName",
    "billingProfileId": "BillingProfileId",
    "billingProfileName": "BillingProfileName",
    "invoiceSectionName": "InvoiceSectionName",
    "billingPeriodEndDate": "BillingPeriodEndDate",
    "billingPeriodStartDate": "BillingPeriodStartDate",
    "date": "Date",
    "serviceFamily": "ServiceFamily",
    "consumedService": "ConsumedService",
    "meterId": "MeterId",
    "meterName": "MeterName",
    "meterCategory": "MeterCategory",
    "meterSubCategory": "MeterSubCategory",
    "meterRegion": "MeterRegion",
    "ProductName": "ProductName",
    "SubscriptionId": "SubscriptionId",
    "subscriptionName": "SubscriptionName",
    "resourceGroupName": "ResourceGroup",
    "ResourceId": "ResourceId",
    "resourceLocation": "ResourceLocation",
    "effectivePrice": "EffectivePrice",
    "quantity": "Quantity",
    "unitOfMeasure": "UnitOfMeasure",
    "chargeType": "ChargeType",
    "billingCurrency": "BillingCurrencyCode",
    "costInBillingCurrency": "CostInBillingCurrency",
    "paygCostInBillingCurrency": None,
    "tags": "Tags",
    "PayGPrice": "PayGPrice",
    "frequency": "Frequency",
    "pricingModel": "PricingModel",
    "unitPrice": "UnitPrice",
    "AccountName": "AccountName",
    "AccountOwnerId": "AccountOwnerId",
}
_EA_ONLY = ("AccountName", "AccountOwnerId")
_MCA_ONLY = ("invoiceId", "paygCostInBillingCurrency")
_NUMBERS = {
    "effectivePrice",
    "quantity",
    "costInBillingCurrency",
    "paygCostInBillingCurrency",
    "PayGPrice",
    "unitPrice",
}
_CHARGE_TYPES = {
    "Usage": "Usage",
    "Purchase": "Purchase",
    "Refund": "Refund",
    "Adjustment": "Adjustment",
    "Credit": "Credit",
    "Tax": "Tax",
}
_PRICING_MODELS = {"Standard": "OnDemand", "Dynamic": "Spot", "Committed": "Reservation"}
_LOCATIONS = {"eastus": "EastUS"}
_METER_CATEGORY = {  # what Azure writes for the synthetic services
    "Microsoft.MachineLearningServices": "Azure Machine Learning",
    "Microsoft.Storage": "Storage",
    "Microsoft.Network": "Bandwidth",
    "Microsoft.Compute": "Virtual Machines",
}
_SUBCATEGORY = {
    "compute": "NVadsA10 v5 Series",
    "storage": "Tiered Block Blob",
    "transfer": "Rtn Preference: MGN",
    "other": "",
}


def _columns(contract_name: str, parquet: bool) -> list[tuple[str, str]]:
    out = []
    for mca, ea in _MCA_TO_EA.items():
        if contract_name == "mca" and mca in _EA_ONLY:
            continue
        name = mca if contract_name == "mca" else ea
        if name is None:
            continue
        if mca in _NUMBERS:
            kind = "DOUBLE"
        elif mca == "date" and parquet:
            kind = "DATE"
        else:
            kind = "VARCHAR"
        out.append((name, kind))
    return out


def rows(
    charges: Sequence[synthetic.Charge],
    amortized: bool,
    contract_name: str = "mca",
    parquet: bool = False,
) -> list[dict]:
    """Azure's charges as cost-details rows: one row per day, resource, meter, charge type,
    pricing model and tags (Azure rates usage daily), MCA or EA names."""
    groups: dict[tuple, list[synthetic.Charge]] = {}
    for c in charges:
        if c.provider != "azure":
            continue
        day = c.start.replace(hour=0, minute=0, second=0, microsecond=0)
        key = (
            day,
            c.resource_id,
            c.usage_type,
            c.charge_kind,
            c.pricing,
            c.description,
            json.dumps(c.tags, sort_keys=True),
            c.final,
        )
        groups.setdefault(key, []).append(c)
    out = [_row(key[0], items, amortized, contract_name, parquet) for key, items in groups.items()]
    if contract_name == "mca":
        return out
    return [{_MCA_TO_EA[k]: v for k, v in r.items() if _MCA_TO_EA[k]} for r in out]


def _row(
    day: datetime, items: list[synthetic.Charge], amortized: bool, contract_name: str, parquet: bool
) -> dict:
    c = items[0]
    usage = c.charge_kind == "Usage"
    cost = round(sum(i.effective_cost if amortized else i.billed_cost for i in items), 6)
    list_cost = round(sum(i.list_cost for i in items), 6)
    quantity = round(sum(i.quantity for i in items), 6) if usage else 0.0
    month = day.replace(day=1)
    month_end = (month.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    rg = (
        c.resource_id.split("/resourceGroups/")[1].split("/")[0]
        if "/resourceGroups/" in c.resource_id
        else ""
    )
    if contract_name == "ea":
        # EA's Tags keep the braces; MCA's `tags` leave them out (both occur in exports).
        tags = json.dumps(c.tags) if c.tags else ""
    else:
        tags = json.dumps(c.tags)[1:-1] if c.tags else ""
    return {
        "invoiceId": f"G{day:%y%m}0001" if c.final else "",
        "billingAccountId": c.billing_account,
        "billingAccountName": "Recipe demo",
        "billingProfileId": "BP-RECIPE",
        "billingProfileName": "Recipe demo",
        "invoiceSectionName": "ml-platform",
        "billingPeriodEndDate": f"{month_end:%m/%d/%Y}",
        "billingPeriodStartDate": f"{month:%m/%d/%Y}",
        "date": day.date() if parquet else f"{day:%m/%d/%Y}",
        "serviceFamily": "Compute" if c.cost_kind == "compute" else c.cost_kind.title(),
        "consumedService": c.service_code,
        "meterId": c.sku_id or None,
        "meterName": c.usage_type if usage else "",
        "meterCategory": _METER_CATEGORY.get(c.service_code, c.service),
        "meterSubCategory": _SUBCATEGORY[c.cost_kind] if usage else "",
        "meterRegion": "US East" if usage else "",
        "ProductName": c.description,
        "SubscriptionId": c.sub_account,
        "subscriptionName": "recipe-demo",
        "resourceGroupName": rg,
        "ResourceId": c.resource_id,
        "resourceLocation": _LOCATIONS.get(c.region, c.region) if c.resource_id else "",
        "effectivePrice": round(cost / quantity, 6) if quantity else 0.0,
        "quantity": quantity,
        "unitOfMeasure": c.unit if usage else "",
        "chargeType": _CHARGE_TYPES[c.charge_kind],
        "billingCurrency": c.currency,
        "costInBillingCurrency": cost,
        "paygCostInBillingCurrency": list_cost,
        "tags": tags,
        "PayGPrice": list_cost / quantity if quantity else 0.0,
        "frequency": "UsageBased" if usage else "OneTime",
        "pricingModel": _PRICING_MODELS[c.pricing] if usage else "",
        "unitPrice": list_cost / quantity if quantity else 0.0,
        "AccountName": "ml-platform",
        "AccountOwnerId": "finance@example.com",
    }


def _write(
    charges: Sequence[synthetic.Charge], path: Path, amortized: bool, contract_name: str
) -> None:
    if contract_name not in ("mca", "ea"):
        raise ValueError(f"unknown Azure contract {contract_name!r}: mca or ea")
    parquet = path.name.lower().endswith(".parquet")
    write_rows(
        _columns(contract_name, parquet), rows(charges, amortized, contract_name, parquet), path
    )


def write_actual(charges: Sequence[synthetic.Charge], path: Path, contract: str = "mca") -> None:
    """The actual-cost export (ActualCost). Name the path without "amortized"."""
    _write(charges, path, amortized=False, contract_name=contract)


def write_amortized(charges: Sequence[synthetic.Charge], path: Path, contract: str = "mca") -> None:
    """The amortized-cost export (AmortizedCost); put "amortized" in the path so readers
    tell it from actual cost, as Azure's export names its dataset."""
    _write(charges, path, amortized=True, contract_name=contract)
