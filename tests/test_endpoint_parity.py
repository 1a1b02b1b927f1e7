"""One deploy block, three clouds: the endpoints they would create serve the same thing.

Each cloud's `parity_view` reads its plan's request bodies back (the bodies deploy
sends, not the neutral ServingSpec they came from), so a cloud that dropped the
adapter, the context length, a replica bound or a tag fails here. No body may carry
a secret, whatever the environment holds.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest

from providers import images, registry
from providers.base import Artifact, EndpointPlan
from recipes.loader import load_recipe
from tests.conftest import CATALOG

CLOUDS = ("aws", "azure", "gcp")
RECIPE = CATALOG / "support-triage-a100.yaml"
OVERRIDES = ["deploy.endpoint=support-triage", "deploy.min_replicas=1", "deploy.max_replicas=3"]
# Where each cloud's training backend reports the run's output (RunStatus.artifacts["model"]).
OUTPUTS = {
    "aws": "s3://recipe-artifacts-123456789012/fine-tunes/runs/support-triage-a100-1a2b3c4d-1/"
    "output/support-triage-a100-1a2b3c4d-1/output/model.tar.gz",
    "azure": "azureml://jobs/support-triage-a100-1a2b3c4d-1/outputs/model",
    "gcp": "gs://recipe-artifacts-dev/fine-tunes/runs/support-triage-a100-1a2b3c4d-1/output/model",
}
SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "sentinel-aws-secret-3f9a",
    "AWS_SESSION_TOKEN": "sentinel-aws-token-77c1",
    "AZURE_CLIENT_SECRET": "sentinel-azure-secret-0b2e",
    "WANDB_API_KEY": "sentinel-wandb-key-5d41",
    "HF_TOKEN": "sentinel-hf-token-9e07",
}
SAME = ("base_model", "served_name", "adapters", "max_model_len", "max_lora_rank")


def artifact(cloud: str) -> Artifact:
    return Artifact(
        run_id="support-triage-a100-1a2b3c4d-1",
        provider=cloud,
        uri=OUTPUTS[cloud],
        kind="adapter",
        base_model="Qwen/Qwen2.5-7B-Instruct",
        name="support-triage-a100",
        lora_rank=32,
    )


@pytest.fixture(scope="module")
def plans() -> dict[str, EndpointPlan]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in SECRETS.items():
            patch.setenv(name, value)
        recipe = load_recipe(RECIPE, OVERRIDES).resolved()
        return {c: registry.endpoint_backend(c).plan_endpoint(recipe, artifact(c)) for c in CLOUDS}


def view(plan: EndpointPlan) -> dict[str, Any]:
    return importlib.import_module(f"providers.{plan.provider}.endpoint").parity_view(plan)


def test_every_cloud_serves_the_same_model_the_same_way(plans: dict[str, EndpointPlan]) -> None:
    views = {cloud: view(plan) for cloud, plan in plans.items()}
    for key in SAME:
        values = {cloud: json.dumps(v[key], sort_keys=True) for cloud, v in views.items()}
        assert len(set(values.values())) == 1, f"{key} differs: {values}"
    first = views["aws"]
    assert first["base_model"] == "Qwen/Qwen2.5-7B-Instruct"
    assert set(first["adapters"]) == {"support-triage-a100"}
    assert first["max_model_len"] == 2048  # data.max_seq_len
    assert first["max_lora_rank"] == 32  # method.r


@pytest.mark.parametrize("cloud", CLOUDS)
def test_bodies_carry_the_plan(cloud: str, plans: dict[str, EndpointPlan]) -> None:
    plan = plans[cloud]
    seen = view(plan)
    assert seen["artifact"].rstrip("/") == plan.artifact.uri.rstrip("/")
    assert seen["image"] == plan.serving.image
    (row,) = [i for i in images.load().endpoint_images if i.cloud == cloud]
    # The catalog's serving image: its repository and tag, the registry filled in per region.
    assert seen["image"].endswith(row.uri.rsplit("/", 1)[-1])
    assert seen["instance_type"] == plan.compute["instance_type"]
    assert (seen["min_replicas"], seen["max_replicas"]) == (1, 3)
    assert seen["tags"] == plan.tags
    for key in ("project", "cost_center", "owner", "env", "recipe", "run_id", "endpoint"):
        assert key.replace("_", "-") in seen["tags"] or key in seen["tags"], key


def test_hardware_and_cost_are_resolved_per_cloud(plans: dict[str, EndpointPlan]) -> None:
    for plan in plans.values():
        assert plan.compute["gpus"] >= 1
        assert plan.compute["gpu_memory_gb"] * plan.compute["gpus"] >= 18  # a 7B model in bf16
        est = plan.estimate
        assert est.monthly_usd == pytest.approx(est.hourly_usd * 730, rel=0.01)
        assert est.max_monthly_usd == pytest.approx(est.monthly_usd * 3, rel=0.01)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_no_secret_in_any_plan(cloud: str, plans: dict[str, EndpointPlan]) -> None:
    text = json.dumps(plans[cloud].to_dict())
    for value in SECRETS.values():
        assert value not in text
    assert "Bearer" not in text and "primaryKey" not in text
