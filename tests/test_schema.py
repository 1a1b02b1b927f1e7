"""The recipe schema: what is accepted, and how every kind of mistake is reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recipes.errors import RecipeInputError
from recipes.loader import load_recipe
from recipes.schema import Recipe
from tests.conftest import CATALOG

MINIMAL = """\
name: demo
model: {base: builtin:tiny-chat}
data:
  train: train.jsonl
"""


@pytest.fixture
def recipe_dir(tmp_path: Path) -> Path:
    (tmp_path / "train.jsonl").write_text('{"messages": []}\n')
    (tmp_path / "golden.jsonl").write_text('{"messages": []}\n')
    return tmp_path


def load_text(directory: Path, text: str, overrides: list[str] | None = None):
    path = directory / "recipe.yaml"
    path.write_text(text)
    return load_recipe(path, overrides)


def problems(directory: Path, text: str, overrides: list[str] | None = None):
    with pytest.raises(RecipeInputError) as info:
        load_text(directory, text, overrides)
    return info.value.problems


@pytest.mark.parametrize("path", sorted(CATALOG.glob("*.yaml")), ids=lambda p: p.name)
def test_catalog_recipes_are_valid(path: Path) -> None:
    assert load_recipe(path).recipe.name


def test_minimal_recipe_gets_sane_defaults(recipe_dir: Path) -> None:
    recipe = load_text(recipe_dir, MINIMAL).recipe
    assert recipe.method.kind == "lora"
    assert recipe.training.batch_size % recipe.training.micro_batch_size == 0
    assert recipe.data.validation == 0.1
    assert recipe.compute.accelerator == "cpu"


def test_recipe_is_frozen(recipe_dir: Path) -> None:
    recipe = load_text(recipe_dir, MINIMAL).recipe
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type varies
        recipe.name = "other"  # type: ignore[misc]


def test_misspelled_key_names_line_column_and_suggests(recipe_dir: Path) -> None:
    (p,) = problems(recipe_dir, MINIMAL + "training:\n  epoch: 3\n")
    assert (p.line, p.column) == (6, 3)
    assert p.field == "training.epoch"
    assert p.message == "unknown field"
    assert p.hint == "did you mean 'epochs'?"
    assert p.file.endswith("recipe.yaml")
    assert p.render().startswith(f"{p.file}:6:3: training.epoch: unknown field")


def test_unknown_top_level_section(recipe_dir: Path) -> None:
    (p,) = problems(recipe_dir, MINIMAL + "trainig: {epochs: 1}\n")
    assert p.field == "trainig" and p.hint == "did you mean 'training'?"


def test_all_errors_of_a_file_are_reported_at_once(recipe_dir: Path) -> None:
    text = MINIMAL + "training:\n  epoch: 3\n  learning_rate: fast\nmethod: {kind: lora, alfa: 4}\n"
    found = {p.field: p for p in problems(recipe_dir, text)}
    assert set(found) == {"training.epoch", "training.learning_rate", "method.alfa"}
    assert found["method.alfa"].hint == "did you mean 'alpha'?"
    assert "valid number" in found["training.learning_rate"].message
    lines = [p.line for p in problems(recipe_dir, text)]
    assert lines == sorted(lines)


def test_missing_required_field_points_at_its_section(recipe_dir: Path) -> None:
    (p,) = problems(recipe_dir, "name: demo\nmodel: {base: x}\ndata:\n  validation: 0.1\n")
    assert p.field == "data.train" and p.message == "required field is missing"
    assert p.line == 3  # the section that lacks it


def test_wrong_type_reports_the_value(recipe_dir: Path) -> None:
    (p,) = problems(recipe_dir, MINIMAL + "training: {epochs: many}\n")
    assert p.field == "training.epochs" and "'many'" in p.message


def test_out_of_range_value(recipe_dir: Path) -> None:
    (p,) = problems(recipe_dir, MINIMAL + "method: {kind: lora, dropout: 1.5}\n")
    assert p.field == "method.dropout" and "less than 1" in p.message


def test_unknown_method_kind_suggests(recipe_dir: Path) -> None:
    (p,) = problems(recipe_dir, MINIMAL + "method: {kind: lorra}\n")
    assert p.field == "method.kind" and p.hint == "did you mean 'lora'?"


def test_unknown_accelerator_suggests_by_prefix(recipe_dir: Path) -> None:
    (p,) = problems(recipe_dir, MINIMAL + "compute: {accelerator: A100, gpus_per_node: 8}\n")
    assert p.field == "compute.accelerator"
    assert "'A100-40GB'" in p.hint and "'A100-80GB'" in p.hint


def test_bad_name(recipe_dir: Path) -> None:
    (p,) = problems(recipe_dir, MINIMAL.replace("name: demo", "name: My Recipe"))
    assert p.field == "name" and "lowercase" in p.message


def test_duplicate_key_is_an_error(recipe_dir: Path) -> None:
    (p,) = problems(recipe_dir, MINIMAL + "name: again\n")
    assert p.field == "name" and "duplicate key" in p.message and p.line == 5


def test_yaml_syntax_error_is_located(recipe_dir: Path) -> None:
    (p,) = problems(recipe_dir, MINIMAL + "training: {epochs: 1\n")
    assert "invalid YAML" in p.message and p.line is not None


def test_document_must_be_a_mapping(recipe_dir: Path) -> None:
    (p,) = problems(recipe_dir, "- just\n- a list\n")
    assert "mapping" in p.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RecipeInputError) as info:
        load_recipe(tmp_path / "nope.yaml")
    assert "file not found" in info.value.render()


def test_tags_numbers_become_text(recipe_dir: Path) -> None:
    recipe = load_text(recipe_dir, MINIMAL + "tags: {cost_center: 4711}\n").recipe
    assert recipe.tags == {"cost_center": "4711"}


@pytest.mark.parametrize(
    ("given", "seconds"), [("24h", 86400), ("90m", 5400), ("3600s", 3600), ("2d", 172800), (60, 60)]
)
def test_durations(recipe_dir: Path, given: object, seconds: int) -> None:
    text = MINIMAL + f"compute: {{max_runtime: {given}}}\n"
    assert load_text(recipe_dir, text).recipe.compute.max_runtime == seconds


def test_bad_duration(recipe_dir: Path) -> None:
    (p,) = problems(recipe_dir, MINIMAL + "compute: {max_runtime: soon}\n")
    assert p.field == "compute.max_runtime" and "duration" in p.message


def test_validation_fraction_or_file(recipe_dir: Path) -> None:
    assert load_text(recipe_dir, MINIMAL + "  validation: golden.jsonl\n").recipe
    (p,) = problems(recipe_dir, MINIMAL + "  validation: 1.5\n")
    assert p.field == "data.validation" and "between 0 and 1" in p.message


# --- cross-field rules ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ("training: {batch_size: 10, micro_batch_size: 4}", "training.batch_size", "multiple"),
        ("training: {warmup_ratio: 0.1, warmup_steps: 5}", "training.warmup_steps", "not both"),
        ("method: {kind: qlora}", "method.kind", "CUDA"),
        ("compute: {accelerator: cpu, gpus_per_node: 2}", "compute.gpus_per_node", "must be 0"),
        ("compute: {accelerator: H100}", "compute.gpus_per_node", "at least 1"),
        ("eval: {gates: {macro_f1_min: 0.8}}", "eval.gates", "golden"),
        (
            "deploy: {endpoint: triage, min_replicas: 3, max_replicas: 2}",
            "deploy.min_replicas",
            "exceed",
        ),
        ("eval: {json_schema: golden.jsonl}", "eval.task", "need task: json"),
    ],
)
def test_cross_field_rules(recipe_dir: Path, extra: str, field: str, words: str) -> None:
    found = problems(recipe_dir, MINIMAL + extra + "\n")
    assert [p.field for p in found] == [field]
    assert words in found[0].message
    assert found[0].line is not None


def test_qlora_with_a_gpu_is_fine(recipe_dir: Path) -> None:
    text = MINIMAL + "method: {kind: qlora}\ncompute: {accelerator: A10G, gpus_per_node: 1}\n"
    assert load_text(recipe_dir, text).recipe.method.kind == "qlora"


def test_missing_data_file_is_reported(tmp_path: Path) -> None:
    (p,) = problems(tmp_path, MINIMAL)
    assert p.field == "data.train" and "file not found" in p.message


def test_remote_data_is_not_checked_locally(recipe_dir: Path) -> None:
    text = MINIMAL.replace("train.jsonl", "s3://bucket/train.jsonl")
    assert load_text(recipe_dir, text).recipe.data.train == "s3://bucket/train.jsonl"


# --- overrides --------------------------------------------------------------------------


def test_overrides_apply_and_are_typed(recipe_dir: Path) -> None:
    loaded = load_text(recipe_dir, MINIMAL, ["training.epochs=1", "method.kind=full"])
    assert loaded.recipe.training.epochs == 1
    assert loaded.recipe.method.kind == "full"


def test_override_errors_name_the_argument(recipe_dir: Path) -> None:
    found = problems(recipe_dir, MINIMAL, ["training.epoch=1", "training.seed=abc"])
    by_field = {p.field: p for p in found}
    assert by_field["training.epoch"].file == "command line"
    assert by_field["training.epoch"].hint == "did you mean 'epochs'?"
    assert "training.seed=abc" in by_field["training.seed"].message


def test_malformed_override(recipe_dir: Path) -> None:
    (p,) = problems(recipe_dir, MINIMAL, ["epochs"])
    assert p.file == "command line" and "key=value" in p.message


def test_override_cross_field_rule_is_attributed(recipe_dir: Path) -> None:
    (p,) = problems(recipe_dir, MINIMAL, ["training.batch_size=10"])
    assert p.file == "command line" and p.field == "training.batch_size"


# --- hashing and JSON Schema --------------------------------------------------------------


def test_content_hash_ignores_formatting(recipe_dir: Path) -> None:
    a = load_text(recipe_dir, MINIMAL).content_hash
    b = load_text(
        recipe_dir, MINIMAL.replace("data:\n  train: train.jsonl", "data: {train: train.jsonl}")
    )
    assert a == b.content_hash
    assert a != load_text(recipe_dir, MINIMAL, ["training.seed=1"]).content_hash


def test_json_schema_describes_every_field() -> None:
    schema = Recipe.model_json_schema()
    json.dumps(schema)
    missing = []

    def walk(node: dict, where: str) -> None:
        for name, prop in node.get("properties", {}).items():
            if "description" not in prop:
                missing.append(f"{where}.{name}")

    walk(schema, "recipe")
    for name, definition in schema.get("$defs", {}).items():
        walk(definition, name)
    assert not missing, missing


def test_model_base_local_directory_is_resolved_hub_id_is_kept(recipe_dir: Path) -> None:
    (recipe_dir / "my-model").mkdir()
    local = load_text(recipe_dir, MINIMAL.replace("builtin:tiny-chat", "./my-model")).resolved()
    assert local.model.base == str(recipe_dir / "my-model")
    hub = load_text(recipe_dir, MINIMAL.replace("builtin:tiny-chat", "org/model")).resolved()
    assert hub.model.base == "org/model"
    builtin = load_text(recipe_dir, MINIMAL).resolved()
    assert builtin.model.base == "builtin:tiny-chat"


def test_early_stopping_needs_validation(recipe_dir: Path) -> None:
    overrides = ["training.early_stopping_patience=2", "data.validation=null"]
    (p,) = problems(recipe_dir, MINIMAL, overrides)
    assert p.field == "training.early_stopping_patience" and "validation" in p.message


def test_the_hash_ignores_defaults_written_out(write_recipe) -> None:
    """Run ids come from the hash: a default spelled out, or a new optional field added
    by an upgrade, must not rename every job."""
    plain = load_recipe(CATALOG / "quickstart.yaml").content_hash
    text = (CATALOG / "quickstart.yaml").read_text()
    spelled = text.replace("training:\n", "training:\n  resume: auto\n  max_grad_norm: 1.0\n", 1)
    assert spelled != text
    path = write_recipe(spelled, name="quickstart.yaml")
    (path.parent / "data").symlink_to(CATALOG / "data")
    assert load_recipe(path).content_hash == plain
    assert load_recipe(path, ["training.seed=7"]).content_hash != plain
