"""Human-readable output for the CLI (rich); JSON output is produced by the commands."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from providers.base import EndpointPlan, Plan, RunStatus, State

out = Console(highlight=False, soft_wrap=True)  # long paths must stay on one line
err = Console(stderr=True, highlight=False, soft_wrap=True)

HEARTBEAT_SECONDS = 30.0  # without a terminal: at most this long without a line


def plan(the_plan: Plan) -> None:
    data = the_plan.to_dict()
    out.print(f"[bold]plan[/bold] {data['recipe']['name']} on [bold]{the_plan.provider}[/bold]")
    out.print(f"  run id    {data['run_id']}")
    out.print(f"  recipe    sha256:{data['recipe']['hash'][:16]}")
    out.print("  compute   " + ", ".join(f"{k}={v}" for k, v in the_plan.compute.items()))
    est = the_plan.estimate
    cost = f"{est.currency} {est.on_demand_usd:,.2f} on demand"
    if est.spot_usd is not None:
        cost += f", {est.currency} {est.spot_usd:,.2f} spot"
    if est.hours is not None:
        cost += f" ({est.hours:.2f} h)"
    if est.worst_case_usd is not None:
        cost += f"; at most {est.currency} {est.worst_case_usd:,.2f} (max_runtime)"
    out.print(f"  estimate  {cost}" + (f" ({est.basis})" if est.basis else ""), markup=False)
    out.print(
        "  tags      " + ", ".join(f"{k}={v}" for k, v in the_plan.tags.items()), markup=False
    )
    _notes_and_requests(the_plan.notes, data["requests"], width=10)


def _notes_and_requests(notes: tuple[str, ...], requests: list[dict], width: int) -> None:
    for note in notes:
        out.print("  [yellow]note[/yellow]" + " " * (width - 4), end="")
        out.print(note, markup=False)
    for request in requests:
        out.print(f"\n[bold]{request['api']}[/bold]")
        out.print(json.dumps(request["body"], indent=2), markup=False)


def status(current: RunStatus) -> None:
    out.print(f"[bold]{current.run_id}[/bold]  {current.provider}  {_state(current.state)}")
    if current.message:
        out.print(f"  {current.message}")
    if current.step is not None and not current.state.terminal:
        out.print(f"  step {current.step}/{current.total_steps}")
    if current.state.terminal and current.metrics.get("after"):
        _results_table(current.metrics)
    for name, path in current.artifacts.items():
        out.print(f"  {name:<12} {path}")
    if current.log_tail:
        out.print("\n[bold]last log lines[/bold]")
        for line in current.log_tail:
            out.print(f"  {line}", markup=False)


def runs(rows: list[dict[str, Any]]) -> None:
    if not rows:
        out.print("no runs yet: recipe run RECIPE.yaml --provider local")
        return
    table = Table(box=None)
    # Run ids are copied into `recipe status`: never cut or wrapped; the rest may fold.
    longest = max(len(row["run_id"]) for row in rows)
    table.add_column("run id", no_wrap=True, min_width=longest)
    for column in ("provider", "recipe", "state", "created"):
        table.add_column(column, overflow="fold")
    for row in rows:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["created_at"]))
        table.add_row(row["run_id"], row["provider"], row["recipe"], row["state"], created)
    out.print(table)


def follow(
    wait: Callable[[Callable[[RunStatus], None]], RunStatus], show_progress: bool
) -> RunStatus:
    """Run `wait` (which polls until the run ends), showing progress on stderr."""
    if not show_progress:
        return wait(lambda s: None)
    if not err.is_terminal:
        return wait(line_printer())
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task("starting", total=None, detail="")

        def update(s: RunStatus) -> None:
            progress.update(
                task,
                description=_phase(s),
                completed=s.step or 0,
                total=s.total_steps,
                detail=_detail(s),
            )

        return wait(update)


def line_printer(clock: Callable[[], float] = time.monotonic) -> Callable[[RunStatus], None]:
    """Progress for logs and CI: a line when the phase or state changes or progress passes
    another tenth of the steps, and otherwise a heartbeat at most every 30 seconds."""
    last: dict[str, Any] = {"key": None, "at": 0.0, "changed_at": 0.0}

    def update(s: RunStatus) -> None:
        tenth = (10 * s.step // s.total_steps) if s.step is not None and s.total_steps else None
        key = (_phase(s), s.state, tenth)
        now = clock()
        changed = key != last["key"]
        if changed or now - last["at"] >= HEARTBEAT_SECONDS:
            steps = f" step {s.step}/{s.total_steps}" if s.step is not None else ""
            line = f"{_phase(s)}{steps} {_detail(s)}".rstrip()
            if not changed:  # a heartbeat: say so, rather than repeat the last line
                since = now - last["changed_at"]
                line += f" (still {_phase(s)}, {since:.0f} s since the last change)"
            err.print(line)
            last.update(key=key, at=now)
            if changed:
                last["changed_at"] = now

    return update


def _phase(s: RunStatus) -> str:
    if s.state != State.RUNNING:
        return s.state.value
    return {
        "eval_before": "evaluating base model",
        "eval_after": "evaluating fine-tuned model",
    }.get(s.metrics.get("phase", ""), "training")


def _detail(s: RunStatus) -> str:
    parts = []
    if "loss" in s.metrics:
        parts.append(f"loss {s.metrics['loss']:.4f}")
    if "tokens_per_s" in s.metrics:
        parts.append(f"{s.metrics['tokens_per_s']:,.0f} tok/s")
    return "  ".join(parts)


def result(final: RunStatus) -> None:
    out.print(
        f"\n[bold]{final.run_id}[/bold]: {_state(final.state)}"
        + (f" — {final.message}" if final.message and final.state != State.SUCCEEDED else "")
    )
    if final.metrics.get("after"):
        _results_table(final.metrics)
    if "run_dir" in final.artifacts:
        out.print(f"run directory: {final.artifacts['run_dir']}")
    if final.log_tail:
        out.print("\n[bold]last log lines[/bold]")
        for line in final.log_tail:
            out.print(f"  {line}", markup=False)


def _results_table(report: dict[str, Any]) -> None:
    before, after = report.get("before", {}), report.get("after", {})
    table = Table(box=None, title=None)
    table.add_column("metric")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    golden_before, golden_after = before.get("golden", {}), after.get("golden", {})
    for key, label in (("macro_f1", "golden macro-F1"), ("exact_match", "golden exact match")):
        if key in golden_after:
            table.add_row(label, _num(golden_before.get(key)), _num(golden_after.get(key)))
    table.add_row("valid_loss", _num(before.get("valid_loss")), _num(after.get("valid_loss")))
    train = report.get("train", {})
    if train:
        table.add_row("tokens/s (train)", "", f"{train.get('tokens_per_s', 0):,.0f}")
        table.add_row("train time", "", f"{train.get('train_seconds', 0):.0f} s")
    for gate in report.get("gates", []):
        mark = "pass" if gate["passed"] else "FAIL"
        table.add_row(f"gate {gate['gate']}", "", f"{mark}: {gate['text']}")
    slices_before = golden_before.get("slices", {})
    for name, after_slice in golden_after.get("slices", {}).items():
        before_value = slices_before.get(name, {}).get("exact_match")
        label = f"  {name} (n={after_slice['examples']})"
        table.add_row(label, _num(before_value), _num(after_slice["exact_match"]))
    out.print(table)


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _state(state: State) -> str:
    colour = {
        State.SUCCEEDED: "green",
        State.FAILED: "red",
        State.CANCELLED: "yellow",
    }.get(state, "cyan")
    return f"[{colour}]{state.value}[/{colour}]"


def data_reports(reports: list[Any], with_tokens: bool) -> None:
    for report in reports:
        for finding in report.findings:
            colour = "red" if finding.severity == "error" else "yellow"
            where = f"{report.file}:{finding.line}" if finding.line else report.file
            out.print(f"{where}: [{colour}]{finding.severity}[/{colour}] ", end="")
            out.print(finding.message, markup=False)
        summary = (
            f"[bold]{report.file}[/bold]: {report.examples} examples ({report.format}), "
            f"{len(report.errors)} errors, {len(report.warnings)} warnings"
        )
        out.print(summary)
        stats = report.stats
        if stats.get("tokens_per_example"):
            table = Table(box=None)
            for column in (
                "tokens (" + stats["tokenizer"] + ")",
                "min",
                "p10",
                "median",
                "p90",
                "max",
            ):
                table.add_column(column, justify="right")
            for name, key in (
                ("per example", "tokens_per_example"),
                ("trained per example", "assistant_tokens_per_example"),
            ):
                spread = stats[key]
                table.add_row(
                    name, *(f"{spread[k]:.0f}" for k in ("min", "p10", "median", "p90", "max"))
                )
            out.print(table)
            out.print(
                f"  training tokens: {stats['tokens']:,} x {stats['epochs']:g} epochs = "
                f"{stats['training_tokens']:,}"
            )
        elif not with_tokens:
            out.print("  (token statistics need the train extra: pip install '.[train]')")


def preview(line: int, segments: list[tuple[str, bool]]) -> None:
    out.print(f"[bold]--- line {line}[/bold]  (trained tokens are marked ⟦like this⟧)")
    text = Text()
    for chunk, trained in segments:
        if trained:
            text.append("⟦" + chunk + "⟧", style="bold green")
        else:
            text.append(chunk, style="dim")
    out.print(text)


def endpoint_plan(the_plan: EndpointPlan) -> None:
    data = the_plan.to_dict()
    out.print(
        f"[bold]endpoint plan[/bold] {the_plan.endpoint} on [bold]{the_plan.provider}[/bold]"
        f" ({the_plan.region})"
    )
    out.print(f"  deployment {the_plan.deployment}", markup=False)
    art = the_plan.artifact
    out.print(f"  artifact   {art.kind} of run {art.run_id}: {art.uri}", markup=False)
    spec = the_plan.serving
    adapters = ", ".join(f"{k}={v}" for k, v in spec.adapters.items()) or "none"
    out.print(
        f"  serving    {spec.engine} {spec.image or ''} base={spec.base_model} "
        f"adapters={adapters} max_model_len={spec.max_model_len}",
        markup=False,
    )
    out.print("  compute    " + ", ".join(f"{k}={v}" for k, v in the_plan.compute.items()))
    est = the_plan.estimate
    out.print(
        f"  estimate   {est.currency} {est.hourly_usd:,.2f}/h, {est.monthly_usd:,.2f}/month at "
        f"min_replicas; at most {est.max_monthly_usd:,.2f}/month ({est.basis})",
        markup=False,
    )
    out.print(
        "  tags       " + ", ".join(f"{k}={v}" for k, v in the_plan.tags.items()), markup=False
    )
    _notes_and_requests(the_plan.notes, data["requests"], width=11)
