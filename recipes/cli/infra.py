"""`recipe infra`: set up a cloud account the way recipes and cost reports need it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from recipes.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_PROVIDER,
    EXIT_RUN_FAILED,
    Format,
    FormatOpt,
    emit_json,
    err,
    handle_errors,
)

app = typer.Typer(
    help=(
        "Set up a cloud account for recipes and cost reports: a bucket (encrypted, private), "
        "an identity for jobs and endpoints, a key, a budget on the cost center, and the "
        "billing export. Templates under infra/<cloud>/ (CloudFormation, ARM, Terraform).\n\n"
        "Start with:  recipe infra plan --provider aws --recipe "
        "recipes/catalog/support-triage-a100.yaml"
    ),
    no_args_is_help=True,
)

CloudOpt = Annotated[
    str,
    typer.Option(
        "--provider",
        "-p",
        help="aws (CloudFormation), azure (ARM template), gcp (Terraform).",
        show_default=False,
    ),
]
RecipeOpt = Annotated[
    Path | None,
    typer.Option(
        "--recipe",
        "-r",
        help="Fill tags, cost center, budget and the cloud's settings from this recipe.",
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="KEY=VALUE: prefix, region, cost_center, monthly_budget, currency, "
        "alert_email (comma-separated); aws: account_id; azure: subscription, "
        "resource_group, workspace; gcp: project, billing_account.",
    ),
]


@app.command("plan")
@handle_errors
def plan(
    provider: CloudOpt,
    recipe: RecipeOpt = None,
    sets: SetOpt = None,
    output: FormatOpt = Format.text,
) -> None:
    """Show the template with its parameters filled and every step `apply` takes. No network."""
    from recipes.app import infra as use

    the_plan = use.plan(provider, recipe, sets or [])
    if output == Format.json:
        emit_json(the_plan.to_dict())
        return
    _print_plan(the_plan)


def _print_plan(the_plan, template: bool = True) -> None:  # noqa: ANN001 - InfraPlan
    """The plan: parameters and steps; with `template`, its notes and the template too
    (stdout); without, the summary apply shows on stderr before it asks."""
    from recipes.cli import render

    console = render.out if template else render.err
    console.print(
        f"[bold]infra plan[/bold] {the_plan.provider} ({the_plan.engine}): {the_plan.template_path}"
    )
    console.print("parameters:")
    for key, value in the_plan.parameters.items():
        console.print(Text(f"  {key} = {value}"))
    console.print("steps apply takes (bodies: recipe infra plan -f json):")
    for i, step in enumerate(the_plan.steps, 1):
        console.print(Text(f"  {i}. {step.api}"))
    if template:
        for note in the_plan.notes:
            console.print(Text(f"note: {note}"))
        console.print("template:")
        console.print(Text(the_plan.template))


@app.command("apply")
@handle_errors
def apply(
    provider: CloudOpt,
    recipe: RecipeOpt = None,
    sets: SetOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking (CI/CD).")] = False,
) -> None:
    """Apply exactly what `plan` shows, through the cloud's engine (a CloudFormation change
    set, an ARM deployment; for Terraform, the commands), then activate the tags for cost
    allocation (AWS)."""
    from recipes.app import infra as use

    the_plan = use.plan(provider, recipe, sets or [])
    _print_plan(the_plan, template=False)
    if not yes:
        if not sys.stdin.isatty():
            err("not a terminal: pass --yes to apply without asking")
            raise typer.Exit(EXIT_BAD_INPUT)
        typer.confirm("apply these steps to the account?", abort=True)
    done = use.apply(the_plan)
    for line in done:
        print(line)
    if done and done[0].startswith("NOT APPLIED"):
        # Terraform is not installed here: the commands were printed, nothing was created.
        raise typer.Exit(EXIT_PROVIDER)


@app.command("check")
@handle_errors
def check(
    provider: CloudOpt,
    recipe: RecipeOpt = None,
    sets: SetOpt = None,
    output: FormatOpt = Format.text,
) -> None:
    """Read the account and report each item: ok, missing or weak, with the fix. Exit 1 when
    something is missing or weak."""
    from dataclasses import asdict

    from recipes.app import infra as use

    checked = use.check(provider, recipe, sets or [])
    if output == Format.json:
        emit_json([asdict(f) for f in checked.findings])
    else:
        from recipes.cli.render import out

        for f in checked.findings:
            mark = {
                "ok": "[green]ok[/green]     ",
                "missing": "[red]missing[/red]",
                "weak": "[yellow]weak[/yellow]   ",
            }.get(f.status, f.status)
            out.print(f"{mark} ", end="")
            out.print(
                Text(
                    f"{f.item}: {f.detail}" + (f" -> {f.fix}" if f.fix and f.status != "ok" else "")
                )
            )
        bad = len(checked.missing)
        out.print(f"{len(checked.findings) - bad} ok, {bad} missing or weak")
    if checked.missing:
        raise typer.Exit(EXIT_RUN_FAILED)
