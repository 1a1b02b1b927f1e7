"""The hardware catalog, the estimate, and tag mapping per cloud."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from recipes.cost.catalog import CATALOG_FILE, Ask, load, resolve
from recipes.cost.estimate import model_parameters
from recipes.errors import RecipeInputError
from recipes.tags import AWS, AZURE, GCP, TagPolicy, map_tags
from tests.conftest import CATALOG, CLI


def test_every_price_has_a_source_and_a_date() -> None:
    data = yaml.safe_load(CATALOG_FILE.read_text())
    assert data["version"] and data["updated"]
    for provider, offers in data["offers"].items():
        for offer in offers:
            where = f"{provider} {offer['instance_type']}"
            assert offer["source"].startswith("http"), where
            assert offer["as_of"], where
            assert offer["prices"], where
            for region, price in offer["prices"].items():
                assert price["on_demand"] > 0, (where, region)
                assert price["spot"] is None or 0 < price["spot"] < price["on_demand"], (
                    where,
                    region,
                )


@pytest.mark.parametrize("provider", ["aws", "azure", "gcp"])
@pytest.mark.parametrize(
    ("accelerator", "gpus"),
    [("cpu", 0), ("T4", 1), ("A100-40GB", 8), ("A100-80GB", 8), ("H100", 8), ("H200", 8)],
)
def test_common_asks_resolve_in_the_first_region(
    provider: str, accelerator: str, gpus: int
) -> None:
    region = {"aws": "us-east-1", "azure": "eastus", "gcp": "us-central1"}[provider]
    if (provider, accelerator) == ("azure", "H200"):
        region = "eastus2"  # not sold in eastus (see the catalog)
    offer = resolve(Ask(provider, accelerator, gpus, region))
    assert offer.accelerator == accelerator and offer.gpus == gpus


def test_cheapest_exact_fit_and_nearest_on_failure() -> None:
    assert resolve(Ask("aws", "A10G", 1, "us-east-1")).instance_type == "ml.g5.xlarge"
    with pytest.raises(RecipeInputError) as err:
        resolve(Ask("aws", "H100", 3, "us-east-1"))
    assert "no aws offer has 3x H100" in str(err.value) and "ml.p5.48xlarge (8x H100)" in str(
        err.value
    )


def test_model_size_from_the_name() -> None:
    assert model_parameters("Qwen/Qwen2.5-7B-Instruct")[0] == 7e9
    assert model_parameters("meta-llama/Llama-3.1-70B")[0] == 70e9
    assert model_parameters("Qwen/Qwen2.5-0.5B")[0] == 0.5e9
    assert model_parameters("builtin:tiny-chat")[0] == 4.2e6
    assert model_parameters("/models/my-finetune")[1].startswith("assumed")


def test_catalog_loads() -> None:
    catalog = load()
    assert set(catalog.offers) == {"aws", "azure", "gcp"}
    assert (
        catalog.accelerators["H100"].tokens_per_s_per_gpu_7b_lora
        > catalog.accelerators["T4"].tokens_per_s_per_gpu_7b_lora
    )


# --- tags ------------------------------------------------------------------------------------


def test_forbidden_characters_are_replaced_and_reported() -> None:
    mapped = map_tags({"cost center!": "CC 4711"}, AWS)
    assert mapped.tags == {"cost center_": "CC 4711"}
    assert mapped.renamed == {"cost center!=CC 4711": "cost center_=CC 4711"}
    assert map_tags({"team": "a<b"}, AZURE).tags == {"team": "a<b"}  # values may hold < on Azure
    assert map_tags({"a<b": "x"}, AZURE).tags == {"a_b": "x"}
    assert map_tags({"Owner": "ML Platform"}, GCP).tags == {"owner": "ml_platform"}


@pytest.mark.parametrize(
    ("tags", "rules", "message"),
    [
        ({"aws:createdBy": "me"}, AWS, "reserves keys"),
        ({"Env": "dev", "env": "prod"}, GCP, "same as tags.Env"),
        ({"note": "x" * 257}, AWS, "losing meaning"),
        ({"note": "x" * 64}, GCP, "longer than 63"),
        ({"9lives": "yes"}, GCP, "start with a letter"),
        ({f"k{i}": "v" for i in range(51)}, AWS, "at most 50"),
        ({"k" * 513: "v"}, AZURE, "longer than 512"),
    ],
)
def test_lossy_mappings_are_errors(tags: dict, rules, message: str) -> None:
    with pytest.raises(RecipeInputError, match=message):
        map_tags(tags, rules)


def test_tag_policy(tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(
        "required: [project, cost_center, owner, env]\nallowed: {env: [dev, prod]}\n"
    )
    policy = TagPolicy.from_file(policy_file)
    policy.check({"project": "p", "cost_center": "c", "owner": "o", "env": "dev"})
    with pytest.raises(RecipeInputError) as err:
        policy.check({"project": "p", "env": "staging"})
    text = str(err.value)
    assert "tags.cost_center: the tag policy" in text and "tags.owner" in text
    assert "'staging' is not allowed" in text


def test_tag_policy_points_at_the_recipe(cli: CLI, tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("required: [project, cost_center, owner, env, data_owner]\n")
    cli.env["RECIPE_TAG_POLICY"] = str(policy_file)
    result = cli("plan", str(CATALOG / "quickstart.yaml"))
    assert result.returncode == 2
    assert "tags.data_owner: the tag policy" in result.stderr
    assert "quickstart.yaml" in result.stderr


def test_validate_checks_the_tag_policy(cli: CLI, tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("required: [project]\nallowed: {env: [prod]}\n")
    cli.env["RECIPE_TAG_POLICY"] = str(policy_file)
    result = cli("validate", str(CATALOG / "quickstart.yaml"))
    assert result.returncode == 2
    line = next(
        i
        for i, text in enumerate((CATALOG / "quickstart.yaml").read_text().splitlines(), 1)
        if text.startswith("tags:")
    )
    assert f"quickstart.yaml:{line}:" in result.stderr and "'dev' is not allowed" in result.stderr
