"""`recipe cost report` on a 10-million-row FOCUS Parquet file, beside a plain pandas report,
in one run.

    python benchmarks/cost_report.py [--rows 10000000] [--data DIR] [--repeat 3]

The file: FOCUS 1.2 columns as AWS exports them (Tags a JSON object with `user:` keys),
a year of hourly charges over 40 cost centers, 2,000 runs and untagged spend. It is made
once (by DuckDB, in about a minute) and kept in --data.

Measured, each in a fresh process, time and peak resident memory (ru_maxrss):
- ours: `recipe cost report FILE --by cost_center,month --format json` (the whole report:
  groups, charges by kind, untagged, coverage, timeline, not-final);
- baseline: pandas reads the columns it needs (pyarrow), takes cost_center out of the Tags
  JSON and sums billed, effective and list cost by cost center and month. The baseline
  does less than ours; both totals are printed and must agree.
Target on a 2-core machine: ours <= 10 s and <= 2 GB, and >= 5x faster than the baseline;
exit code 1 when it is not met or the totals differ.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

MAKE = """
COPY (
  WITH r AS (SELECT range AS i, hash(range) AS h FROM range({rows}))
  SELECT
    'AWS' AS ProviderName, 'AWS' AS PublisherName, 'AWS' AS InvoiceIssuerName,
    '111122223333' AS BillingAccountId, '111122223333' AS BillingAccountName,
    'Management Account' AS BillingAccountType,
    lpad(CAST(h % 7 AS VARCHAR), 12, '4') AS SubAccountId,
    lpad(CAST(h % 7 AS VARCHAR), 12, '4') AS SubAccountName, 'Member Account' AS SubAccountType,
    TIMESTAMP '2025-11-01' + to_hours(CAST(i * 8760 // {rows} AS BIGINT)) AS ChargePeriodStart,
    TIMESTAMP '2025-11-01' + to_hours(CAST(i * 8760 // {rows} AS BIGINT) + 1) AS ChargePeriodEnd,
    date_trunc('month', TIMESTAMP '2025-11-01' + to_hours(CAST(i * 8760 // {rows} AS BIGINT)))
      AS BillingPeriodStart,
    date_trunc('month', TIMESTAMP '2025-11-01' + to_hours(CAST(i * 8760 // {rows} AS BIGINT)))
      + INTERVAL 1 MONTH AS BillingPeriodEnd,
    'USD' AS BillingCurrency, 'USD' AS PricingCurrency,
    CASE WHEN h % 1000 = 0 THEN 'Tax' WHEN h % 1000 = 1 THEN 'Credit' ELSE 'Usage' END
      AS ChargeCategory,
    NULL::VARCHAR AS ChargeClass,
    CASE WHEN h % 1000 < 2 THEN 'One-Time' ELSE 'Usage-Based' END AS ChargeFrequency,
    ['Amazon SageMaker', 'Amazon Simple Storage Service', 'Amazon Elastic Compute Cloud',
     'AWS Data Transfer', 'Amazon CloudWatch'][CAST(1 + h % 5 AS BIGINT)] AS ServiceName,
    ['AI and Machine Learning', 'Storage', 'Compute', 'Networking', 'Management and Governance']
      [CAST(1 + h % 5 AS BIGINT)] AS ServiceCategory,
    ['ml.g5.2xlarge training', 'Standard storage', 'General purpose instance',
     'Data transfer out', 'Metrics'][CAST(1 + h % 5 AS BIGINT)] AS ChargeDescription,
    ['USE1-Training:ml.g5.2xlarge', 'USE1-TimedStorage-ByteHrs', 'USE1-BoxUsage:m5.xlarge',
     'USE1-DataTransfer-Out-Bytes', 'USE1-CW:MetricMonitorUsage'][CAST(1 + h % 5 AS BIGINT)] AS SkuMeter,
    ['Hrs', 'GB-Mo', 'Hrs', 'GB', 'Metrics'][CAST(1 + h % 5 AS BIGINT)] AS ConsumedUnit,
    ['Hrs', 'GB-Mo', 'Hrs', 'GB', 'Metrics'][CAST(1 + h % 5 AS BIGINT)] AS PricingUnit,
    round((h % 997) / 997.0, 4) AS ConsumedQuantity,
    round((h % 997) / 997.0, 4) AS PricingQuantity,
    CASE WHEN h % 1000 = 1 THEN -1.0 ELSE 1.0 END * round((h % 10007) / 1000.0, 6) AS BilledCost,
    CASE WHEN h % 1000 = 1 THEN -1.0 ELSE 1.0 END * round((h % 10007) / 1000.0, 6)
      AS EffectiveCost,
    CASE WHEN h % 1000 = 1 THEN -1.0 ELSE 1.0 END * round((h % 10007) / 1000.0, 6)
      AS ContractedCost,
    CASE WHEN h % 1000 < 2 THEN 0.0
         WHEN h % 9 = 0 THEN round((h % 10007) / 1000.0 / 0.35, 6)
         ELSE round((h % 10007) / 1000.0, 6) END AS ListCost,
    CASE WHEN h % 1000 < 2 THEN NULL WHEN h % 9 = 0 THEN 'Dynamic' ELSE 'Standard' END
      AS PricingCategory,
    'us-east-1' AS RegionId, 'US East (N. Virginia)' AS RegionName,
    'arn:aws:sagemaker:us-east-1:444455556666:training-job/r' || CAST(h % 2000 AS VARCHAR)
      AS ResourceId,
    CASE WHEN i * 8760 // {rows} >= 8760 - 48 THEN NULL ELSE 'INV-1' END AS InvoiceId,
    CASE WHEN h % 10 = 0 THEN '{{}}'
         WHEN h % 20 < 19 THEN '{{"user:cost_center": "cc-' || CAST(h % 40 AS VARCHAR)
           || '", "user:project": "p' || CAST(h % 12 AS VARCHAR)
           || '", "user:owner": "team-' || CAST(h % 6 AS VARCHAR) || '"'
           || CASE WHEN h % 5 = 0 THEN ', "user:run_id": "run-' || CAST(h % 2000 AS VARCHAR)
                   || '", "user:recipe": "support-triage"' ELSE '' END || '}}'
         ELSE '{{"user:project": "shared", "aws:createdBy": "AssumedRole:ci"}}' END AS Tags
  FROM r
) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 122880)
"""

OURS = """
import json, resource, sys, time
t0 = time.perf_counter()
from recipes.cli import app
try:
    app(["cost", "report", sys.argv[1], "--by", "cost_center,month", "--format", "json",
         "--no-reconcile", "--output", sys.argv[2]])
except SystemExit as exc:
    assert not exc.code, exc.code
seconds = time.perf_counter() - t0
r = json.load(open(sys.argv[2]))
print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "billed": r["total"]["billed_cost"], "groups": len(r["groups"])}))
"""

BASELINE = """
import json, resource, sys, time
t0 = time.perf_counter()
import pandas as pd
df = pd.read_parquet(sys.argv[1], columns=["ChargePeriodStart", "BilledCost", "EffectiveCost",
                                             "ListCost", "Tags"])
df["cost_center"] = df["Tags"].map(json.loads).str.get("user:cost_center")
df["month"] = df["ChargePeriodStart"].dt.strftime("%Y-%m")
groups = df.groupby(["cost_center", "month"], dropna=False)[
    ["BilledCost", "EffectiveCost", "ListCost"]].sum()
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "billed": float(groups["BilledCost"].sum()), "groups": len(groups)}))
"""


def make(path: Path, rows: int) -> None:
    import duckdb

    t0 = time.perf_counter()
    con = duckdb.connect()
    con.execute(MAKE.format(rows=rows, path=path))
    print(f"made {path} ({rows:,} rows, {path.stat().st_size / 1e6:,.0f} MB) "
          f"in {time.perf_counter() - t0:.0f} s")  # fmt: skip


def measure(code: str, *args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, check=False
    )
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "recipe-bench")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best is kept")
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    path = args.data / f"focus-{args.rows}.parquet"
    if not path.exists():
        make(path, args.rows)
    out = args.data / "report.json"
    ours = min(
        (measure(OURS, str(path), str(out)) for _ in range(args.repeat)),
        key=lambda m: m["seconds"],
    )
    base = measure(BASELINE, str(path))
    print(f"rows {args.rows:,}, by cost_center,month, {os.cpu_count()} cores")
    print(f"ours (recipe cost report):   {ours['seconds']:6.2f} s  peak {ours['peak_mb']:7.0f} MB  "
          f"billed {ours['billed']:,.2f}  groups {ours['groups']}")  # fmt: skip
    print(f"baseline (pandas + json):    {base['seconds']:6.2f} s  peak {base['peak_mb']:7.0f} MB  "
          f"billed {base['billed']:,.2f}  groups {base['groups']}")  # fmt: skip
    print(f"speed-up {base['seconds'] / ours['seconds']:.1f}x; "
          f"memory {ours['peak_mb'] / base['peak_mb']:.2f}x of the baseline's")  # fmt: skip
    agree = abs(ours["billed"] - base["billed"]) < 1e-3 * max(1.0, abs(base["billed"]))
    print("totals agree" if agree else "TOTALS DIFFER")
    target = (
        ours["seconds"] <= 10 and ours["peak_mb"] <= 2048 and base["seconds"] >= 5 * ours["seconds"]
    )
    print("target met (<= 10 s, <= 2 GB, >= 5x)" if target else "target NOT met")
    if not (agree and target):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
