"""What `recipe serve SOURCE` serves, decided from files alone (no torch, no network):
run directories, adapter and model directories, builtin names, hub ids, and every way
they can be wrong, each a RecipeInputError naming the field and the expectation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from providers.local.server import ServeConfig, check
from recipes.errors import RecipeInputError
from training_scripts.modeling import BUILTIN_DIR

BASE = "builtin:tiny-chat"


def adapter(directory: Path, base: str = str(BUILTIN_DIR / "tiny-chat"), kind="LORA") -> Path:
    directory.mkdir(parents=True)
    config = {"peft_type": kind, "base_model_name_or_path": base, "r": 4}
    (directory / "adapter_config.json").write_text(json.dumps(config))
    return directory


def run_dir(root: Path, name: str = "support", base: str = BASE, with_adapter=True) -> Path:
    root.mkdir(parents=True)
    recipe = {"name": name, "model": {"base": base, "revision": None}}
    (root / "recipe.json").write_text(json.dumps({"contract": 1, "recipe": recipe}))
    if with_adapter:
        adapter(root / "adapter")
    return root


def problems(config: ServeConfig) -> str:
    with pytest.raises(RecipeInputError) as caught:
        check(config)
    return caught.value.render()


def test_builtin_serves_the_base_alone() -> None:
    resolved = check(ServeConfig(source=BASE))
    assert resolved.ids() == [BASE]
    assert resolved.base.location == str(BUILTIN_DIR / "tiny-chat")


def test_a_run_directory_serves_its_adapter_under_the_recipe_name(tmp_path: Path) -> None:
    run = run_dir(tmp_path / "run")
    resolved = check(ServeConfig(source=str(run)))
    assert resolved.ids() == [BASE, "support"]
    assert resolved.adapters[0].path == run / "adapter"
    # Pointing at the run's adapter/ itself names it after the run too.
    assert check(ServeConfig(source=str(run / "adapter"))).ids() == [BASE, "support"]


def test_a_run_without_adapter_serves_its_merged_model_under_the_recipe_name(
    tmp_path: Path,
) -> None:
    run = run_dir(tmp_path / "run", with_adapter=False)
    (run / "merged").mkdir()
    (run / "merged" / "config.json").write_text("{}")
    resolved = check(ServeConfig(source=str(run)))
    assert resolved.ids() == ["support"]
    assert resolved.base.location == str(run / "merged")


def test_an_unfinished_run_is_refused(tmp_path: Path) -> None:
    run = run_dir(tmp_path / "run", with_adapter=False)
    assert "did the run finish" in problems(ServeConfig(source=str(run)))


def test_a_bare_adapter_is_named_after_its_directory_and_finds_its_builtin_base(
    tmp_path: Path,
) -> None:
    # A path into another checkout's training_scripts/builtin/ maps back to builtin:NAME.
    elsewhere = "/opt/ml/code/training_scripts/builtin/tiny-chat"
    path = adapter(tmp_path / "my-lora", base=elsewhere)
    assert check(ServeConfig(source=str(path))).ids() == [BASE, "my-lora"]


def test_extra_adapters_join_the_base(tmp_path: Path) -> None:
    run = run_dir(tmp_path / "run")
    extra = adapter(tmp_path / "extra")
    other_run = run_dir(tmp_path / "other", name="other")
    resolved = check(ServeConfig(source=str(run), adapters={"x": str(extra), "y": str(other_run)}))
    assert resolved.ids() == [BASE, "support", "x", "y"]
    assert resolved.adapters[2].path == other_run / "adapter"


def test_every_adapter_problem_is_reported_at_once(tmp_path: Path) -> None:
    foreign = adapter(tmp_path / "foreign", base="someone/other-model")
    prefix = adapter(tmp_path / "prefix", kind="PREFIX_TUNING")
    text = problems(
        ServeConfig(
            source=BASE,
            adapters={
                "foreign": str(foreign),
                "prefix": str(prefix),
                "missing": str(tmp_path / "nope"),
                BASE: str(foreign),
                "has space": str(foreign),
            },
        )
    )
    assert "adapters.foreign: " in text and "all adapters must share one base" in text
    assert "adapters.prefix: " in text and "only LORA adapters" in text
    assert "adapters.missing: " in text and "no such directory" in text
    assert f"adapters.{BASE}: " in text and "already used" in text
    assert "adapters.has space: " in text


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("builtin:nope", "no builtin model 'nope'"),
        ("./does/not/exist", "no such model directory"),
        ("", "is empty"),
        ("someone/not-cached-model", "not in the local Hugging Face cache"),
    ],
)
def test_bad_sources_name_the_problem(source: str, expected: str) -> None:
    text = problems(ServeConfig(source=source))
    assert "source:" in text and expected in text


def test_a_directory_that_is_nothing_servable(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    text = problems(ServeConfig(source=str(tmp_path / "empty")))
    assert "not a run directory (recipe.json), a PEFT adapter" in text


def test_a_broken_recipe_json(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "recipe.json").write_text("{oops")
    assert "cannot read" in problems(ServeConfig(source=str(tmp_path / "run")))


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"host": "0.0.0.0"}, "host"),
        ({"host": "10.1.2.3"}, "host"),
        ({"max_batch": 0}, "max_batch"),
        ({"max_queue": -1}, "max_queue"),
        ({"max_tokens_limit": 0}, "max_tokens_limit"),
        ({"port": 70000}, "port"),
        ({"api_key": " "}, "api_key"),
    ],
)
def test_bad_settings(settings: dict, field: str) -> None:
    assert f"{field}:" in problems(ServeConfig(source=BASE, **settings))


def test_loopback_hosts_need_no_key() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check(ServeConfig(source=BASE, host=host))


def test_the_key_is_never_shown() -> None:
    config = ServeConfig(source=BASE, host="0.0.0.0", api_key="sk-secret-value")
    assert "sk-secret-value" not in repr(config)
    assert "sk-secret-value" not in str(config)
