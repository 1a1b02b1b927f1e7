"""The CLI contract scripts and CI rely on: arguments, output shapes, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import CATALOG, CLI

QUICKSTART = CATALOG / "quickstart.yaml"


def test_help_lists_every_command(cli: CLI) -> None:
    result = cli("--help")
    assert result.returncode == 0
    for command in ("validate", "plan", "run", "status", "logs", "cancel", "runs", "schema"):
        assert command in result.stdout


def test_validate_ok(cli: CLI) -> None:
    result = cli("validate", QUICKSTART)
    assert result.returncode == 0, result.stderr
    assert "ok:" in result.stdout


def test_validate_misspelled_key_exit_2_with_location_and_hint(cli: CLI, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(QUICKSTART.read_text().replace("  learning_rate:", "  learnig_rate:"))
    result = cli("validate", bad)
    assert result.returncode == 2
    line = next(i for i, t in enumerate(bad.read_text().splitlines(), 1) if "learnig_rate" in t)
    assert f"{bad}:{line}:3: training.learnig_rate: unknown field" in result.stderr
    assert "did you mean 'learning_rate'?" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_validate_reports_every_file(cli: CLI, tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("name: a\n")
    b.write_text("name: B\n")
    result = cli("validate", a, b, QUICKSTART)
    assert result.returncode == 2
    assert f"{a}:" in result.stderr and f"{b}:" in result.stderr
    assert "ok: " in result.stdout  # the good one is still confirmed


def test_validate_with_override(cli: CLI) -> None:
    assert cli("validate", QUICKSTART, "training.epochs=1").returncode == 0
    result = cli("validate", QUICKSTART, "training.epochs=-1")
    assert result.returncode == 2
    assert "command line" in result.stderr and "training.epochs=-1" in result.stderr


def test_plan_json_has_the_contract_keys(cli: CLI) -> None:
    result = cli("plan", QUICKSTART, "--provider", "local", "--format", "json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert {"provider", "requests", "compute", "tags", "estimate"} <= set(plan)
    assert plan["provider"] == "local"
    (request,) = plan["requests"]
    assert request["api"] == "local:spawn"
    assert request["body"]["files"]["recipe.json"]["recipe"]["name"] == "quickstart"
    assert plan["tags"]["cost_center"] == "demo"
    assert plan["estimate"]["on_demand_usd"] == 0.0


def test_plan_text(cli: CLI) -> None:
    result = cli("plan", QUICKSTART)
    assert result.returncode == 0, result.stderr
    assert "local:spawn" in result.stdout and "estimate" in result.stdout


def test_plan_applies_overrides(cli: CLI) -> None:
    plan = cli.json("plan", QUICKSTART, "training.epochs=1")
    assert plan["requests"][0]["body"]["files"]["recipe.json"]["recipe"]["training"]["epochs"] == 1


def test_unknown_provider_is_bad_input(cli: CLI) -> None:
    result = cli("plan", QUICKSTART, "--provider", "locl")
    assert result.returncode == 2
    assert "unknown provider 'locl'" in result.stderr and "did you mean 'local'?" in result.stderr


def test_bad_flag_value_is_usage_error(cli: CLI) -> None:
    result = cli("plan", QUICKSTART, "--format", "yaml")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_missing_recipe_file(cli: CLI, tmp_path: Path) -> None:
    result = cli("plan", tmp_path / "missing.yaml")
    assert result.returncode == 2 and "file not found" in result.stderr


def test_status_of_unknown_run(cli: CLI) -> None:
    for command in ("status", "logs", "cancel"):
        result = cli(command, "no-such-run")
        assert result.returncode == 2, command
        assert "no run 'no-such-run'" in result.stderr


def test_runs_empty(cli: CLI) -> None:
    assert cli.json("runs") == []
    assert "no runs yet" in cli("runs").stdout


def test_schema_is_json_schema(cli: CLI) -> None:
    result = cli("schema")
    schema = json.loads(result.stdout)
    assert schema["title"] == "Recipe"
    assert "training" in schema["properties"]


def test_runs_table_never_cuts_a_run_id(cli: CLI, home: Path) -> None:
    """Run ids are copied from `recipe runs` into `recipe status`: a narrow terminal folds
    the other columns, never the id."""
    from providers.base import RunRef, State
    from recipes.app.ledger import Ledger

    run_id = "support-triage-with-a-long-name-20261123-134501-ab12"
    home.mkdir(parents=True, exist_ok=True)
    ref = RunRef("local", run_id, {"run_dir": str(home / run_id)})
    Ledger(home / "ledger.sqlite").record(ref, "support-triage", "r.yaml", State.SUCCEEDED)
    for columns in ("40", "80"):
        cli.env["COLUMNS"] = columns
        result = cli("runs")
        assert result.returncode == 0, result.stderr
        assert run_id in result.stdout, result.stdout


def test_progress_lines_without_a_terminal_say_only_what_changed() -> None:
    """CI logs: a line when the phase or state changes or another tenth of the steps is
    done, otherwise a heartbeat at most every 30 s; never the same line every poll."""
    from providers.base import RunStatus, State
    from recipes.cli import render

    now = [0.0]
    printed: list[str] = []
    original = render.err.print
    render.err.print = lambda text, **_: printed.append(text)  # type: ignore[method-assign]
    try:
        update = render.line_printer(clock=lambda: now[0])

        def poll(state: State, step: int | None, seconds: float) -> None:
            status = RunStatus("r", "local", state, step=step, total_steps=100)
            update(status)
            now[0] += seconds

        for _ in range(25):  # 25 s queued, polled every second
            poll(State.QUEUED, None, 1.0)
        assert printed == ["queued"]
        for step in range(0, 10):  # within the first tenth of the steps
            poll(State.RUNNING, step, 1.0)
        assert printed == ["queued", "training step 0/100"]
        poll(State.RUNNING, 10, 1.0)  # a new tenth
        assert printed[-1] == "training step 10/100"
        for _ in range(31):  # stuck at one step: a heartbeat after 30 s, not before
            poll(State.RUNNING, 11, 1.0)
        assert printed[-1] == "training step 11/100 (still training, 30 s since the last change)"
        assert len(printed) == 4
    finally:
        render.err.print = original  # type: ignore[method-assign]
