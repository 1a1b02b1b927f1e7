"""The registry answers "does backend X support feature Y" with reasons; every declared
capability is checked before planning; a missing extra is one line and exit 3."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields, replace
from typing import Any

import pytest

from providers import capabilities, registry
from providers.base import Capabilities
from recipes.errors import RecipeInputError
from recipes.loader import load_recipe
from tests.conftest import CATALOG, REPO

QUICKSTART = CATALOG / "quickstart.yaml"


def test_supports_answers_with_reasons() -> None:
    assert registry.supports("aws", "spot").supported
    assert registry.supports("aws", "target:hyperpod").supported
    assert registry.supports("gcp", "data:gs://").supported
    local_spot = registry.supports("local", "spot")
    assert not local_spot.supported and "no spot market" in local_spot.reason
    assert "AmlCompute" in registry.supports("azure", "clusters").reason
    assert not registry.supports("azure", "data:s3://").supported


def test_every_provider_declares_its_targets_and_capabilities() -> None:
    for name, info in registry.PROVIDERS.items():
        caps = registry.capabilities(name)
        assert tuple(info.targets) == caps.targets, name
        for target in info.targets:
            backend = registry.job_backend(name, target)
            assert (backend.name, backend.target) == (name, target)
            assert backend.capabilities is caps


def _recipe(**changes: Any) -> Any:
    recipe = load_recipe(QUICKSTART).resolved()
    compute = recipe.compute.model_copy(update=changes)
    return recipe.model_copy(update={"compute": compute})


# Each field of Capabilities -> a recipe (or a use) it must refuse, and the field named.
CHECKS: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "methods": ({"methods": ("full",)}, {}, "method.kind"),
    "accelerators": ({"accelerators": ("H100-80GB",)}, {}, "compute.accelerator"),
    "spot": ({"spot": False}, {"spot": True}, "compute.spot"),
    "multi_node": ({"multi_node": False}, {"nodes": 2}, "compute.nodes"),
    "max_processes_per_node": (
        {"max_processes_per_node": 4},
        {"gpus_per_node": 8},
        "compute.gpus_per_node",
    ),
    "targets": ({"targets": ("other",)}, {}, "compute.aws.target"),
    "remote_data": ({"remote_data": ("gs://",)}, {}, "data.train"),
}


@pytest.mark.parametrize("feature", sorted(CHECKS))
def test_each_capability_gap_is_refused_with_its_reason(feature: str) -> None:
    caps_change, compute_change, field = CHECKS[feature]
    caps = replace(
        registry.capabilities("aws"), **caps_change, why_not={feature: f"because {feature}"}
    )
    recipe = _recipe(**compute_change)
    if feature == "remote_data":
        data = recipe.data.model_copy(update={"train": "s3://bucket/train.jsonl"})
        recipe = recipe.model_copy(update={"data": data})
    with pytest.raises(RecipeInputError) as err:
        capabilities.check("aws", caps, recipe, "training-job")
    (problem,) = err.value.problems
    assert problem.field == field and problem.hint == f"because {feature}", problem


def test_every_capability_field_is_checked_somewhere() -> None:
    """A new capability must come with its check (here, or in the registry/use cases)."""
    elsewhere = {
        "clusters": "registry.cluster_backend refuses `recipe cluster` without it",
        "idempotent": "recipes.app.runs.prepare names the run from its content",
        "why_not": "the hints of every refusal above",
    }
    assert {f.name for f in fields(Capabilities)} == set(CHECKS) | set(elsewhere)


def test_cluster_commands_need_a_provider_with_clusters() -> None:
    recipe = load_recipe(QUICKSTART).resolved()
    with pytest.raises(RecipeInputError, match="azure has no clusters"):
        registry.cluster_backend("azure", recipe)
    with pytest.raises(RecipeInputError, match="runs on no cluster of its own"):
        registry.cluster_backend("aws", recipe)  # target: training-job


BLOCKED = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # `import name` now raises ImportError, as without the extra
from recipes.cli import app
app(sys.argv[1:])
"""


@pytest.mark.parametrize(
    ("provider", "blocked", "overrides"),
    [
        ("aws", ["boto3"], []),
        ("azure", ["azure.ai.ml"], ["compute.azure.compute=cpu"]),
        ("gcp", ["google.cloud.storage", "google.cloud.aiplatform_v1"], []),
    ],
)
def test_a_missing_extra_is_one_line_and_exit_3(
    provider: str, blocked: list[str], overrides: list[str], home: Any
) -> None:
    env = {
        "RECIPE_HOME": str(home),
        "PYTHONPATH": str(REPO),
        "SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/ft",
        "RECIPE_AWS_BUCKET": "s3://bucket",
        "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
        "AZURE_RESOURCE_GROUP": "rg",
        "AZUREML_WORKSPACE_NAME": "ws",
        "GOOGLE_CLOUD_PROJECT": "project",
        "RECIPE_GCP_BUCKET": "gs://bucket",
        "PATH": "/usr/bin:/bin",
    }
    args = ["run", str(QUICKSTART), *overrides, "--provider", provider]
    result = subprocess.run(
        [sys.executable, "-c", BLOCKED.format(blocked=blocked), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 3, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: the {provider} provider needs ")
    assert f"pip install '.[{provider}]'" in line
