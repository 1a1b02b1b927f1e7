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
    "azure.ai.ml",  # not the bare "azure" namespace, which find_spec creates empty
    "azure.core",
    "azure.identity",
    # Not bare "google" or "google.cloud": google-cloud's nspkg .pth file creates
    # those empty namespaces at interpreter start-up; an SDK import shows up as these.
    "google.cloud.aiplatform",
    "google.cloud.storage",
    "google.auth",
    "google.api_core",
    "kubernetes",
    "fastapi",  # `recipe serve` only
    "uvicorn",
    "openai",
    "duckdb",  # `recipe cost report` only
    "pandas",
    "pyarrow",
    "google.cloud.bigquery",
    "azure.mgmt.costmanagement",
)

PROBE = """
import json, sys
from recipes.cli import app
try:
    app(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def imported_by(*args: str) -> tuple[int, set[str]]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=REPO
    )
    report = json.loads(result.stderr.strip().splitlines()[-1])
    heavy = {h for h in HEAVY for m in report["modules"] if m == h or m.startswith(h + ".")}
    return report["code"], heavy


def test_help_imports_nothing_heavy() -> None:
    code, modules = imported_by("--help")
    assert code == 0
    assert not modules, modules


def test_validate_imports_nothing_heavy() -> None:
    code, modules = imported_by("validate", str(CATALOG / "quickstart.yaml"))
    assert code == 0
    assert not modules, modules


def test_local_plan_imports_nothing_heavy() -> None:
    code, modules = imported_by("plan", str(CATALOG / "quickstart.yaml"), "--format", "json")
    assert code == 0
    assert not modules, modules


def test_providers_listing_imports_no_cloud_sdk() -> None:
    code, modules = imported_by("providers", "--format", "json")
    assert code == 0
    assert not modules - {"torch", "transformers", "peft", "wandb"}, modules


def test_endpoint_help_imports_nothing_heavy() -> None:
    for args in (("endpoint", "--help"), ("serve", "--help"), ("endpoint", "plan", "--help")):
        code, modules = imported_by(*args)
        assert code == 0
        assert not modules, (args, modules)


def test_cost_help_imports_nothing_heavy() -> None:
    for args in (("cost", "--help"), ("cost", "report", "--help"), ("cost", "sample", "--help")):
        code, modules = imported_by(*args)
        assert code == 0, args
        assert not modules, (args, modules)
