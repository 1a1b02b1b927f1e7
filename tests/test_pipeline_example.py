"""The example CI pipeline's `recipe` commands are commands the CLI accepts, with the
options the tests exercise (tests/test_release_local.py, test_endpoints.py, test_cli.py)."""

from __future__ import annotations

import shlex

import pytest
import typer
import yaml

from recipes.cli import app
from tests.conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "release.yml"


def recipe_commands() -> list[list[str]]:
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["train-and-release"]["steps"]
    commands = []
    for step in steps:
        for line in str(step.get("run", "")).splitlines():
            line = line.split(">")[0].strip()  # drop the redirection
            if line.startswith("recipe "):
                commands.append(shlex.split(line)[1:])
    return commands


def test_the_pipeline_runs_train_plan_and_release() -> None:
    names = [c[0] if c[0] != "endpoint" else f"endpoint {c[1]}" for c in recipe_commands()]
    assert names == ["validate", "plan", "run", "endpoint plan", "release"]


@pytest.mark.parametrize("args", recipe_commands(), ids=lambda a: " ".join(a[:2]))
def test_each_command_parses(args: list[str]) -> None:
    # typer vendors its own click: walk groups by what they do, not by click's classes.
    command = typer.main.get_command(app)
    words = list(args)
    while hasattr(command, "list_commands"):  # a group: recipe, recipe endpoint
        found = command.get_command(
            command.make_context("recipe", ["--help"], resilient_parsing=True), words.pop(0)
        )
        assert found is not None, args
        command = found
    command.make_context(command.name, words)  # raises on an unknown option or argument
