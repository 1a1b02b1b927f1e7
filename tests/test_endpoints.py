"""Endpoints from a run, through the use cases and the CLI: which runs may be deployed,
what the plan shows, the monthly budget guard, and a real local endpoint deployed,
invoked with the official OpenAI client, found again, and deleted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recipes.app import endpoints
from recipes.cost.catalog import load as load_catalog
from recipes.cost.serving import HOURS_PER_MONTH, check_endpoint_budget, estimate_endpoint
from recipes.errors import RecipeInputError
from recipes.loader import load_recipe
from tests.conftest import CLI, finished_run, tiny_recipe

DEPLOY = {"endpoint": "tiny-triage"}


@pytest.fixture
def deployable(home: Path, write_recipe, small_data: Path, adapter_dir: Path) -> str:
    return finished_run(home, write_recipe(tiny_recipe(small_data, deploy=DEPLOY)), adapter_dir)


# --- which runs may be deployed --------------------------------------------------------------


def test_plan_of_a_local_run_shows_the_server_command(deployable: str, home: Path) -> None:
    plan = endpoints.prepare(deployable).plan
    assert (plan.provider, plan.endpoint) == ("local", "tiny-triage")
    assert plan.artifact.kind == "adapter" and plan.artifact.base_model == "builtin:tiny-chat"
    assert plan.serving.adapters == {"tiny": "adapter"}
    request, route = plan.requests
    assert (request.api, route.api) == ("local:serve", "local:route")
    assert request.body["command"][:3] == ["recipe", "serve", str(home / deployable)]
    assert route.body["upstream"] == {plan.deployment: request.body["url"]}
    # Deterministic: the same run and deploy block give the same deployment and port.
    again = endpoints.prepare(deployable).plan
    assert (again.deployment, again.requests) == (plan.deployment, plan.requests)
    assert plan.tags["run_id"] == deployable and plan.tags["endpoint"] == "tiny-triage"


@pytest.mark.parametrize(
    ("state", "passed", "expected"),
    [
        ("failed", None, "run tiny-.* failed; only"),
        ("cancelled", None, "cancelled; only"),
        ("succeeded", False, "failed its eval gates"),
    ],
)
def test_only_a_run_that_succeeded_and_passed_its_gates_is_deployed(
    home: Path, write_recipe, small_data: Path, adapter_dir: Path, state, passed, expected
) -> None:
    recipe = write_recipe(tiny_recipe(small_data, deploy=DEPLOY))
    run_id = finished_run(home, recipe, adapter_dir, state=state, passed=passed)
    with pytest.raises(RecipeInputError, match=expected) as info:
        endpoints.prepare(run_id)
    assert info.value.problems[0].field == "RUN_ID"


def test_merge_needs_the_merged_model(
    home: Path, write_recipe, small_data: Path, adapter_dir: Path
) -> None:
    recipe = write_recipe(tiny_recipe(small_data, deploy={**DEPLOY, "merge": True}))
    run_id = finished_run(home, recipe, adapter_dir)
    with pytest.raises(RecipeInputError, match=r"no merged/.*--merge"):
        endpoints.prepare(run_id)


def test_a_run_is_served_where_it_was_trained(deployable: str) -> None:
    with pytest.raises(RecipeInputError, match="trained on local") as info:
        endpoints.prepare(deployable, provider="aws")
    assert info.value.problems[0].field == "--provider"


def test_a_recipe_without_deploy_block_is_located(
    home: Path, write_recipe, small_data: Path, adapter_dir: Path, cli: CLI
) -> None:
    recipe = write_recipe(tiny_recipe(small_data))
    run_id = finished_run(home, recipe, adapter_dir)
    result = cli("endpoint", "plan", run_id)
    assert result.returncode == 2
    assert f"{recipe}:" in result.stderr and "deploy" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("endpoint", "plan", "no-such-run"),
        ("endpoint", "status", "no-such-endpoint"),
        ("endpoint", "invoke", "no-such-endpoint", "hi"),
        ("endpoint", "delete", "no-such-endpoint"),
        ("endpoint", "invoke", "x", "hi", "--max-tokens", "0"),
        ("serve", "no-such-run"),
        ("serve", "builtin:tiny-chat", "--adapter", "no-equals-sign"),
        ("serve", "builtin:tiny-chat", "--port", "70000"),
    ],
)
def test_bad_endpoint_input_exits_2_in_one_line(cli: CLI, args: tuple[str, ...]) -> None:
    result = cli(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr


# --- the monthly budget ----------------------------------------------------------------------


def test_estimate_is_price_times_replicas() -> None:
    offer = load_catalog().find("aws", "ml.g5.2xlarge")
    assert offer is not None
    price = offer.price("us-east-1").on_demand  # type: ignore[union-attr]
    est = estimate_endpoint(offer, "us-east-1", 2, 5, "v")
    assert est.hourly_usd == round(2 * price, 2)
    assert est.monthly_usd == round(2 * price * HOURS_PER_MONTH, 2)
    assert est.max_monthly_usd == round(5 * price * HOURS_PER_MONTH, 2)


def test_budget_guard_refuses_unless_overridden(write_recipe, small_data: Path) -> None:
    recipe_file = write_recipe(
        tiny_recipe(small_data, deploy=DEPLOY, budget={"max_usd": 10, "max_monthly_usd": 2000})
    )
    recipe = load_recipe(recipe_file).resolved()
    offer = load_catalog().find("aws", "ml.g5.2xlarge")
    est = estimate_endpoint(offer, "us-east-1", 1, 2, "v")  # type: ignore[arg-type]
    with pytest.raises(RecipeInputError, match="exceeds budget.max_monthly_usd") as info:
        check_endpoint_budget(recipe, est, override=False)
    assert info.value.problems[0].field == "budget.max_monthly_usd"
    assert "deploying anyway" in check_endpoint_budget(recipe, est, override=True)
    cheap = estimate_endpoint(offer, "us-east-1", 1, 1, "v")  # type: ignore[arg-type]
    assert check_endpoint_budget(recipe, cheap, override=False) == ""


# --- a real local endpoint -------------------------------------------------------------------


@pytest.mark.slow
def test_local_endpoint_deploy_invoke_again_delete(cli: CLI, deployable: str) -> None:
    from openai import OpenAI

    shown = json.loads(cli("endpoint", "plan", deployable, "--format", "json").stdout)
    first = cli("endpoint", "deploy", deployable, "--format", "json", timeout=300)
    assert first.returncode == 0, first.stderr
    deployed = json.loads(first.stdout)
    assert deployed["deployment"] == shown["deployment"] and not deployed["existing"]
    try:
        status = cli.json("endpoint", "status", "tiny-triage")
        assert status["state"] == "ready"
        assert [r["api"] for r in shown["requests"]] == ["local:serve", "local:route"]
        assert status["url"] == shown["requests"][1]["body"]["url"]  # the endpoint's router
        assert status["traffic"] == {shown["deployment"]: 100}
        client = OpenAI(base_url=status["url"] + "/v1", api_key="unused", max_retries=0)
        names = {m.id for m in client.models.list().data}
        assert {"builtin:tiny-chat", "tiny"} <= names
        answer = cli("endpoint", "invoke", "tiny-triage", "My card was stolen", "--max-tokens", "4")
        assert answer.returncode == 0, answer.stderr
        # A second deploy of the same plan finds the running server: nothing new.
        again = json.loads(cli("endpoint", "deploy", deployable, "--format", "json").stdout)
        assert again["existing"] and again["created"] == []
    finally:
        deleted = cli("endpoint", "delete", "tiny-triage")
    assert deleted.returncode == 0, deleted.stderr
    assert cli("endpoint", "status", "tiny-triage").returncode == 2  # forgotten


# --- deploy.merge: what the training job writes for the endpoint -----------------------------


def test_merge_writes_a_model_that_answers_like_base_plus_adapter(
    tmp_path: Path, write_recipe, small_data: Path, adapter_dir: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from training_scripts import modeling
    from training_scripts.train import save_merged

    recipe_file = write_recipe(tiny_recipe(small_data, deploy={**DEPLOY, "merge": True}))
    recipe = load_recipe(recipe_file).resolved().model_dump(mode="json")
    recipe["model"]["dtype"] = "float32"  # compare exactly on the CPU
    base = modeling.resolve_base("builtin:tiny-chat")
    tokenizer = modeling.load_tokenizer(base, None, False)
    # A non-zero adapter: a fresh LoRA's B matrices are zero, which would prove nothing.
    fp32 = {"dtype": torch.float32}  # the builtin's config says bfloat16
    with_adapter = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base, **fp32), adapter_dir
    )
    torch.manual_seed(0)
    for name, param in with_adapter.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.05)
    nonzero = tmp_path / "adapter"
    with_adapter.save_pretrained(nonzero)

    save_merged(recipe, nonzero, tokenizer, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", **fp32)
    ids = torch.tensor([tokenizer.encode("My card was stolen")])
    with torch.no_grad():
        expected = with_adapter(ids).logits
        got = merged(ids).logits
        plain = AutoModelForCausalLM.from_pretrained(base, **fp32)(ids).logits
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(got, plain, atol=1e-3)  # the adapter is in the weights


def test_the_artifact_is_what_the_run_trained(
    home: Path, write_recipe, small_data: Path, adapter_dir: Path, tmp_path: Path
) -> None:
    recipe_file = write_recipe(tiny_recipe(small_data, deploy=DEPLOY))
    run_id = finished_run(home, recipe_file, adapter_dir)
    # The file changed after training: the model and name still come from the run.
    edited = tiny_recipe(small_data, deploy=DEPLOY)
    edited["name"], edited["method"] = "renamed", {"kind": "lora", "r": 64, "alpha": 8}
    recipe_file.write_text(json.dumps(edited))
    plan = endpoints.prepare(run_id).plan
    assert (plan.artifact.name, plan.artifact.lora_rank) == ("tiny", 4)
    assert plan.artifact.base_model == "builtin:tiny-chat"
    # Overrides may change how it is served, never what was trained.
    assert endpoints.prepare(run_id, overrides=["deploy.max_model_len=128"]).plan
    with pytest.raises(RecipeInputError, match="cannot change for a deploy") as info:
        endpoints.prepare(run_id, overrides=["model.base=Qwen/Qwen2.5-0.5B-Instruct"])
    assert info.value.problems[0].field == "model.base"


def test_the_recipe_is_found_from_another_directory(
    cli: CLI, home: Path, write_recipe, small_data: Path, adapter_dir: Path, tmp_path: Path
) -> None:
    recipe_file = write_recipe(tiny_recipe(small_data, deploy=DEPLOY))
    run_id = finished_run(home, recipe_file, adapter_dir)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cli.cwd = elsewhere
    result = cli("endpoint", "plan", run_id, "--format", "json")
    assert result.returncode == 0, result.stderr


def test_a_port_taken_by_another_program_is_refused_and_nothing_stays(
    deployable: str, home: Path
) -> None:
    import socket

    from providers.base import ProviderError

    plan = endpoints.prepare(deployable).plan
    port = int(plan.requests[0].body["url"].rsplit(":", 1)[1])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(ProviderError, match=f"port {port} .* in use by another program"):
            endpoints.deploy(deployable)
    assert not (home / "endpoints" / "tiny-triage").exists()
    assert endpoints.list_endpoints() == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("endpoint", "plan", "RUN", "--provider", "bogus"), "unknown provider 'bogus'"),
        (("endpoint", "plan", "RUN", "model.base=x"), "cannot change for a deploy"),
        (("serve", "builtin:tiny-chat", "--adapter", "a=x", "--adapter", "a=y"), "given twice"),
    ],
)
def test_endpoint_messages_name_the_real_problem(
    cli: CLI, deployable: str, args: tuple[str, ...], says: str
) -> None:
    result = cli(*(deployable if a == "RUN" else a for a in args))
    assert result.returncode == 2 and says in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_recipe_home_that_is_a_file_is_said_so(cli: CLI, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    cli.env["RECIPE_HOME"] = str(afile)
    result = cli("serve", "some-run")
    assert result.returncode == 2 and "RECIPE_HOME" in result.stderr, result.stderr
