"""The image catalog: every image can run the training scripts, plans use it, and an
image that cannot (Vertex's newest prebuilt PyTorch, torch 2.4) is refused."""

from __future__ import annotations

import dataclasses
import datetime
import re

import pytest

from providers import images
from providers.base import Plan
from providers.registry import for_recipe
from providers.staging import cloud_identity
from recipes.errors import RecipeInputError
from recipes.loader import load_recipe
from tests.conftest import CATALOG, CLOUD_DEFAULTS, REPO


def plan_for(provider: str, overrides: list[str]) -> Plan:
    loaded = load_recipe(CATALOG / "support-triage-a100.yaml", overrides)
    recipe = loaded.resolved()
    return for_recipe(provider, recipe).plan(recipe, cloud_identity(recipe.name, "0" * 64))


@pytest.fixture(autouse=True)
def clouds(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in CLOUD_DEFAULTS.items():
        monkeypatch.setenv(key, value)


def test_every_catalog_image_runs_the_scripts() -> None:
    catalog = images.load()
    today = datetime.date(2026, 11, 23)
    for image in catalog.images:
        assert images.check(image, "x", today) == (), image.uri
        assert image.source.startswith("https://") and image.checked <= today
    kinds = {(i.cloud, i.kind, i.device) for i in catalog.images}
    for cloud, kind in (
        ("aws", "training-job"),
        ("aws", "hyperpod"),
        ("azure", "command-job"),
        ("gcp", "custom-job"),
    ):
        assert {(cloud, kind, "gpu"), (cloud, kind, "cpu")} <= kinds


def test_requirements_match_what_the_job_installs() -> None:
    """The catalog's torch floor is transformers 5's; the job must not install torch."""
    lines = (REPO / "training_scripts" / "requirements.txt").read_text().splitlines()
    wanted = [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]
    assert "transformers>=5.0" in wanted
    assert not any(re.match(r"torch\b", line) for line in wanted)
    assert images.load().requirements == images.Requirements(python="3.10", torch="2.6")


def test_an_image_below_the_requirements_is_refused() -> None:
    old_vertex = dataclasses.replace(
        images.default("gcp", "custom-job", gpu=True),
        uri="us-docker.pkg.dev/vertex-ai/training/pytorch-gpu.2-4.py310:latest",
        python="3.10",
        torch="2.4.1",
    )
    with pytest.raises(RecipeInputError, match=r"torch 2.4.1 < 2.6") as err:
        images.check(old_vertex, "compute.gcp.image")
    assert err.value.problems[0].field == "compute.gcp.image"


def test_an_image_past_its_end_of_patch_is_noted() -> None:
    image = images.default("aws", "training-job", gpu=True)
    later = image.end_of_patch + datetime.timedelta(days=1)
    (note,) = images.check(image, "compute.aws.image", today=later)
    assert "past its end of patch" in note


@pytest.mark.parametrize("provider", ["aws", "azure", "gcp"])
def test_plans_use_the_catalog_and_note_a_custom_image(provider: str) -> None:
    plan = plan_for(provider, [])
    catalog_uris = {i.uri.split("/")[-1] for i in images.load().images if i.cloud == provider}
    used = plan.compute.get("image") or plan.compute.get("environment")
    assert used.split("/")[-1] in catalog_uris
    field = {"aws": "image", "azure": "environment", "gcp": "image"}[provider]
    custom = plan_for(provider, [f"compute.{provider}.{field}=registry.example/ft:1"])
    assert any("is not in the image catalog" in note for note in custom.notes)


def test_sagemaker_and_hyperpod_variants() -> None:
    job = plan_for("aws", []).compute["image"]
    assert job.endswith("-sagemaker") and ".dkr.ecr.us-east-1.amazonaws.com/" in job
    loaded = load_recipe(CATALOG / "support-triage-hyperpod.yaml")
    recipe = loaded.resolved()
    plan = for_recipe("aws", recipe).plan(recipe, cloud_identity(recipe.name, "0" * 64))
    assert plan.compute["image"].endswith("-ec2")  # what the HyperPod examples run


def test_a3_ultra_boots_from_hyperdisk() -> None:
    plan = plan_for("gcp", ["compute.accelerator=H200"])
    pool = plan.requests[-1].body["customJob"]["jobSpec"]["workerPoolSpecs"][0]
    assert pool["machineSpec"]["machineType"].startswith("a3-ultragpu-")
    assert pool["diskSpec"]["bootDiskType"] == "hyperdisk-balanced"
    a100 = plan_for("gcp", []).requests[-1].body["customJob"]["jobSpec"]["workerPoolSpecs"][0]
    assert a100["diskSpec"]["bootDiskType"] == "pd-ssd"
