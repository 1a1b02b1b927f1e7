"""Parity: every catalog recipe, planned on every backend, means the same job.

Each plan is read back into one common view taken from what would actually be sent
(request bodies, recipe.json): the training entry, the recipe the script gets, world
size, data inputs, tags, spot, checkpointing, max runtime and environment. Views must
be equal; the intended differences are declared in DIFFERENCES, each with its reason.
A recipe a backend cannot honour must fail planning with a capability error there.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest

from providers.base import Plan, RunIdentity
from providers.local.runs import LocalRuns
from providers.registry import PROVIDERS, for_recipe
from providers.staging import cloud_identity
from recipes.errors import RecipeInputError
from recipes.loader import load_recipe
from tests.conftest import CATALOG, CLOUD_DEFAULTS

# (view field, provider) -> why that backend differs on purpose.
DIFFERENCES: dict[tuple[str, str], str] = {
    ("world_size", "local"): "local runs compute.local.processes on this machine's devices; "
    "clouds run gpus_per_node x nodes",
    ("env", "local"): "local adds this machine's OMP_NUM_THREADS and a shared RECIPE_CACHE_DIR",
    ("entry", "local"): "local runs the trainer under its supervisor (preprocess + torchrun "
    "itself; secrets from the user's environment, nothing to install)",
}
CLOUD_ENTRY = "training_scripts.launch"  # secrets, install, tokenize once, torchrun per node
CLOUD_ONLY_ENV = {"PYTHONPATH"}  # HyperPod pods import the fetched scripts from there
SECRETS = {
    "WANDB_API_KEY": "wandb-key-must-not-travel",
    "AWS_SECRET_ACCESS_KEY": "aws-key-must-not-travel",
}

# Catalog recipes, plus variants that exercise GPUs, nodes and spot on every cloud.
VARIANTS = {
    "quickstart-a100-spot-2-nodes": (
        CATALOG / "quickstart.yaml",
        [
            "compute.accelerator=A100-80GB",
            "compute.gpus_per_node=8",
            "compute.nodes=2",
            "compute.spot=true",
            "training.batch_size=128",
            "compute.max_runtime=12h",
        ],
    ),
    "hyperpod-on-t4": (
        CATALOG / "support-triage-hyperpod.yaml",
        ["compute.accelerator=T4", "compute.aws.instance_type=ml.g4dn.12xlarge"],
    ),
    "multinode-on-t4": (
        CATALOG / "support-triage-multinode.yaml",
        [
            "compute.accelerator=T4",
            "compute.gpus_per_node=4",
            "compute.gcp.wandb_secret=wandb-api-key",
            "compute.azure.wandb_secret=https://kv-ml.vault.azure.net/secrets/wandb-api-key",
        ],
    ),
}
CASES = {p.stem: (p, []) for p in sorted(CATALOG.glob("*.yaml"))} | VARIANTS


@dataclass(frozen=True)
class View:
    entry: str
    recipe: str  # recipe.json's recipe, data locations reduced to file names (JSON text)
    world_size: int
    data: tuple[str, ...]  # inputs the job receives, by file name
    tags: tuple[tuple[str, str], ...]  # as attached, canonicalized (lowercase, _ for others)
    spot: bool
    checkpoints: bool
    max_runtime_s: int | None
    env: tuple[str, ...]  # variable names (values differ: run ids, secret store schemes)


def plan_on(provider: str, path: Path, overrides: list[str], tmp_path: Path) -> Plan:
    loaded = load_recipe(path, overrides)
    recipe = loaded.resolved()
    if provider == "local":
        identity = RunIdentity("local-run", recipe.name, loaded.content_hash)
        return LocalRuns(root=tmp_path).plan(recipe, identity)
    identity = cloud_identity(recipe.name, loaded.content_hash)
    return for_recipe(provider, recipe).plan(recipe, identity)


def view(plan: Plan) -> View:
    reader = {"local": _local, "aws": _aws, "azure": _azure, "gcp": _gcp}[plan.provider]
    config, parts = reader(plan)
    recipe = dict(config["recipe"])
    recipe["data"] = {
        **recipe["data"],
        **{k: _name(recipe["data"][k]) for k in ("train", "validation")},
    }
    recipe["eval"] = {**recipe["eval"], "golden": _name(recipe["eval"]["golden"])}
    tags = _canonical(parts["tags"])
    # Run ids differ by design (local: time-stamped; clouds: from the content); each backend
    # must tag with its own.
    assert tags.pop("run_id") == _canonical({"x": plan.identity.run_id})["x"], plan.provider
    return View(
        entry=parts["entry"],
        recipe=json.dumps(recipe, sort_keys=True),
        world_size=parts["world_size"],
        data=tuple(sorted(_name(v) for v in parts["data"])),
        tags=tuple(sorted(tags.items())),
        spot=parts["spot"],
        checkpoints=parts["checkpoints"],
        max_runtime_s=parts["max_runtime_s"],
        env=tuple(sorted(set(parts["env"]) - CLOUD_ONLY_ENV)),
    )


def _name(location: Any) -> Any:
    return location.rsplit("/", 1)[-1] if isinstance(location, str) else location


def _canonical(tags: dict[str, str]) -> dict[str, str]:
    def clean(text: str) -> str:
        return re.sub(r"[^a-z0-9_-]", "_", text.lower())

    return {clean(k): clean(v) for k, v in tags.items()}


def _entry(text: str) -> str:
    """The module a cloud job's shell command hands control to (its last `python -m X`)."""
    modules = re.findall(r"python3? -m ([\w.]+)", text)
    return modules[-1] if modules else "?"


def _uploaded_config(plan: Plan) -> dict[str, Any]:
    return next(
        r.body["content"] for r in plan.requests if r.body.get("uri", "").endswith("recipe.json")
    )


def _data_inputs(config: dict[str, Any]) -> list[str]:
    recipe = config["recipe"]
    locations = [recipe["data"]["train"], recipe["data"]["validation"], recipe["eval"]["golden"]]
    return [loc for loc in locations if isinstance(loc, str)]


def _local(plan: Plan) -> tuple[dict[str, Any], dict[str, Any]]:
    body = plan.requests[0].body
    config = body["files"]["recipe.json"]
    return config, {
        "entry": body["steps"][-1][len(body["steps"][-1]) - body["steps"][-1][::-1].index("-m")],
        "world_size": plan.compute["world_size"],
        "data": [loc for loc in _data_inputs(config) if Path(loc).is_file()],
        "tags": config["run"]["tags"],
        "spot": False,
        "checkpoints": True,  # <run_dir>/checkpoints
        "max_runtime_s": body["max_runtime_s"],  # the supervisor enforces it
        "env": body["env"],
    }


def _aws(plan: Plan) -> tuple[dict[str, Any], dict[str, Any]]:
    create = plan.requests[-1]
    config = _uploaded_config(plan)
    if create.api == "k8s:CreateHyperPodPyTorchJob":
        manifest = create.body["manifest"]
        spec = manifest["spec"]
        container = spec["replicaSpecs"][0]["template"]["spec"]["containers"][0]
        fetched = re.findall(r"'(s3://[^']+)'", container["command"][2])
        return config, {
            "entry": _entry(container["command"][2]),
            "world_size": int(spec["nprocPerNode"]) * spec["replicaSpecs"][0]["replicas"],
            "data": [u for u in fetched if u in _data_inputs(config)],
            "tags": manifest["metadata"]["annotations"],
            "spot": False,
            "checkpoints": "--output-dir /" in container["command"][2],  # shared FSx
            "max_runtime_s": spec["runPolicy"]["activeDeadlineSeconds"],
            "env": [
                e["name"] for e in container["env"] if not e["name"].startswith("RECIPE_CHANNEL_")
            ],
        }
    body = create.body
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in body["InputDataConfig"]
    }
    resources = body["ResourceConfig"]
    return config, {
        "entry": _entry(json.dumps(body["AlgorithmSpecification"]["ContainerEntrypoint"])),
        "world_size": max(1, plan.compute["gpus_per_node"]) * resources["InstanceCount"],
        "data": [uri for name, uri in channels.items() if name not in ("code", "recipe")],
        "tags": {t["Key"]: t["Value"] for t in body["Tags"]},
        "spot": body["EnableManagedSpotTraining"],
        "checkpoints": bool(body.get("CheckpointConfig", {}).get("S3Uri")),
        "max_runtime_s": body["StoppingCondition"]["MaxRuntimeInSeconds"],
        "env": body["Environment"],
    }


def _azure(plan: Plan) -> tuple[dict[str, Any], dict[str, Any]]:
    props = plan.requests[-1].body["job"]["properties"]
    config = _uploaded_config(plan)
    return config, {
        "entry": _entry(props["command"]),
        # One launch process per node, which starts one trainer per GPU of the node.
        "world_size": props["distribution"]["processCountPerInstance"]
        * max(1, plan.compute["gpus_per_node"])
        * props["resources"]["instanceCount"],
        "data": [i["uri"] for k, i in props["inputs"].items() if k not in ("code", "recipe")],
        "tags": props["tags"],
        # Spot is the AmlCompute cluster's tier on Azure; the plan must say so.
        "spot": any("low-priority" in note for note in plan.notes),
        "checkpoints": "model" in props["outputs"] and "${{outputs.model}}" in props["command"],
        "max_runtime_s": _iso_seconds(props["limits"]["timeout"]),
        "env": props["environmentVariables"],
    }


def _gcp(plan: Plan) -> tuple[dict[str, Any], dict[str, Any]]:
    job = plan.requests[-1].body["customJob"]
    spec = job["jobSpec"]
    pools = spec["workerPoolSpecs"]
    container = pools[0]["containerSpec"]
    config = _uploaded_config(plan)
    devices = max(1, pools[0]["machineSpec"].get("acceleratorCount", 0))
    return config, {
        "entry": _entry(json.dumps(container.get("command", []) + container.get("args", []))),
        "world_size": devices * sum(int(p.get("replicaCount", 0)) for p in pools),
        "data": [loc for loc in _data_inputs(config) if loc.startswith("gs://")],  # read via /gcs
        "tags": job["labels"],
        "spot": spec.get("scheduling", {}).get("strategy") == "SPOT",
        "checkpoints": bool(spec.get("baseOutputDirectory", {}).get("outputUriPrefix")),
        "max_runtime_s": int(spec["scheduling"]["timeout"].rstrip("s")),
        "env": [e["name"] for e in container["env"]],
    }


def _iso_seconds(duration: str) -> int:
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", duration)
    assert match, duration
    days, hours, minutes, seconds = (int(x or 0) for x in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def compare(views: dict[str, View]) -> list[str]:
    """Every field on which two backends differ without a declared reason."""
    problems = []
    for f in fields(View):
        values = {p: getattr(v, f.name) for p, v in views.items() if (f.name, p) not in DIFFERENCES}
        if len(set(map(repr, values.values()))) > 1:
            problems.append(
                f"{f.name}: " + "; ".join(f"{p}={v!r}"[:300] for p, v in values.items())
            )
    return problems


@pytest.fixture
def clouds_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {**CLOUD_DEFAULTS, **SECRETS}.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("case", sorted(CASES))
def test_backends_agree(case: str, tmp_path: Path, clouds_configured: None) -> None:
    path, overrides = CASES[case]
    views, refused = {}, {}
    for provider in PROVIDERS:
        try:
            plan = plan_on(provider, path, overrides, tmp_path)
        except RecipeInputError as exc:
            refused[provider] = exc.render()
            assert re.search(r"cannot|no \w+ offer|needs", exc.render()), exc.render()
            continue
        text = json.dumps(plan.to_dict())
        for secret in SECRETS.values():
            assert secret not in text, f"{provider} plan carries a secret"
        views[provider] = view(plan)
    assert views, f"no backend plans {case}: {refused}"
    assert not compare(views), "\n".join(compare(views))
    recipe = load_recipe(path, overrides).resolved()
    for provider, v in views.items():
        # Clouds start the launcher, which runs the trainer; local runs the trainer itself.
        assert v.entry == ("training_scripts.train" if provider == "local" else CLOUD_ENTRY)
        assert v.spot == recipe.compute.spot, provider
        assert len(v.data) >= 2, (provider, v.data)  # train and golden reach the job


def test_every_backend_plans_some_case(clouds_configured: None, tmp_path: Path) -> None:
    planned = set()
    for path, overrides in CASES.values():
        for provider in PROVIDERS:
            try:
                plan_on(provider, path, overrides, tmp_path)
                planned.add(provider)
            except RecipeInputError:
                pass
    assert planned == set(PROVIDERS)


def test_a_dropped_field_breaks_parity(
    clouds_configured: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The suite can fail: an AWS translation that forgets spot is caught."""
    import providers.aws.training_job as aws

    original = aws._training_job_body

    def forgetful(*args: Any, **kwargs: Any) -> dict[str, Any]:
        body = original(*args, **kwargs)
        body["EnableManagedSpotTraining"] = False
        return body

    monkeypatch.setattr(aws, "_training_job_body", forgetful)
    path, overrides = VARIANTS["quickstart-a100-spot-2-nodes"]
    views = {p: view(plan_on(p, path, overrides, tmp_path)) for p in PROVIDERS if p != "local"}
    assert any(problem.startswith("spot:") for problem in compare(views))
