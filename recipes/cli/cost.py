"""`recipe cost`: reports for finance from each cloud's billing data, and sample data to try
them on."""

from __future__ import annotations

import calendar
import enum
import re
import sys
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from recipes.cli.common import EXIT_BAD_INPUT, emit_json, err, handle_errors
from recipes.errors import Problem, RecipeInputError

app = typer.Typer(
    help=(
        "Cost reports for finance from each cloud's billing data, by cost center, run and "
        "endpoint, reconciled with the plans' estimates.\n\n"
        "Try it offline:  recipe cost sample bill.parquet  then  recipe cost report "
        "bill.parquet --by cost_center,month"
    ),
    no_args_is_help=True,
)


class OutputFormat(str, enum.Enum):
    text = "text"
    json = "json"
    csv = "csv"
    parquet = "parquet"
    html = "html"


class SampleFormat(str, enum.Enum):
    focus = "focus"
    aws_cur2 = "aws-cur2"
    aws_cur_legacy = "aws-cur-legacy"
    azure_actual = "azure-actual"
    azure_amortized = "azure-amortized"
    gcp_standard = "gcp-standard"
    gcp_detailed = "gcp-detailed"


class Cloud(str, enum.Enum):
    aws = "aws"
    azure = "azure"
    gcp = "gcp"


SOURCES_HELP = (
    "Billing data: local files or directories (Parquet, CSV, CSV.gz, JSON lines), s3://, "
    "gs:// or azureml:// prefixes holding exports, or a cost API: aws-ce: (Cost Explorer), "
    "azure-cost:/subscriptions/ID (Cost Management), bq:PROJECT.DATASET.TABLE (the GCP "
    "billing export in BigQuery). Formats read: FOCUS 1.0-1.3, AWS CUR 2.0 and legacy CUR, "
    "Azure cost details (actual, amortized), GCP standard and detailed exports; detected "
    "from the columns."
)


@app.command("report")
@handle_errors
def report(
    sources: Annotated[list[str], typer.Argument(help=SOURCES_HELP, show_default=False)],
    start: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="First day, YYYY-MM-DD (or YYYY-MM: the month's first day). Default: the "
            "data's first day; for an API source, this month's first day.",
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="Last day, inclusive, YYYY-MM-DD (or YYYY-MM: the month's last day). "
            "Default: the data's last day; for an API source, today.",
        ),
    ] = None,
    by: Annotated[
        list[str] | None,
        typer.Option(
            "--by",
            help="Group by, comma-separated: tag keys (cost_center, project, run_id, recipe, "
            "owner, env, endpoint, any other) and dimensions (provider, service, region, "
            "account, charge, cost_kind, pricing, day, month).  [default: cost_center]",
            show_default=False,
        ),
    ] = None,
    output_format: Annotated[
        OutputFormat,
        typer.Option("--format", "-f", help="text (a table), json, csv, parquet or html."),
    ] = OutputFormat.text,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write here instead of the terminal (parquet needs it)."
        ),
    ] = None,
    currency: Annotated[
        str | None,
        typer.Option(help="The report's currency. Default: the data's (the most rows')."),
    ] = None,
    rate: Annotated[
        list[str] | None,
        typer.Option(
            "--rate",
            help="Convert another currency at a stated rate: EUR=1.08 means 1 EUR = 1.08 "
            "report currency. Without rates, mixed currencies are refused.",
        ),
    ] = None,
    focus_export: Annotated[
        Path | None,
        typer.Option(
            "--focus-export",
            help="Also write the rows the report used as FOCUS 1.0 (.parquet, .csv, .csv.gz).",
        ),
    ] = None,
    reconcile: Annotated[
        bool,
        typer.Option(
            help="Put each run's and endpoint's estimate (kept in the ledger at launch) "
            "beside its actual cost."
        ),
    ] = True,
    title: Annotated[str, typer.Option(help="The report's title.")] = "Cost report",
) -> None:
    """Report billed, effective (amortized) and list cost by tag and dimension, untagged
    spend, and each run's and endpoint's estimate beside its actual cost.

    Examples:

      recipe cost report exports/ --by cost_center,month

      recipe cost report s3://billing/focus/ --from 2026-10 --to 2026-10 --format html -o oct.html

      recipe cost report aws-ce: --by run_id --from 2026-11-01
    """
    from recipes.app import costs

    keys = _keys(by or ["cost_center"])
    if output_format == OutputFormat.parquet and output is None:
        raise RecipeInputError(
            Problem(
                "parquet needs a file", file="command line", field="--output", hint="-o r.parquet"
            )
        )
    options = costs.ReportOptions(
        sources=sources,
        by=keys,
        start=_day(start, "--from", first=True),
        end=_day(end, "--to", first=False),
        currency=_currency(currency) if currency else None,
        rates=_rates(rate or []),
        title=title,
        reconcile=reconcile,
        focus_export=focus_export,
    )
    if sys.stderr.isatty():
        err(f"reading {len(sources)} source{'s' if len(sources) > 1 else ''}...")
    result = costs.report(options)
    _write(result, output_format, output)


def _write(result: dict, output_format: OutputFormat, output: Path | None) -> None:
    from recipes.app import costs

    if output_format == OutputFormat.text:
        from recipes.cli import render_cost

        if output:
            _write_text(output, render_cost.as_text(result))
        else:
            render_cost.report(result)
    elif output_format == OutputFormat.json:
        if output:
            import json

            _write_text(output, json.dumps(result, indent=2, default=str) + "\n")
        else:
            emit_json(result)
    elif output_format == OutputFormat.html:
        from recipes.cost import html

        page = html.render(result)
        if output:
            _write_text(output, page)
        else:
            print(page)
    elif output is not None:
        costs.write_table(result, output, output_format.value)
    else:  # csv to the terminal
        import csv

        rows = costs.group_rows(result, csv=True)
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["billed_cost"])
        writer.writeheader()
        writer.writerows(rows)
    if output_format != OutputFormat.text or output:
        for note in result["notes"]:  # warnings (overlapping sources, tags) reach the user
            err(f"note: {note}")
    if output:
        err(f"wrote {output}")


def _write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise RecipeInputError(
            Problem(f"cannot write it: {exc.strerror}", file=str(path), field="--output")
        ) from None


def _keys(values: list[str]) -> list[str]:
    keys = [k.strip() for v in values for k in v.split(",")]
    if any(not k for k in keys):
        raise RecipeInputError(
            Problem(
                "an empty key",
                file="command line",
                field="--by",
                hint="comma-separated keys, e.g. --by cost_center,month",
            )
        )
    return keys


# Billing data lives in these years; the bounds also keep date arithmetic (the day after
# --to, a sample month's last hour) far from the calendar's end at 9999-12-31.
YEARS = (1970, 2199)


def _day(text: str | None, flag: str, first: bool) -> date | None:
    if text is None:
        return None
    day: date | None = None
    try:
        if re.fullmatch(r"\d{4}-\d{2}", text):
            year, month = (int(x) for x in text.split("-"))
            last = calendar.monthrange(year, month)[1] if 1 <= month <= 12 else 0
            day = date(year, month, 1 if first else last)
        elif re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = date.fromisoformat(text)
    except ValueError:
        day = None
    if day is None or not YEARS[0] <= day.year <= YEARS[1]:
        raise RecipeInputError(
            Problem(
                f"{text[:40]!r} is not a date from {YEARS[0]} to {YEARS[1]}",
                file="command line",
                field=flag,
                hint="YYYY-MM-DD, or YYYY-MM for a whole month",
            )
        )
    return day


def _currency(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{3}", text):
        raise RecipeInputError(
            Problem(
                f"{text[:20]!r} is not a currency code",
                file="command line",
                field="--currency",
                hint="an ISO 4217 code such as USD or EUR",
            )
        )
    return text.upper()


def _rates(values: list[str]) -> dict[str, float]:
    rates = {}
    for value in values:
        code, _, number = value.partition("=")
        ok = bool(re.fullmatch(r"[A-Za-z]{3}", code) and re.fullmatch(r"\d+(\.\d+)?", number))
        rate = float(number) if ok else 0.0
        ok = ok and 0 < rate < 1e9
        if not ok:
            raise RecipeInputError(
                Problem(
                    f"{value[:40]!r} is not a rate",
                    file="command line",
                    field="--rate",
                    hint="CODE=NUMBER, e.g. EUR=1.08 (1 EUR = 1.08 of the report's currency)",
                )
            )
        rates[code.upper()] = rate
    return rates


@app.command("sample")
@handle_errors
def sample(
    output: Annotated[
        Path,
        typer.Argument(
            help="File to write: .parquet, .csv, .csv.gz or .jsonl (the GCP formats: "
            ".parquet or .jsonl).",
            show_default=False,
        ),
    ],
    sample_format: Annotated[
        SampleFormat, typer.Option("--format", "-f", help="The billing format to write.")
    ] = SampleFormat.focus,
    provider: Annotated[
        Cloud,
        typer.Option("--provider", "-p", help="Whose spend (FOCUS only; others imply it)."),
    ] = Cloud.aws,
    month: Annotated[str, typer.Option(help="The month of spend, YYYY-MM.")] = "2026-10",
) -> None:
    """Write a month of SYNTHETIC billing data with the quickstart's tags (three quickstart
    runs, one of another team, the quickstart endpoint, storage, untagged spend, a credit,
    a refund and tax) in a provider's format, to try `recipe cost report` on."""
    from recipes.cost.billing import synthetic

    first = _day(month, "--month", first=True)
    assert first is not None
    cloud = provider.value
    if sample_format.value != "focus":
        cloud = sample_format.value.split("-")[0]
    days = calendar.monthrange(first.year, first.month)[1]
    charges = synthetic.charges(cloud, synthetic.quickstart_scenario(first, days))
    suffixes = (".parquet", ".csv", ".csv.gz", ".jsonl")
    if not output.name.lower().endswith(suffixes):
        raise RecipeInputError(
            Problem(
                "unknown file type",
                file=str(output),
                hint="end the name with " + ", ".join(suffixes),
            )
        )
    try:
        synthetic.write(sample_format.value, charges, output)
    except OSError as exc:
        raise RecipeInputError(
            Problem(f"cannot write it: {exc.strerror}", file=str(output))
        ) from None
    except ValueError as exc:  # a writer that cannot write that file type (e.g. GCP CSV)
        err(f"{output}: {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    err(f"wrote {len(charges)} {cloud} charges for {month} as {sample_format.value} to {output}")
