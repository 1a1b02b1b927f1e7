"""`recipe --help` and `recipe validate` stay instant: no torch, transformers or cloud SDK."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import CATALOG, REPO

HEAVY = (
    "torch",
    "transformers",
    "peft",
    "wandb",
    "boto3",
    "botocore",
    "azure",
    "google",
    "kubernetes",
)

PROBE = """
import json, sys
from recipes.cli import app
try:
    app(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
roots = sorted({m.split('.')[0] for m in sys.modules})
print(json.dumps({"code": code, "modules": roots}), file=sys.stderr)
"""


def imported_by(*args: str) -> tuple[int, set[str]]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=REPO
    )
    report = json.loads(result.stderr.strip().splitlines()[-1])
    return report["code"], set(report["modules"])


def test_help_imports_nothing_heavy() -> None:
    code, modules = imported_by("--help")
    assert code == 0
    assert not modules & set(HEAVY), modules & set(HEAVY)


def test_validate_imports_nothing_heavy() -> None:
    code, modules = imported_by("validate", str(CATALOG / "quickstart.yaml"))
    assert code == 0
    assert not modules & set(HEAVY), modules & set(HEAVY)


def test_local_plan_imports_nothing_heavy() -> None:
    code, modules = imported_by("plan", str(CATALOG / "quickstart.yaml"), "--format", "json")
    assert code == 0
    assert not modules & set(HEAVY), modules & set(HEAVY)
