"""Azure ML managed online endpoints: the plan's bodies are azure-ai-ml's own REST models,
deploy PUTs exactly them through the real MLClient (tests/fakes/azure.py answers as ARM
does, long-running operations included), a second deploy creates nothing, a new artifact
moves the traffic and retires the previous deployment, a failure half-way rolls back (and
leaves a serving version alone), invoke reaches the scoring URI with the key, and delete
removes what deploy made. The container's entrypoint runs under bash."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from providers.azure.command_job import CommandJobs
from providers.azure.endpoint import ENTRYPOINT, OnlineEndpoints, parity_view
from providers.base import Artifact, EndpointPlan, EndpointState, ErrorKind, ProviderError
from recipes.loader import load_recipe
from tests.conftest import CATALOG, REPO
from tests.fakes.azure import (
    ENDPOINT_KEY,
    WS_PATH,
    FakeAzureMLEndpoints,
    endpoint_ml_client,
    ml_client,
    point_sdk_at,
)

GOLDEN = REPO / "tests" / "golden" / "endpoint-azure.json"
OVERRIDES = ["deploy.endpoint=support-triage", "deploy.max_replicas=2"]
RUN = "support-triage-a100-1a2b3c4d-1"
ARTIFACT = Artifact(
    run_id=RUN,
    provider="azure",
    uri=f"azureml://jobs/{RUN}/outputs/model",
    kind="adapter",
    base_model="Qwen/Qwen2.5-7B-Instruct",
    name="support-triage-a100",
    lora_rank=32,
)


@pytest.fixture
def azure(monkeypatch: pytest.MonkeyPatch) -> Any:
    with FakeAzureMLEndpoints() as fake:
        point_sdk_at(fake, monkeypatch)
        yield fake


def plan_for(artifact: Artifact = ARTIFACT, overrides: list[str] = OVERRIDES) -> EndpointPlan:
    recipe = load_recipe(CATALOG / "support-triage-a100.yaml", overrides).resolved()
    return OnlineEndpoints().plan_endpoint(recipe, artifact)


def body(plan: EndpointPlan, api: str) -> dict[str, Any]:
    return next(r.body for r in plan.requests if r.api == api)


# --- plan ------------------------------------------------------------------------------------


def test_golden_plan(update_golden: bool) -> None:
    plan = plan_for().to_dict()
    if update_golden:
        GOLDEN.write_text(json.dumps(plan, indent=2, sort_keys=True) + "\n")
    assert plan == json.loads(GOLDEN.read_text()), "plan changed: --update-golden, review"


def test_plan_order_names_and_settings() -> None:
    plan = plan_for()
    assert [r.api for r in plan.requests] == [
        "storage:upload",
        "azureml:CreateOrUpdateEnvironmentVersion",
        "azureml:CreateOrUpdateModelVersion",
        "azureml:CreateOrUpdateOnlineEndpoint",
        "azureml:CreateOrUpdateOnlineDeployment",
        "azureml:UpdateOnlineEndpointTraffic",
        "azureml:DeleteOtherOnlineDeployments",
    ]
    assert plan.requests[-1].body == {"endpoint": "support-triage", "keep": plan.deployment}
    assert not any("at 0%" in n or "still billed" in n for n in plan.notes)
    assert any("every other deployment of 'support-triage' is deleted" in n for n in plan.notes)
    version = plan.deployment[1:]
    assert plan.endpoint == "support-triage" and plan.deployment == f"v{version}"
    assert 3 <= len(plan.deployment) <= 32  # Azure's deployment name limit
    deployment = body(plan, "azureml:CreateOrUpdateOnlineDeployment")["deployment"]
    props = deployment["properties"]
    assert props["model"] == f"{WS_PATH}/models/support-triage/versions/{version}"
    assert props["environmentId"].endswith(f"/environments/support-triage-vllm/versions/{version}")
    assert props["endpointComputeType"] == "Managed" and deployment["sku"]["capacity"] == 1
    assert props["requestSettings"] == {
        "maxConcurrentRequestsPerInstance": 32,
        "requestTimeout": "PT3M",
    }
    env = body(plan, "azureml:CreateOrUpdateEnvironmentVersion")["environment"]["properties"]
    assert env["inferenceConfig"]["scoringRoute"] == {"port": 8000, "path": "/v1/chat/completions"}
    assert env["inferenceConfig"]["livenessRoute"]["path"] == "/health"
    endpoint = body(plan, "azureml:CreateOrUpdateOnlineEndpoint")["endpoint"]
    assert endpoint["properties"]["authMode"] == "Key" and endpoint["properties"]["traffic"] == {}
    traffic = body(plan, "azureml:UpdateOnlineEndpointTraffic")["endpoint"]["properties"]
    assert traffic["traffic"] == {plan.deployment: 100}
    assert any("Azure Monitor autoscale" in n and "--max-count 2" in n for n in plan.notes)


def test_bodies_are_the_sdks_rest_models() -> None:
    """Each body parses as azure-ai-ml's ARM model and reads back as its entity unchanged."""
    from azure.ai.ml._restclient.arm_ml_service import models as rest
    from azure.ai.ml.entities import Environment, Model, OnlineDeployment, OnlineEndpoint

    from providers.azure import sdk

    plan = plan_for()
    arm = f"{WS_PATH}"
    version = plan.deployment[1:]
    cases = [
        ("azureml:CreateOrUpdateEnvironmentVersion", "environment", rest.EnvironmentVersion),
        ("azureml:CreateOrUpdateModelVersion", "model", rest.ModelVersion),
        ("azureml:CreateOrUpdateOnlineEndpoint", "endpoint", rest.OnlineEndpoint),
        ("azureml:CreateOrUpdateOnlineDeployment", "deployment", rest.OnlineDeployment),
    ]
    for api, key, model in cases:
        planned = body(plan, api)[key]
        parsed = model(planned)
        assert sdk._rest(parsed) == planned, api  # nothing the model does not know
    env = Environment._from_rest_object(
        rest.EnvironmentVersion(
            {**body(plan, cases[0][0])["environment"], "id": f"{arm}/environments/e/versions/1"}
        )
    )
    assert env.inference_config.scoring_route.path == "/v1/chat/completions"
    registered = Model._from_rest_object(
        rest.ModelVersion(
            {
                "properties": {**body(plan, cases[1][0])["model"]["properties"], "flavors": {}},
                "id": f"{arm}/models/m/versions/1",
            }
        )
    )
    assert registered.path == ARTIFACT.uri and registered.type == "custom_model"
    endpoint = OnlineEndpoint._from_rest_object(
        rest.OnlineEndpoint(
            {**body(plan, cases[2][0])["endpoint"], "id": f"{arm}/onlineEndpoints/e"}
        )
    )
    assert endpoint.auth_mode == "key"
    deployment = OnlineDeployment._from_rest_object(
        rest.OnlineDeployment(
            {
                **body(plan, cases[3][0])["deployment"],
                "id": f"{arm}/onlineEndpoints/e/deployments/{plan.deployment}",
            }
        )
    )
    assert deployment.instance_type == "Standard_NC24ads_A100_v4"
    assert deployment.request_settings.request_timeout_ms == 180_000
    assert deployment.model.endswith(f"/models/support-triage/versions/{version}")


def test_parity_view_reads_the_bodies() -> None:
    plan = plan_for()
    view = parity_view(plan)
    assert view == {
        "artifact": ARTIFACT.uri,
        "image": plan.serving.image,
        "base_model": "Qwen/Qwen2.5-7B-Instruct",
        "served_name": "support-triage-a100",
        "adapters": {"support-triage-a100": "adapter"},
        "max_model_len": 2048,
        "max_lora_rank": 32,
        "instance_type": "Standard_NC24ads_A100_v4",
        "min_replicas": 1,
        "max_replicas": 2,
        "tags": plan.tags,
        "env": view["env"],
    }
    merged = parity_view(
        plan_for(
            Artifact(**{**ARTIFACT.__dict__, "kind": "merged"}), [*OVERRIDES, "deploy.merge=true"]
        )
    )
    assert (merged["base_model"], merged["served_name"], merged["adapters"]) == (
        "merged",
        "support-triage-a100",
        {},
    )
    assert merged["max_lora_rank"] is None


def test_the_deployment_name_fits_azure_and_follows_the_version() -> None:
    other = plan_for(Artifact(**{**ARTIFACT.__dict__, "run_id": "support-triage-a100-99-1"}))
    assert other.deployment != plan_for().deployment and len(other.deployment) == 9


def test_artifact_from_another_cloud_is_refused() -> None:
    from recipes.errors import RecipeInputError

    with pytest.raises(RecipeInputError, match="--provider aws"):
        plan_for(Artifact(**{**ARTIFACT.__dict__, "provider": "aws"}))


def test_no_secret_in_the_plan() -> None:
    text = json.dumps(plan_for().to_dict())
    assert ENDPOINT_KEY not in text and "Bearer" not in text and "sig=" not in text


# --- the container's entrypoint --------------------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "marker"),
    [
        ("model/adapter/adapter_config.json", "adapter/adapter_config.json"),  # named folder
        ("adapter/adapter_config.json", "adapter/adapter_config.json"),  # the folder's contents
        ("model/merged/config.json", "merged/config.json"),
    ],
)
def test_entrypoint_finds_the_artifact_root(tmp_path: Path, layout: str, marker: str) -> None:
    """Under AZUREML_MODEL_DIR the registered folder appears as itself or as its contents;
    the entrypoint finds the root either way and hands vLLM absolute paths."""
    models = tmp_path / "var/azureml-app/azureml-models/support-triage/0aff2522"
    (models / layout).parent.mkdir(parents=True)
    (models / layout).write_text("{}")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "python3").write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    (fake_bin / "python3").chmod(0o755)
    env = {
        "PATH": f"{fake_bin}:{os.environ['PATH']}",
        "AZUREML_MODEL_DIR": str(models),
        "RECIPE_ARTIFACT_MARKER": marker,
        "VLLM_ARGS": "--model Qwen/Q --lora-modules a=@ARTIFACT@/adapter --port 8000",
    }
    out = subprocess.run(["bash", "-c", ENTRYPOINT], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    root = models / "model" if layout.startswith("model/") else models
    assert out.stdout.split("\n")[:6] == [
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        "Qwen/Q",
        "--lora-modules",
        f"a={root}/adapter",
    ]
    env["RECIPE_ARTIFACT_MARKER"] = "nothing/here.json"
    out = subprocess.run(["bash", "-c", ENTRYPOINT], env=env, capture_output=True, text=True)
    assert out.returncode == 1 and "no nothing/here.json under" in out.stderr


# --- deploy ----------------------------------------------------------------------------------


def planned_url(plan: EndpointPlan, api: str) -> str:
    return str(body(plan, api)["url"])


def test_deploy_sends_exactly_the_plan(azure: FakeAzureMLEndpoints) -> None:
    plan = plan_for()
    done = OnlineEndpoints(ml_client=endpoint_ml_client()).deploy(plan)
    assert not done.existing and len(done.created) == 5  # the traffic update is no creation
    assert done.ref.deployment == plan.deployment
    (upload,) = azure.blob_puts()
    planned_upload = body(plan, "storage:upload")
    assert upload.body.decode() == planned_upload["text"]
    assert upload.headers["x-ms-meta-run_id"] == RUN
    (env_put,) = azure.puts("environments")
    planned_env = body(plan, "azureml:CreateOrUpdateEnvironmentVersion")
    sent_env = env_put.json()
    # the one planned value resolved at deploy: the datastore's blob URL of the context
    context = planned_env["environment"]["properties"]["build"]["contextUri"]
    blob_url = sent_env["properties"]["build"].pop("contextUri")
    assert "sig=" not in blob_url and "?" not in blob_url  # never the container's SAS
    assert blob_url == f"{azure.url}/stml/azureml-workspaceblobstore/" + context.split("/paths/")[1]
    planned_props = json.loads(json.dumps(planned_env["environment"]))
    del planned_props["properties"]["build"]["contextUri"]
    assert sent_env == planned_props
    for kind, api, key in [
        ("models", "azureml:CreateOrUpdateModelVersion", "model"),
        ("deployments", "azureml:CreateOrUpdateOnlineDeployment", "deployment"),
    ]:
        (put,) = azure.puts(kind)
        planned = body(plan, api)
        assert put.json() == planned[key], kind
        assert f"{put.path}?api-version={put.query['api-version'][0]}" == planned["url"]
    assert env_put.query["api-version"] == [planned_env["url"].split("api-version=")[1]]
    create, traffic = azure.puts("onlineEndpoints")
    assert f"{create.path}?api-version={create.query['api-version'][0]}" == planned_url(
        plan, "azureml:CreateOrUpdateOnlineEndpoint"
    )
    assert create.json() == body(plan, "azureml:CreateOrUpdateOnlineEndpoint")["endpoint"]
    assert traffic.json() == body(plan, "azureml:UpdateOnlineEndpointTraffic")["endpoint"]
    assert create.headers["authorization"] == "Bearer fake-token"
    # the retire step listed the deployments and found nothing else to delete
    assert azure.seen("GET", r"/onlineEndpoints/support-triage/deployments$")
    assert not azure.seen("DELETE", r"/deployments/")


def test_a_second_deploy_creates_nothing(azure: FakeAzureMLEndpoints) -> None:
    provider = OnlineEndpoints(ml_client=endpoint_ml_client())
    plan = plan_for()
    provider.deploy(plan)
    before = azure.creates()
    again = provider.deploy(plan)
    assert again.existing and again.created == () and azure.creates() == before


def newer_plan() -> EndpointPlan:
    return plan_for(Artifact(**{**ARTIFACT.__dict__, "run_id": "support-triage-a100-2b3c-1"}))


def test_a_new_artifact_moves_the_traffic_and_retires_the_old(
    azure: FakeAzureMLEndpoints,
) -> None:
    provider = OnlineEndpoints(ml_client=endpoint_ml_client())
    first = provider.deploy(plan_for())
    newer = newer_plan()
    second = provider.deploy(newer)
    assert not second.existing
    assert [c.split()[0] for c in second.created] == [
        "azureml:CreateOrUpdateEnvironmentVersion",
        "azureml:CreateOrUpdateModelVersion",
        "azureml:CreateOrUpdateOnlineDeployment",
    ]  # same Dockerfile, same endpoint: found
    status = provider.endpoint_status(second.ref)
    assert status.traffic == {newer.deployment: 100}
    assert set(azure.deployments) == {f"support-triage/{newer.deployment}"}
    (retired,) = azure.seen("DELETE", r"/deployments/")
    assert retired.path.endswith(
        f"/onlineEndpoints/support-triage/deployments/{first.ref.deployment}"
    )
    # deleted after the traffic left it: the endpoint's last PUT precedes the DELETE
    order = [f"{s.method} {s.path}" for s in azure.server.seen if s.method in ("PUT", "DELETE")]
    assert order.index(f"DELETE {retired.path}") > max(
        i for i, o in enumerate(order) if o.startswith("PUT") and o.endswith("/support-triage")
    )
    # the retired version's model and environment stay registered
    old = first.ref.deployment[1:]
    assert f"support-triage/{old}" in azure.models
    assert f"support-triage-vllm/{old}" in azure.environments

    before = azure.creates()
    again = provider.deploy(newer)  # B again: nothing to create, nothing to retire
    assert again.existing and again.created == () and azure.creates() == before
    assert len(azure.seen("DELETE", r"/deployments/")) == 1
    assert set(azure.deployments) == {f"support-triage/{newer.deployment}"}


def test_a_failed_new_version_leaves_the_serving_one_alone(azure: FakeAzureMLEndpoints) -> None:
    provider = OnlineEndpoints(ml_client=endpoint_ml_client())
    first = provider.deploy(plan_for())
    serving_before = json.loads(json.dumps(azure.deployments))
    azure.fail[r"PUT /onlineEndpoints/[^/]+/deployments/"] = [403]
    with pytest.raises(ProviderError) as err:
        provider.deploy(newer_plan())
    assert err.value.kind == ErrorKind.AUTH
    assert azure.deployments == serving_before  # A untouched, nothing of B left
    assert not azure.seen("DELETE", r"/deployments/")
    assert provider.endpoint_status(first.ref).traffic == {first.ref.deployment: 100}
    assert provider.endpoint_status(first.ref).state == EndpointState.READY


def test_a_failed_retirement_keeps_the_new_version(azure: FakeAzureMLEndpoints) -> None:
    """The new version already holds all the traffic: a refused delete of the old one is
    reported, never rolled back into deleting the version that serves."""
    provider = OnlineEndpoints(ml_client=endpoint_ml_client())
    first = provider.deploy(plan_for())
    newer = newer_plan()
    azure.fail[r"DELETE /onlineEndpoints/[^/]+/deployments/"] = [403]
    with pytest.raises(ProviderError) as err:
        provider.deploy(newer)
    assert err.value.kind == ErrorKind.AUTH
    assert f"deployment {newer.deployment} serves all the traffic" in str(err.value)
    assert "removed what this deploy had created" not in str(err.value)
    assert set(azure.deployments) == {
        f"support-triage/{first.ref.deployment}",
        f"support-triage/{newer.deployment}",
    }
    assert provider.endpoint_status(first.ref).traffic == {newer.deployment: 100}
    again = provider.deploy(newer)  # the same plan again finishes the job
    assert not again.existing and again.created == ()
    assert set(azure.deployments) == {f"support-triage/{newer.deployment}"}


def test_a_failure_half_way_rolls_back(azure: FakeAzureMLEndpoints) -> None:
    azure.fail[r"PUT /onlineEndpoints/[^/]+/deployments/"] = [403]
    with pytest.raises(ProviderError) as err:
        OnlineEndpoints(ml_client=endpoint_ml_client()).deploy(plan_for())
    assert err.value.kind == ErrorKind.AUTH and "403" in str(err.value)
    assert "removed what this deploy had created" in str(err.value)
    assert azure.endpoints == {} and azure.models == {} and azure.environments == {}
    assert azure.blobs == {}


@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, ErrorKind.AUTH), (404, ErrorKind.NOT_FOUND), (429, ErrorKind.THROTTLED)],
)
def test_errors_map_to_kinds(azure: FakeAzureMLEndpoints, status: int, kind: ErrorKind) -> None:
    azure.fail[r"PUT /models/"] = [status] * 12  # the SDK retries 429 and a 401 once
    with pytest.raises(ProviderError) as err:
        OnlineEndpoints(ml_client=endpoint_ml_client()).deploy(plan_for())
    assert err.value.kind == kind and "\n" not in str(err.value)
    assert ENDPOINT_KEY not in str(err.value)


# --- status, invoke, delete ------------------------------------------------------------------


def test_status_invoke_delete(azure: FakeAzureMLEndpoints) -> None:
    from openai.types.chat import ChatCompletion

    from providers.serving import chat_request

    provider = OnlineEndpoints(ml_client=endpoint_ml_client())
    plan = plan_for()
    ref = provider.deploy(plan).ref
    status = provider.endpoint_status(ref)
    assert status.state == EndpointState.READY and status.replicas == 1
    assert status.url.endswith("/inference/support-triage/score")
    assert status.traffic == {plan.deployment: 100}

    answer = provider.invoke(ref, chat_request("support-triage-a100", "My invoice is wrong"))
    completion = ChatCompletion.model_validate(answer)
    assert completion.choices[0].message.content == "billing"
    (score,) = azure.seen("POST", r"/score$")
    assert score.headers["authorization"] == f"Bearer {ENDPOINT_KEY}"
    assert score.headers["azureml-model-deployment"] == plan.deployment
    assert score.json()["model"] == "support-triage-a100"

    provider.delete_endpoint(ref)
    assert azure.endpoints == {} and azure.deployments == {}
    assert azure.models == {} and azure.environments == {}
    assert provider.endpoint_status(ref).state == EndpointState.ABSENT
    provider.delete_endpoint(ref)  # absent is fine


def test_delete_after_a_new_version_removes_every_version(azure: FakeAzureMLEndpoints) -> None:
    provider = OnlineEndpoints(ml_client=endpoint_ml_client())
    provider.deploy(plan_for())
    ref = provider.deploy(newer_plan()).ref
    assert len(azure.models) == len(azure.environments) == 2  # A's stay registered
    provider.delete_endpoint(ref)
    assert azure.endpoints == {} and azure.deployments == {}
    assert azure.models == {} and azure.environments == {}


def test_invoke_of_an_absent_endpoint(azure: FakeAzureMLEndpoints) -> None:
    from providers.base import EndpointRef

    ref = EndpointRef("azure", "nowhere", "v00000000", {"subscription": "s"})
    with pytest.raises(ProviderError) as err:
        OnlineEndpoints(ml_client=endpoint_ml_client()).invoke(ref, {"model": "m", "messages": []})
    assert err.value.kind == ErrorKind.NOT_FOUND


def test_a_finished_job_names_its_model_output(azure: FakeAzureMLEndpoints) -> None:
    from providers.base import RunRef

    azure.jobs[RUN] = {"name": RUN, "properties": {"jobType": "Command", "status": "Completed"}}
    scope = {"subscription": "s", "resource_group": "rg-ml", "workspace": "ws-ml"}
    status = CommandJobs(ml_client=ml_client()).status(
        RunRef("azure", RUN, {"job_name": RUN, **scope})
    )
    assert status.artifacts["model"] == ARTIFACT.uri
