"""Every SageMaker request a plan holds, validated against botocore's own service model:
required members, unknown members, types, enums, patterns, lengths and list sizes. moto and
botocore's client-side validation check less (no patterns, no enums), so this walks the
model itself (botocore/data/sagemaker/2017-07-24/service-2.json, as installed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import botocore.session
import pytest
import regex  # Java-style \p{L} classes in the model's patterns

from providers.base import Plan
from providers.registry import for_recipe
from providers.staging import cloud_identity
from recipes.errors import RecipeInputError
from recipes.loader import load_recipe
from tests.conftest import CATALOG, CLOUD_DEFAULTS, HYPERPOD

SAGEMAKER = botocore.session.get_session().get_service_model("sagemaker")
OPERATIONS = {"sagemaker:CreateTrainingJob": "CreateTrainingJob"}
VARIANTS = {  # beyond the catalog: what changes the shape of a request
    "spot-2-nodes": (
        CATALOG / "quickstart.yaml",
        [
            "compute.accelerator=A100-80GB",
            "compute.gpus_per_node=8",
            "compute.nodes=2",
            "compute.spot=true",
            "training.batch_size=128",
        ],
    ),
    "vpc-kms": (
        CATALOG / "support-triage-multinode.yaml",
        [
            "compute.aws.subnets=[subnet-0abc,subnet-0def]",
            "compute.aws.security_groups=[sg-0123]",
            "compute.aws.kms_key=arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        ],
    ),
    "unicode-tags": (
        CATALOG / "quickstart.yaml",
        ["tags.team=données ml", "tags.note=a\tb"],
    ),
}
CASES = {p.stem: (p, []) for p in sorted(CATALOG.glob("*.yaml"))} | VARIANTS


def violations(value: Any, shape: Any, path: str = "") -> list[str]:
    """What in `value` breaks `shape` (a botocore Shape), each with its path."""
    where = path or "<request>"
    kind = shape.type_name
    meta = shape.metadata
    found: list[str] = []
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{where}: expected a structure, got {type(value).__name__}"]
        found += [f"{where}.{m}: required" for m in shape.required_members if m not in value]
        for key, item in value.items():
            if key not in shape.members:
                found.append(f"{where}.{key}: not a member of {shape.name}")
                continue
            found += violations(item, shape.members[key], f"{path}.{key}" if path else key)
    elif kind == "list":
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        found += _bounds(len(value), meta, where, "items")
        for i, item in enumerate(value):
            found += violations(item, shape.member, f"{where}[{i}]")
    elif kind == "map":
        if not isinstance(value, dict):
            return [f"{where}: expected a map"]
        found += _bounds(len(value), meta, where, "entries")
        for key, item in value.items():
            found += violations(key, shape.key, f"{where} key {key!r}")
            found += violations(item, shape.value, f"{where}[{key!r}]")
    elif kind == "string":
        if not isinstance(value, str):
            return [f"{where}: expected a string, got {type(value).__name__}"]
        found += _bounds(len(value), meta, where, "characters")
        if shape.enum and value not in shape.enum:
            found.append(f"{where}: {value!r} not one of {shape.enum}")
        pattern = meta.get("pattern")
        if pattern and not regex.fullmatch(pattern, value):
            found.append(f"{where}: {value!r} does not match {pattern}")
    elif kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            return [f"{where}: expected an integer"]
        if "min" in meta and value < meta["min"] or "max" in meta and value > meta["max"]:
            found.append(f"{where}: {value} outside [{meta.get('min')}, {meta.get('max')}]")
    elif kind == "boolean" and not isinstance(value, bool):
        found.append(f"{where}: expected a boolean")
    return found


def _bounds(size: int, meta: dict[str, Any], where: str, unit: str) -> list[str]:
    if "min" in meta and size < meta["min"]:
        return [f"{where}: {size} {unit}, at least {meta['min']}"]
    if "max" in meta and size > meta["max"]:
        return [f"{where}: {size} {unit}, at most {meta['max']}"]
    return []


def test_the_validator_catches_what_the_model_forbids() -> None:
    shape = SAGEMAKER.operation_model("CreateTrainingJob").input_shape
    bad = {
        "TrainingJobName": "has_underscore",
        "RoleArn": "arn:aws:iam::123456789012:role/x",
        "AlgorithmSpecification": {"TrainingInputMode": "Folder"},
        "OutputDataConfig": {"S3OutputPath": "s3://b/o"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 0},
        "Tags": [{"Key": "k", "Value": "tab\there"}],
        "Unknown": 1,
    }
    text = "\n".join(violations(bad, shape))
    for expected in (
        "TrainingJobName: 'has_underscore' does not match",
        "TrainingInputMode: 'Folder' not one of",
        "MaxRuntimeInSeconds: 0 outside",
        "Tags[0].Value: 'tab\\there' does not match",
        "Unknown: not a member",
    ):
        assert expected in text, text


def plans(path: Path, overrides: list[str]) -> list[Plan]:
    loaded = load_recipe(path, overrides)
    recipe = loaded.resolved()
    identity = cloud_identity(recipe.name, loaded.content_hash)
    try:
        return [for_recipe("aws", recipe).plan(recipe, identity)]
    except RecipeInputError as exc:  # a capability gap: nothing would be sent
        assert "cannot" in exc.render() or "needs" in exc.render(), exc.render()
        return []


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_sagemaker_request_fits_the_service_model(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in CLOUD_DEFAULTS.items():
        monkeypatch.setenv(key, value)
    path, overrides = CASES[case]
    checked = 0
    for plan in plans(path, overrides):
        for request in plan.requests:
            operation = OPERATIONS.get(request.api)
            if operation is None:
                continue
            shape = SAGEMAKER.operation_model(operation).input_shape
            assert violations(request.body, shape) == [], request.api
            checked += 1
    assert checked or path == HYPERPOD, case


def test_create_cluster_fits_the_service_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from providers.aws.hyperpod import cluster_request

    for key, value in CLOUD_DEFAULTS.items():
        monkeypatch.setenv(key, value)
    shape = SAGEMAKER.operation_model("CreateCluster").input_shape
    for overrides in ([], ["compute.aws.subnets=[subnet-1]", "compute.aws.security_groups=[sg-1]"]):
        recipe = load_recipe(HYPERPOD, overrides).resolved()
        body = cluster_request(recipe, cloud_identity(recipe.name, "0" * 64)).body
        assert violations(body, shape) == []


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_vertex_body_parses_into_aiplatform_v1(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CustomJob JSON of every plan, read by aiplatform_v1's own message type with
    unknown fields refused (what submit sends through the REST transport)."""
    from providers.gcp import sdk

    for key, value in CLOUD_DEFAULTS.items():
        monkeypatch.setenv(key, value)
    path, overrides = CASES[case]
    loaded = load_recipe(path, overrides)
    recipe = loaded.resolved()
    try:
        plan = for_recipe("gcp", recipe).plan(recipe, cloud_identity(recipe.name, "0" * 64))
    except RecipeInputError as exc:  # a capability gap: nothing would be sent
        assert "cannot" in exc.render(), exc.render()
        return
    body = plan.requests[-1].body["customJob"]
    message = sdk.custom_job_message(body)
    assert type(message).to_dict(message)["display_name"] == body["displayName"]
