"""How a job starts: the recipe.json contract, the module graph of training_scripts, the
launcher's topology, commands and installs (Azure ML included), and a SIGTERM that
reaches the trainer, which checkpoints and is resumed."""

from __future__ import annotations

import ast
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, tiny_recipe
from training_scripts import contract, launch, secrets
from training_scripts.launch import Topology, commands, install_command, topology

SCRIPTS = REPO / "training_scripts"


def job_env(**extra: str) -> dict[str, str]:
    """This environment, minus anything that would make a job think it runs on a platform."""
    platform = ("SM_", "AZUREML_", "AIP_", "CLOUD_ML_", "CLUSTER_SPEC", "RECIPE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(platform)}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return {**env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}


# --- the contract ---------------------------------------------------------------------------


def test_contract_version_matches_the_orchestrator() -> None:
    """The version providers write into recipe.json is the one the scripts accept."""
    for name in ("providers.job", "providers.contract"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue  # the module itself is absent, not something it imports
            raise
        if hasattr(module, "CONTRACT_VERSION"):
            assert module.CONTRACT_VERSION == contract.SUPPORTED_CONTRACT
            return
    pytest.skip("neither providers.job nor providers.contract defines CONTRACT_VERSION")


def test_load_config_checks_the_contract(tmp_path: Path) -> None:
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps({"contract": 1, "run": {}, "recipe": {}}))
    assert contract.load_config(path)["contract"] == 1
    path.write_text(json.dumps({"contract": 2, "run": {}, "recipe": {}}))
    with pytest.raises(contract.ContractError) as found:
        contract.load_config(path)
    message = str(found.value)
    assert "\n" not in message
    assert str(path) in message and "contract 2" in message and "support contract 1" in message
    assert "the orchestrator and the training scripts come from different versions" in message
    path.write_text(json.dumps({"run": {}, "recipe": {}}))
    with pytest.raises(contract.ContractError, match="found no contract version"):
        contract.load_config(path)


@pytest.mark.parametrize("module", ["train", "preprocess", "launch"])
def test_entry_points_refuse_another_contract(tmp_path: Path, module: str) -> None:
    (tmp_path / "recipe.json").write_text(json.dumps({"contract": 99, "run": {}, "recipe": {}}))
    out = tmp_path / "out"
    argv = ["--config", str(tmp_path / "recipe.json"), "--output-dir", str(out)]
    if module == "launch":
        argv.append("--no-install")
    result = subprocess.run(
        [sys.executable, "-m", f"training_scripts.{module}", *argv],
        env=job_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "contract 99" in lines[0] and "different versions" in lines[0]
    assert "contract 99" in json.loads((out / contract.FAILURE_FILE).read_text())["message"]


# --- the module graph -----------------------------------------------------------------------


def sibling_imports(path: Path) -> tuple[set[str], list[str]]:
    """(training_scripts modules imported at the top, imports of them inside functions)."""
    tree = ast.parse(path.read_text())
    top: set[str] = set()
    nested: list[str] = []

    def names(node: ast.AST) -> set[str]:
        found: set[str] = set()
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "training_scripts":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("training_scripts."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("training_scripts."):
                    found.add(alias.name.split(".")[1])
        return found

    for node in tree.body:
        top |= names(node)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if names(inner):
                    nested.append(f"{path.name}:{inner.lineno}")
    return top, nested


def test_training_scripts_import_graph_has_no_cycle() -> None:
    modules = {p.stem: p for p in SCRIPTS.glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        top, nested = sibling_imports(path)
        assert not nested, f"sibling imports belong at the top of the module: {nested}"
        graph[name] = top & set(modules)
        text = path.read_text()
        assert "import recipes" not in text and "from recipes" not in text, name
        assert "import providers" not in text and "from providers" not in text, name

    def reachable(start: str) -> set[str]:
        seen: set[str] = set()
        todo = list(graph[start])
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo += graph[name]
        return seen

    for name in graph:
        assert name not in reachable(name), f"import cycle through {name}"
    for name in ("preprocess", "export", "pipeline", "gates", "contract", "launch"):
        assert "train" not in reachable(name), f"{name} imports train"


def test_modules_the_cli_uses_stay_torch_free() -> None:
    probe = (
        "import sys\n"
        "import training_scripts.rows, training_scripts.data, training_scripts.pii\n"
        "import training_scripts.modeling, training_scripts.export, training_scripts.evaluate\n"
        "import training_scripts.packing, training_scripts.secrets, training_scripts.launch\n"
        "import training_scripts.platforms, training_scripts.gates, training_scripts.pipeline\n"
        "import training_scripts.contract, training_scripts.preprocess, training_scripts.train\n"
        "heavy = ('torch', 'transformers', 'peft', 'wandb', 'boto3')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], env=job_env(), capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- topology, commands, installs -----------------------------------------------------------

AZUREML = {
    "AZUREML_RUN_ID": "sleepy_job_1",
    "MASTER_ADDR": "10.0.0.4",
    "MASTER_PORT": "6105",
    "NODE_RANK": "1",
    "RANK": "1",
    "WORLD_SIZE": "2",
}


def test_azureml_topology_from_its_pytorch_variables(tmp_path: Path) -> None:
    topo = topology(AZUREML, devices=8, config_dir=tmp_path)
    assert topo == Topology(
        nnodes=2, node_rank=1, master_addr="10.0.0.4", nproc_per_node=8, master_port=6105
    )
    assert topology(AZUREML, devices=8, config_dir=tmp_path, nnodes=4).nnodes == 4  # --nnodes
    first = topology({**AZUREML, "NODE_RANK": "0", "RANK": "0"}, 8, tmp_path)
    assert first.node_rank == 0
    alone = topology({"AZUREML_RUN_ID": "x"}, 1, tmp_path)
    assert alone == Topology(1, 0, "127.0.0.1", 1)


def test_azureml_commands_use_its_port(tmp_path: Path) -> None:
    topo = topology(AZUREML, devices=8, config_dir=tmp_path, nnodes=2)
    preprocess, train = commands("/mnt/recipe.json", "/mnt/outputs", topo)
    assert preprocess[1:3] == ["-m", "training_scripts.preprocess"]
    assert train[1:3] == ["-m", "torch.distributed.run"]
    for arg in (
        "--nnodes=2",
        "--node-rank=1",
        "--nproc-per-node=8",
        "--master-addr=10.0.0.4",
        "--master-port=6105",
    ):
        assert arg in train
    assert train[-6:] == [
        "-m",
        "training_scripts.train",
        "--config",
        "/mnt/recipe.json",
        "--output-dir",
        "/mnt/outputs",
    ]


def test_master_port_from_the_environment_on_every_platform(tmp_path: Path) -> None:
    assert topology({}, 2, tmp_path).master_port == 29500
    generic = topology({"MASTER_ADDR": "h0", "MASTER_PORT": "7000", "NNODES": "2"}, 2, tmp_path)
    assert (generic.nnodes, generic.master_addr, generic.master_port) == (2, "h0", 7000)
    assert "--master-port=7000" in commands("r.json", None, generic)[1]
    (tmp_path / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1", "algo-2"]})
    )
    sagemaker = topology({"MASTER_PORT": "7001"}, 4, tmp_path)
    assert (sagemaker.master_addr, sagemaker.master_port) == ("algo-1", 7001)


@pytest.mark.parametrize(
    ("reference", "packages"),
    [
        (None, []),
        ("aws-secretsmanager:recipe/wandb", ["boto3"]),
        ("gcp-secretmanager:projects/p/secrets/wandb/versions/1", ["google-auth", "requests"]),
        ("azure-keyvault:https://vault.vault.azure.net/secrets/wandb", ["azure-identity"]),
    ],
)
def test_install_adds_what_the_secret_store_needs(reference: str | None, packages: list) -> None:
    env = {secrets.REFERENCE_ENV: reference} if reference else {}
    command = install_command(env, Path("/code/training_scripts/requirements.txt"))
    assert command == [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "-r",
        "/code/training_scripts/requirements.txt",
        *packages,
    ]


def test_no_store_package_when_the_key_is_given() -> None:
    env = {secrets.REFERENCE_ENV: "azure-keyvault:https://v/secrets/s", "WANDB_API_KEY": "k"}
    assert secrets.required_packages(env) == []
    assert secrets.resolve(env) == {}


def test_exit_status_of_a_signalled_child() -> None:
    assert launch.exit_status(0) == 0
    assert launch.exit_status(1) == 1
    assert launch.exit_status(-signal.SIGTERM) == 143


FORWARDER = """
import os, sys
from training_scripts.launch import Forwarder
forwarder = Forwarder()
forwarder.install()
child = sys.argv[1]
sys.exit(forwarder.run([[sys.executable, "-c", child], ["touch", sys.argv[2]]], os.environ))
"""

CHILD = """
import signal, sys, time
from pathlib import Path
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
Path({ready!r}).write_text("ready")
time.sleep(60)
"""


def test_forwarder_passes_sigterm_to_the_child_and_stops(tmp_path: Path) -> None:
    ready, after = tmp_path / "ready", tmp_path / "second-command-ran"
    proc = subprocess.Popen(
        [sys.executable, "-c", FORWARDER, CHILD.format(ready=str(ready)), str(after)],
        env=job_env(),
        start_new_session=True,  # the signal goes to the forwarder alone
    )
    try:
        deadline = time.time() + 30
        while not ready.exists():
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        # The child exits 0 on SIGTERM; the launcher still reports the stop.
        assert proc.wait(timeout=15) == 143
        assert not after.exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


# --- SIGTERM through launch reaches the trainer -----------------------------------------------


def job_config(recipe_path: Path) -> dict[str, Any]:
    """recipe.json as the orchestrator writes it (the resolved recipe under the contract)."""
    from recipes.loader import load_recipe

    recipe = load_recipe(recipe_path).resolved()
    return {
        "contract": contract.SUPPORTED_CONTRACT,
        "run": {"id": "sigterm-1", "provider": "local", "recipe_name": "tiny", "tags": {}},
        "recipe": recipe.model_dump(mode="json"),
    }


def steps_logged(out: Path) -> list[int]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [r["step"] for r in records if "loss" in r]


def start_launch(config: Path, out: Path, log: Path) -> subprocess.Popen:
    argv = ["--config", str(config), "--output-dir", str(out), "--no-install"]
    return subprocess.Popen(
        [sys.executable, "-m", "training_scripts.launch", *argv],
        env=job_env(),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # as a container's first process: only it is signalled
    )


@pytest.mark.slow
def test_sigterm_to_launch_checkpoints_and_resumes(
    tmp_path: Path, small_data: Path, write_recipe
) -> None:
    recipe = tiny_recipe(
        small_data,
        training={"max_steps": 400, "epochs": 100, "save_every_steps": 50},
        eval={"golden": None},
    )
    config = tmp_path / "recipe.json"
    config.write_text(json.dumps(job_config(write_recipe(recipe))))
    out, log = tmp_path / "out", tmp_path / "launch.log"

    proc = start_launch(config, out, log)
    try:
        deadline = time.time() + 300
        while not steps_logged(out):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, "no training step within 300 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)  # the launcher alone, as a platform's stop does
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert code == 143, text[-3000:]
    stopped_at = max(steps_logged(out))
    assert stopped_at < 400
    # Not a multiple of save_every_steps: this checkpoint was written because of the signal.
    saved = sorted(p.name for p in (out / "checkpoints").glob("step-*"))
    assert saved and saved[-1] == f"step-{stopped_at:08d}", (saved, stopped_at)
    assert f"stopped by SIGTERM at step {stopped_at}/400" in text
    failure = json.loads((out / contract.FAILURE_FILE).read_text())["message"]
    assert "training.resume: auto continues" in failure

    # Restarted, it continues from that checkpoint; stop it again once it has shown so.
    proc = start_launch(config, out, log)
    try:
        deadline = time.time() + 300
        while max(steps_logged(out)) <= stopped_at:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, "the resumed run made no step within 300 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert f"resumed from step-{stopped_at:08d}: continuing at step {stopped_at}/400" in text
    steps = steps_logged(out)
    restart = steps.index(stopped_at) + 1
    assert steps[restart] == stopped_at + 1  # not from step 0
