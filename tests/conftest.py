"""Shared fixtures: the repo, small recipes and data, and the `recipe` CLI as users run it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CATALOG = REPO / "recipes" / "catalog"
SUPPORT_DATA = CATALOG / "data" / "support"
QUICKSTART = CATALOG / "quickstart.yaml"
MULTINODE = CATALOG / "support-triage-multinode.yaml"
HYPERPOD = CATALOG / "support-triage-hyperpod.yaml"
CLOUD_DEFAULTS = {  # for catalog recipes without a compute.<cloud> block
    "SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/recipe-sagemaker-training",
    "RECIPE_AWS_BUCKET": "s3://recipe-artifacts-123456789012/fine-tunes",
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    "AZURE_RESOURCE_GROUP": "rg-ml",
    "AZUREML_WORKSPACE_NAME": "ws-ml",
    "AZUREML_COMPUTE": "gpu-cluster",
    "GOOGLE_CLOUD_PROJECT": "recipe-ml-dev",
    "RECIPE_GCP_BUCKET": "gs://recipe-artifacts-dev/fine-tunes",
}


try:
    from hypothesis import settings as hypothesis_settings
except ImportError:  # the dev extra is not installed: only tests/test_properties.py needs it
    pass
else:
    # "ci" (the default): the same examples on every run, and a failure prints the blob
    # that replays it (@reproduce_failure). HYPOTHESIS_PROFILE=explore searches afresh.
    hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True, database=None)
    hypothesis_settings.register_profile("explore", print_blob=True)
    hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", help="rewrite tests/golden/ from current plans"
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated RECIPE_HOME (runs/ and the ledger) for each test."""
    path = tmp_path / "runs"
    monkeypatch.setenv("RECIPE_HOME", str(path))
    return path


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few dozen rows of the bundled data: enough for a seconds-long real run."""
    directory = tmp_path_factory.mktemp("data")
    train = (SUPPORT_DATA / "train.jsonl").read_text().splitlines()[:96]
    golden = (SUPPORT_DATA / "golden.jsonl").read_text().splitlines()[:16]
    (directory / "train.jsonl").write_text("\n".join(train) + "\n")
    (directory / "golden.jsonl").write_text("\n".join(golden) + "\n")
    return directory


def tiny_recipe(data_dir: Path, **sections: dict) -> dict:
    """A recipe that trains for seconds on the builtin model."""
    recipe = {
        "name": "tiny",
        "model": {"base": "builtin:tiny-chat"},
        "data": {
            "train": str(data_dir / "train.jsonl"),
            "validation": 0.125,
            "max_seq_len": 256,
        },
        "method": {"kind": "lora", "r": 4, "alpha": 8},
        "training": {
            "epochs": 1,
            "max_steps": 4,
            "batch_size": 8,
            "micro_batch_size": 4,
            "learning_rate": 1e-3,
            "log_every_steps": 1,
        },
        "eval": {"golden": str(data_dir / "golden.jsonl"), "max_new_tokens": 4},
        "tags": {"project": "tests", "owner": "ci"},
    }
    for name, values in sections.items():
        recipe[name] = {**recipe.get(name, {}), **values}
    return recipe


@pytest.fixture
def write_recipe(tmp_path: Path) -> Callable[..., Path]:
    def write(content: dict | str, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        path.write_text(text)
        return path

    return write


class CLI:
    """Runs `recipe ...` in a subprocess, exactly as a user or CI would."""

    def __init__(self, env: dict[str, str], cwd: Path):
        self.env = env
        self.cwd = cwd

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "recipes", *map(str, args)],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.cwd,
            timeout=timeout,
        )

    def json(self, *args: str, timeout: float = 300) -> dict:
        result = self(*args, "--format", "json", timeout=timeout)
        assert result.returncode in (0, 1), result.stderr
        return json.loads(result.stdout)


@pytest.fixture
def cli(home: Path, tmp_path: Path) -> CLI:
    env = {**os.environ, "RECIPE_HOME": str(home), "PYTHONPATH": str(REPO)}
    return CLI(env, tmp_path)


# --- a finished local run, for endpoint and release tests --------------------------------------


@pytest.fixture(scope="session")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (untrained) LoRA adapter on the builtin model, saved as a run saves one."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from training_scripts import modeling

    base = modeling.resolve_base("builtin:tiny-chat")
    tokenizer = modeling.load_tokenizer(base, None, False)

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"),
    )
    target = tmp_path_factory.mktemp("adapter") / "adapter"
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def finished_run(
    home: Path,
    recipe_file: Path,
    adapter: Path,
    state: str = "succeeded",
    passed: bool | None = True,
    run_id: str = "tiny-20261123-120000-0001",
) -> str:
    """A local run as the supervisor leaves it, recorded in the ledger."""
    run_dir = home / run_id
    run_dir.mkdir(parents=True)
    from recipes.loader import load_recipe

    recipe = load_recipe(recipe_file).resolved()
    (run_dir / "recipe.json").write_text(json.dumps({"recipe": recipe.model_dump(mode="json")}))
    (run_dir / "state.json").write_text(json.dumps({"state": state}))
    if passed is not None:
        (run_dir / "eval_report.json").write_text(json.dumps({"passed": passed}))
    shutil.copytree(adapter, run_dir / "adapter")
    from providers.base import RunRef, State
    from recipes.app.ledger import Ledger

    ref = RunRef("local", run_id, {"run_dir": str(run_dir)})
    Ledger(home / "ledger.sqlite").record(ref, recipe.name, str(recipe_file), State(state))
    return run_id


def tiny_chat_and_tickets(count: int, train_on: str = "assistant") -> tuple:
    """The builtin model (fp32), its tokenizer and the first `count` quickstart tickets,
    encoded with loss on `train_on`."""
    import torch
    import transformers

    from training_scripts.data import Example, encode
    from training_scripts.modeling import BUILTIN_DIR

    directory = BUILTIN_DIR / "tiny-chat"
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    rows = (SUPPORT_DATA / "train.jsonl").read_text().splitlines()[:count]
    encoded = [
        encode(Example(json.loads(r)["messages"], line=i), tokenizer, train_on)
        for i, r in enumerate(rows)
    ]
    return model, tokenizer, encoded
