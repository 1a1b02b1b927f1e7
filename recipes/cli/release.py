"""`recipe release`: promote a run's endpoint with a canary, from a terminal or CI/CD.

Exit codes (stable, for pipelines): 0 promoted (or a dry run) · 1 rolled back, or held
because the evidence was too thin (inconclusive: the JSON says "held"; run the same
command again to go on baking) · 2 bad input · 3 a provider error (the release is saved:
run the same command again to resume).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from recipes.cli.common import Format, FormatOpt, OverridesArg, emit_json, err, handle_errors


@handle_errors
def release(
    run_id: Annotated[
        str, typer.Argument(help="Run id of the candidate, as `recipe run` printed.")
    ],
    overrides: OverridesArg = None,
    endpoint: Annotated[
        str | None,
        typer.Option(
            "--endpoint",
            help="Endpoint to release to (must match deploy.endpoint; default: deploy.endpoint).",
            show_default=False,
        ),
    ] = None,
    provider: Annotated[
        str | None,
        typer.Option("--provider", "-p", help="Backend (default: where the run was trained)."),
    ] = None,
    recipe: Annotated[
        Path | None,
        typer.Option("--recipe", help="Recipe whose deploy: block to use.", show_default=False),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report the steps and gates; change nothing.")
    ] = False,
    abort: Annotated[
        bool,
        typer.Option("--abort", help="Roll back the release of this run that is in progress."),
    ] = False,
    output: FormatOpt = Format.text,
) -> None:
    """Release a run's endpoint: the candidate beside the stable version at 0 %, the golden
    set sent to the candidate alone, deploy.canary.percent (or steps) of live traffic, the
    gates on the candidate's own traffic, then promote or roll back automatically.

    Resumable: the state is saved at every step; the same command resumes a release that
    was interrupted or held. One release at a time per endpoint. Every decision is
    recorded in the ledger with its evidence (gate values and sample counts)."""
    from recipes.app import releases

    if endpoint is not None:
        overrides = [*(overrides or []), f"deploy.endpoint={endpoint}"]

    def progress(event: releases.Event) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
        err(f"{stamp} {event.state:<11} {event.text}")
        for verdict in event.verdicts:
            err(
                f"{'':9}{verdict.outcome:<12} {verdict.text} (n={verdict.samples}/{verdict.needed})"
            )

    result = releases.release(
        run_id, provider, recipe, overrides, dry_run=dry_run, abort=abort, on_event=progress
    )
    if output == Format.json:
        emit_json(result.to_dict())
    else:
        r = result.release
        print(f"{r.release_id}: {result.outcome}")
        if dry_run:
            steps = " -> ".join(f"{s}%" for s in r.shares) or "none (first version)"
            print(f"  candidate {r.candidate}, stable {r.stable or '-'}, steps {steps} -> 100%")
    raise typer.Exit(result.exit_code)
