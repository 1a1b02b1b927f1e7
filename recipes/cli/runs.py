"""Commands about recipes and runs: validate, plan, run, status, logs, cancel, runs,
providers, schema, export. Each parses flags, calls one use case, renders the result."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from recipes.cli.common import (
    EXIT_RUN_FAILED,
    FileArg,
    Format,
    FormatOpt,
    OverridesArg,
    ProviderOpt,
    RunIdArg,
    emit_json,
    err,
    handle_errors,
)
from recipes.errors import RecipeInputError

AttemptOpt = Annotated[
    int,
    typer.Option(
        "--attempt",
        min=1,
        # A 48-character recipe name + '-' + 8 + '-' + 5 digits = 63, SageMaker's limit
        # for a training job name (and within Vertex's and Azure ML's).
        max=99999,
        help="Cloud job attempt to plan (job names are <recipe>-<hash8>-<attempt>).",
    ),
]


def register(app: typer.Typer) -> None:
    for command in (validate, plan, run, status, logs, cancel, runs, providers, schema, export):
        app.command()(command)


@handle_errors
def validate(
    files: Annotated[
        list[str],
        typer.Argument(help="Recipe files, optionally followed by key=value overrides."),
    ],
) -> None:
    """Check recipes against the schema and cross-field rules; exit 2 listing every problem.

    With RECIPE_TAG_POLICY=policy.yaml (`required: [keys]`, `allowed: {key: [values]}`)
    the recipe's tags are checked against it too."""
    from recipes.app import runs as use

    paths = [f for f in files if "=" not in f]
    overrides = [f for f in files if "=" in f]
    result = use.validate(paths, overrides)
    for valid in result.valid:
        print(f"ok: {valid.path} ({valid.name}, {valid.method})")
    if result.problems:
        raise RecipeInputError(result.problems)


@handle_errors
def plan(
    file: FileArg,
    overrides: OverridesArg = None,
    provider: ProviderOpt = "local",
    attempt: AttemptOpt = 1,
    output: FormatOpt = Format.text,
) -> None:
    """Show exactly what `run` would send: request bodies, compute, tags, estimate. No network."""
    from recipes.app import runs as use

    the_plan = use.prepare(file, overrides, provider, attempt=attempt).plan
    if output == Format.json:
        emit_json(the_plan.to_dict())
    else:
        from recipes.cli import render

        render.plan(the_plan)


@handle_errors
def run(
    file: FileArg,
    overrides: OverridesArg = None,
    provider: ProviderOpt = "local",
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Follow the run to its end.")] = False,
    override_budget: Annotated[
        bool,
        typer.Option(
            "--override-budget", help="Launch even if the estimate exceeds budget.max_usd."
        ),
    ] = False,
    new_attempt: Annotated[
        bool,
        typer.Option(
            "--new-attempt",
            help="Cloud: launch again although this recipe content already has a job.",
        ),
    ] = False,
    output: FormatOpt = Format.text,
) -> None:
    """Launch a fine-tune; prints the run id (with --wait, follows it and prints results).

    On a cloud the job name is derived from the recipe's content: running the same
    recipe again reports the existing job instead of launching a second one."""
    from recipes.app import runs as use

    launched = use.run(
        file, overrides, provider, override_budget=override_budget, new_attempt=new_attempt
    )
    for warning in launched.warnings:
        err(f"warning: {warning}")
    run_id = launched.ref.run_id
    if launched.existing:
        if output == Format.json:
            emit_json(
                {
                    "run_id": run_id,
                    "provider": launched.ref.provider,
                    "status": launched.state.value,
                    "existing": True,
                }
            )
        else:
            print(run_id)
            err(
                f"{run_id} already exists for this recipe content ({launched.state.value}); "
                "nothing launched. Use --new-attempt to launch again."
            )
        return
    if not wait:
        if output == Format.json:
            emit_json({"run_id": run_id, "provider": launched.ref.provider, "status": "queued"})
        else:
            print(run_id)
            err(f"follow it: recipe logs {run_id} --follow   ·   recipe status {run_id}")
        return
    if output == Format.text:
        err(f"run {run_id} started on {launched.ref.provider} (Ctrl-C cancels it)")
    _finish(_follow(run_id, show_progress=output == Format.text), output)


@handle_errors
def status(run_id: RunIdArg, output: FormatOpt = Format.text) -> None:
    """State, progress, metrics and artifacts of a run; the log tail when it failed."""
    from recipes.app import runs as use

    current = use.status(run_id)
    if output == Format.json:
        emit_json(current.to_dict())
    else:
        from recipes.cli import render

        render.status(current)
    if current.state.value == "failed":
        raise typer.Exit(EXIT_RUN_FAILED)


@handle_errors
def logs(
    run_id: RunIdArg,
    follow: Annotated[
        bool, typer.Option("--follow", "-F", help="Keep printing until the run ends.")
    ] = False,
    output: FormatOpt = Format.text,
) -> None:
    """Print a run's training log (JSON: one {"run_id", "line"} object per line)."""
    from recipes.app import runs as use

    try:
        for line in use.logs(run_id, follow=follow):
            if output == Format.json:
                line = json.dumps({"run_id": run_id, "line": line.rstrip("\n")}) + "\n"
            sys.stdout.write(line)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass  # stops following; the run goes on


@handle_errors
def cancel(run_id: RunIdArg, output: FormatOpt = Format.text) -> None:
    """Stop a run (its whole process tree or cloud job) and mark it cancelled."""
    from recipes.app import runs as use

    final = use.cancel(run_id)
    if output == Format.json:
        emit_json(final.to_dict())
    else:
        print(f"{run_id}: {final.state.value}" + (f" ({final.message})" if final.message else ""))


@handle_errors
def runs(
    output: FormatOpt = Format.text,
    limit: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="How many of the newest runs.")
    ] = 20,
) -> None:
    """List runs launched from here (newest first), refreshing the unfinished ones."""
    from recipes.app import runs as use

    listing = use.list_runs(limit)
    for warning in listing.warnings:
        err(f"warning: {warning}")
    if output == Format.json:
        emit_json([row.to_dict() for row in listing.rows])
    else:
        from recipes.cli import render

        render.runs([row.to_dict() for row in listing.rows])


@handle_errors
def providers(output: FormatOpt = Format.text) -> None:
    """Each backend: its extra installed?, credentials found here?, and what it can do."""
    from providers.inventory import inventory

    entries = inventory()
    if output == Format.json:
        emit_json([asdict(e) for e in entries])
        return
    for e in entries:
        installed = "installed" if e.installed else f"missing: pip install '.[{e.extra}]'"
        print(f"{e.name:<6} extra {e.extra}: {installed}; credentials: {e.credentials}")
        caps = e.capabilities
        can = [k for k in ("spot", "multi_node", "clusters", "idempotent") if caps.get(k)]
        print(
            f"       targets {', '.join(caps['targets'])}; "
            f"methods {', '.join(caps['methods'])}; "
            f"accelerators {', '.join(caps['accelerators']) or 'this machine'}; "
            f"data {', '.join(caps['remote_data']) or 'local files'}; "
            f"{', '.join(can) or 'single node'}"
        )


def schema() -> None:
    """Print the recipe JSON Schema (point your editor's YAML plugin at it)."""
    from recipes.schema import Recipe

    emit_json(Recipe.model_json_schema())


@handle_errors
def export(
    run_id: RunIdArg,
    merge: Annotated[bool, typer.Option(help="Merge the adapter into the base weights.")] = False,
    out: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to write (default: in the run directory)."),
    ] = None,
    output: FormatOpt = Format.text,
) -> None:
    """Write a finished run's adapter, or a merged model, and report validation loss
    with the adapter and after the merge."""
    from recipes.app.exports import export as run_export

    result = run_export(run_id, merge, out)
    if output == Format.json:
        emit_json(result)
        return
    print(f"wrote {result['output']}")
    print(f"valid_loss with adapter: {result['valid_loss_with_adapter']:.5f}")
    if merge:
        print(
            f"valid_loss merged:       {result['valid_loss_merged']:.5f} "
            f"(difference {result['difference']:+.2e})"
        )


def _follow(run_id: str, show_progress: bool) -> Any:
    from recipes.app import runs as use
    from recipes.cli import render

    try:
        return render.follow(lambda on_update: use.wait(run_id, on_update), show_progress)
    except KeyboardInterrupt:
        err(f"\ncancelling {run_id} ...")
        return use.cancel(run_id)


def _finish(final: Any, output: Format) -> None:
    if output == Format.json:
        emit_json(
            {
                "run_id": final.run_id,
                "provider": final.provider,
                "status": final.state.value,
                "metrics": final.metrics,
                "artifacts": final.artifacts,
            }
        )
    else:
        from recipes.cli import render

        render.result(final)
    if final.state.value != "succeeded":
        raise typer.Exit(EXIT_RUN_FAILED)
