"""Local plans: submit writes exactly what plan showed; golden plans of every backend.
(Pure plans without secrets, on every backend: tests/test_backend_contract.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from providers.base import RunIdentity
from providers.local.runs import LocalRuns
from providers.local.runtime import LAUNCH, read_json
from recipes.errors import RecipeInputError
from recipes.loader import load_recipe
from tests.conftest import CATALOG, CLOUD_DEFAULTS, REPO

IDENTITY = RunIdentity(run_id="quickstart-fixed", recipe_name="quickstart", recipe_hash="0" * 64)


def quickstart_plan(root: Path, overrides: list[str] | None = None):
    loaded = load_recipe(CATALOG / "quickstart.yaml", overrides)
    return LocalRuns(root=root).plan(loaded.resolved(), IDENTITY)


def test_submit_sends_exactly_the_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spawned: list[list[str]] = []

    class FakePopen:
        def __init__(self, argv, **kwargs):
            spawned.append(argv)
            self.pid = 999999

    monkeypatch.setattr("providers.local.runs.subprocess.Popen", FakePopen)
    plan = quickstart_plan(tmp_path / "runs")
    LocalRuns(root=tmp_path / "runs").submit(plan)
    body = plan.requests[0].body
    run_dir = Path(body["run_dir"])
    assert read_json(run_dir / "recipe.json") == body["files"]["recipe.json"]
    launch = {"steps": body["steps"], "env": body["env"], "max_runtime_s": body["max_runtime_s"]}
    assert read_json(run_dir / LAUNCH) == launch
    assert spawned and spawned[0][-1] == str(run_dir)


def test_submit_refuses_an_existing_run_dir(tmp_path: Path) -> None:
    from providers.base import ProviderError

    plan = quickstart_plan(tmp_path / "runs")
    Path(plan.requests[0].body["run_dir"]).mkdir(parents=True)
    with pytest.raises(ProviderError, match="already exists"):
        LocalRuns(root=tmp_path / "runs").submit(plan)


def test_job_config_is_the_resolved_recipe(tmp_path: Path) -> None:
    config = quickstart_plan(tmp_path).requests[0].body["files"]["recipe.json"]
    assert config["contract"] == 1
    assert config["run"]["id"] == "quickstart-fixed"
    assert Path(config["recipe"]["data"]["train"]).is_absolute()
    assert Path(config["recipe"]["data"]["train"]).is_file()
    assert config["run"]["tags"]["recipe_hash"] == "0" * 12


def test_two_processes_use_torchrun(tmp_path: Path) -> None:
    plan = quickstart_plan(tmp_path, ["compute.local.processes=2"])
    preprocess, launch = plan.requests[0].body["steps"]
    assert preprocess[1:3] == ["-m", "training_scripts.preprocess"]  # tokenized once, cached
    assert launch[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    assert plan.compute["world_size"] == 2


def test_capability_gaps_are_listed_together(tmp_path: Path) -> None:
    loaded = load_recipe(CATALOG / "quickstart.yaml", ["compute.spot=true", "compute.nodes=2"])
    with pytest.raises(RecipeInputError) as info:
        LocalRuns(root=tmp_path).plan(loaded.resolved(), IDENTITY)
    fields = {p.field for p in info.value.problems}
    assert fields == {"compute.spot", "compute.nodes"}
    assert "local cannot run on spot capacity" in info.value.render()


# --- golden plans -------------------------------------------------------------------------

GOLDEN = REPO / "tests" / "golden"


def normalized(plan: dict) -> dict:
    """Replace what differs between machines (paths, interpreter, cores) with markers."""
    text = json.dumps(plan, indent=2, sort_keys=True)
    text = text.replace(str(REPO), "<repo>")
    data = json.loads(text)
    body = data["requests"][0]["body"]
    for step in body["steps"]:
        step[0] = "<python>"
    body["env"]["RECIPE_CACHE_DIR"] = "<runs>/cache"
    body["run_dir"] = "<runs>/" + Path(body["run_dir"]).name
    body["env"]["OMP_NUM_THREADS"] = "<threads>"
    data["compute"]["threads_per_process"] = "<threads>"
    return data


# azure-ai-ml adds the submitting checkout's git state to a job; it differs per commit.
GIT_PROPERTIES = (
    "mlflow.source.git.branch",
    "mlflow.source.git.commit",
    "mlflow.source.git.repoURL",
    "azureml.git.dirty",
)


def cloud_normalized(plan: dict) -> dict:
    """Cloud plans differ between machines only in paths and the scripts archive's hash."""
    for request in plan["requests"]:
        properties = request["body"].get("job", {}).get("properties", {}).get("properties", {})
        for key in GIT_PROPERTIES:  # present or not depending on the checkout's remote
            properties.pop(key, None)
    text = json.dumps(plan, indent=2, sort_keys=True).replace(str(REPO), "<repo>")
    for request in plan["requests"]:
        body = request["body"]
        if body.get("source") == "training_scripts/":
            text = text.replace(body["sha256"], "<scripts-sha256>")
            text = text.replace(body["sha256"][:16], "<scripts-sha16>")
            text = text.replace(f'"bytes": {body["bytes"]}', '"bytes": "<scripts-bytes>"')
    return json.loads(text)


def golden_plan(path: Path, provider: str, root: Path) -> dict:
    """The normalized plan, or the planning error for a recipe this backend cannot honour."""
    from providers import registry
    from providers.staging import cloud_identity

    loaded = load_recipe(path)
    name, content = loaded.recipe.name, loaded.content_hash
    if provider == "local":
        identity = RunIdentity(run_id=f"{name}-golden", recipe_name=name, recipe_hash=content)
        backend = LocalRuns(root=root)
    else:
        identity = cloud_identity(name, content)
        backend = registry.for_recipe(provider, loaded.recipe)
    try:
        plan = backend.plan(loaded.resolved(), identity).to_dict()
    except RecipeInputError as exc:
        return {"error": loaded.locate(exc).render().replace(str(REPO), "<repo>").splitlines()}
    return normalized(plan) if provider == "local" else cloud_normalized(plan)


@pytest.mark.parametrize("provider", ["local", "aws", "azure", "gcp"])
@pytest.mark.parametrize("path", sorted(CATALOG.glob("*.yaml")), ids=lambda p: p.stem)
def test_golden_plans(
    path: Path,
    provider: str,
    tmp_path: Path,
    update_golden: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in CLOUD_DEFAULTS.items():
        monkeypatch.setenv(key, value)
    plan = golden_plan(path, provider, tmp_path)
    golden = GOLDEN / provider / f"{path.stem}.json"
    if update_golden:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(json.dumps(plan, indent=2, sort_keys=True) + "\n")
    assert golden.exists(), "no golden file: run `make golden` and review the diff"
    assert plan == json.loads(golden.read_text()), (
        "plan changed: run `make golden`, review the diff"
    )


def test_processes_must_divide_the_batch(cli, tmp_path: Path) -> None:
    result = cli("plan", CATALOG / "quickstart.yaml", "compute.local.processes=3")
    assert result.returncode == 2
    assert "command line: compute.local.processes" in result.stderr
    assert "multiple of micro_batch_size x processes (8 x 3)" in result.stderr


def test_capability_errors_point_at_the_recipe_line(cli, tmp_path: Path) -> None:
    recipe = tmp_path / "spot.yaml"
    text = (CATALOG / "quickstart.yaml").read_text()
    recipe.write_text(text.replace("  accelerator: cpu", "  accelerator: cpu\n  spot: true"))
    (tmp_path / "data").symlink_to(CATALOG / "data")
    result = cli("plan", recipe)
    assert result.returncode == 2
    line = next(i for i, t in enumerate(recipe.read_text().splitlines(), 1) if "spot:" in t)
    assert f"{recipe}:{line}:3: compute.spot: local cannot run on spot capacity" in result.stderr
