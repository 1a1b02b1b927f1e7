"""The architecture as checked contracts (import-linter, configured in pyproject.toml):
layers CLI > application > providers > cost > recipe core, backends reached only through
the registry, one SDK-importing module per cloud, training_scripts self-contained, no
import cycles. Each contract is shown to fail on a copy of the code that breaks it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("recipes", "providers", "training_scripts")
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [LINT_IMPORTS, "--no-logo", "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The project's Python sources and pyproject.toml, to break on purpose."""
    for package in PACKAGES:
        shutil.copytree(
            REPO / package,
            tmp_path / package,
            ignore=lambda _dir, names: [
                n for n in names if not n.endswith(".py") and "." in n or n == "__pycache__"
            ],
        )
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_code_keeps_every_contract() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}\n")


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("recipes/cost/budget.py", "import providers.base", "Layers"),
        ("recipes/cli/runs.py", "import providers.aws.training_job", "only through"),
        ("providers/aws/settings.py", "import providers.aws.training_job", "No import cycles"),
        ("providers/gcp/custom_job.py", "import google.cloud.aiplatform_v1", "Google Cloud"),
        ("training_scripts/rows.py", "import recipes.errors", "training_scripts"),
    ],
    ids=["cost-imports-providers", "cli-imports-a-backend", "cycle", "sdk-outside", "scripts"],
)
def test_a_broken_rule_fails(copy: Path, module: str, line: str, broken: str) -> None:
    _append(copy / module, line)
    result = lint_imports(copy)
    assert result.returncode == 1, result.stdout[-3000:]
    broken_section = result.stdout.split("Broken contracts", 1)[-1]
    assert broken in broken_section, result.stdout[-3000:]
