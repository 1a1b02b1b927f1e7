"""Vertex AI endpoints (providers/gcp/endpoint.py) through the real aiplatform_v1 REST
clients and an AuthorizedSession, against tests/fakes/gcp.py's FakeVertexServing: plan
bodies that are aiplatform_v1 messages, deploys that send exactly them, idempotence, a
new version that retires the previous one, rollback, status, invoke, delete, errors, and
the golden plan."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from providers.base import Artifact, EndpointPlan, EndpointState, ProviderError
from providers.gcp import endpoint as vertex
from providers.gcp import sdk
from providers.serving import chat_request
from recipes.errors import ErrorKind, RecipeInputError
from recipes.loader import load_recipe
from tests.conftest import CATALOG, REPO
from tests.fakes.gcp import (
    FakeVertexServing,
    error,
    fast_operations,
    fast_retries,
    vertex_endpoints,
)

RECIPE = CATALOG / "support-triage-a100.yaml"
OVERRIDES = ["deploy.endpoint=support-triage", "deploy.max_replicas=2"]
GOLDEN = REPO / "tests" / "golden" / "endpoint-gcp.json"
RUN_ROOT = "gs://recipe-artifacts-dev/fine-tunes/runs"
ARTIFACT = Artifact(
    run_id="support-triage-a100-1a2b3c4d-1",
    provider="gcp",
    uri=f"{RUN_ROOT}/support-triage-a100-1a2b3c4d-1/model",  # RunStatus.artifacts["model"]
    kind="adapter",
    base_model="Qwen/Qwen2.5-7B-Instruct",
    name="support-triage-a100",
    lora_rank=32,
)
MESSAGES = {  # request -> its aiplatform_v1 message type
    "vertex:CreateEndpoint": "CreateEndpointRequest",
    "vertex:UploadModel": "UploadModelRequest",
    "vertex:DeployModel": "DeployModelRequest",
}


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_retries(monkeypatch)
    fast_operations(monkeypatch)


def plan_for(artifact: Artifact = ARTIFACT, overrides: list[str] | None = None) -> EndpointPlan:
    recipe = load_recipe(RECIPE, [*OVERRIDES, *(overrides or [])]).resolved()
    return vertex.VertexEndpoints().plan_endpoint(recipe, artifact)


def second_run() -> Artifact:
    run = "support-triage-a100-9f8e7d6c-1"
    return replace(ARTIFACT, run_id=run, uri=f"{RUN_ROOT}/{run}/model")


def body(plan: EndpointPlan, api: str) -> dict[str, Any]:
    return next(r.body for r in plan.requests if r.api == api)


# --- plan ------------------------------------------------------------------------------------


def test_every_body_is_its_aiplatform_v1_message() -> None:
    """Each planned body parses into aiplatform_v1's request type with unknown fields
    refused, and serializes back to exactly the planned JSON."""
    from google.protobuf import json_format

    plan = plan_for()
    assert [r.api for r in plan.requests] == [*MESSAGES, vertex.RETIRE]
    for request in plan.requests[:-1]:
        message = sdk.request_message(MESSAGES[request.api], request.body)
        assert json.loads(json_format.MessageToJson(message._pb)) == request.body
    wrong = json.loads(json.dumps(body(plan, "vertex:UploadModel")))
    wrong["model"]["containerSpec"]["predictPath"] = "/v1/chat/completions"
    with pytest.raises(Exception, match="predictPath"):
        sdk.request_message("UploadModelRequest", wrong)


def test_the_plan_names_everything_deterministically(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")  # unused
    plan = plan_for()
    assert plan.deployment.startswith("support-triage-") and plan == plan_for()
    create = body(plan, "vertex:CreateEndpoint")
    assert create["endpointId"] == "support-triage"
    upload = body(plan, "vertex:UploadModel")
    assert upload["modelId"] == plan.deployment
    assert upload["model"]["artifactUri"] == ARTIFACT.uri
    assert upload["model"]["labels"] == create["endpoint"]["labels"] == plan.tags
    assert plan.tags["run_id"] == ARTIFACT.run_id and plan.tags["endpoint"] == "support-triage"
    container = upload["model"]["containerSpec"]
    assert container["predictRoute"] == "/v1/chat/completions"
    assert container["healthRoute"] == "/health"
    assert container["ports"] == [{"containerPort": 8080}] and "--port=8080" in container["args"]
    assert container["imageUri"] == (
        "us-central1-docker.pkg.dev/recipe-ml-dev/recipe-serving/vllm-gpu:v0.11.0"
    )
    deploy = body(plan, "vertex:DeployModel")
    assert deploy["endpoint"].endswith("/endpoints/support-triage")
    assert deploy["deployedModel"]["model"].endswith(f"/models/{plan.deployment}")
    assert deploy["deployedModel"]["id"].isdigit() and len(deploy["deployedModel"]["id"]) <= 10
    assert deploy["trafficSplit"] == {"0": 100}
    retire = body(plan, "vertex:UndeployOtherModels")
    assert plan.requests[-1].api == "vertex:UndeployOtherModels"
    assert retire == {"endpoint": deploy["endpoint"], "keep": deploy["deployedModel"]["id"]}
    assert not any("at 0%" in n or "still billed" in n for n in plan.notes)
    resources = deploy["deployedModel"]["dedicatedResources"]
    assert resources["machineSpec"]["acceleratorType"] == "NVIDIA_L4"
    assert (resources["minReplicaCount"], resources["maxReplicaCount"]) == (1, 2)
    assert plan_for(second_run()).deployment != plan.deployment


def test_parity_view_reads_the_bodies() -> None:
    view = vertex.parity_view(plan_for())
    assert view == {
        "artifact": ARTIFACT.uri,
        "image": "us-central1-docker.pkg.dev/recipe-ml-dev/recipe-serving/vllm-gpu:v0.11.0",
        "base_model": "Qwen/Qwen2.5-7B-Instruct",
        "served_name": "support-triage-a100",
        "adapters": {"support-triage-a100": "adapter"},
        "max_model_len": 2048,
        "max_lora_rank": 32,
        "instance_type": "g2-standard-8",
        "min_replicas": 1,
        "max_replicas": 2,
        "tags": plan_for().tags,
        "env": {"ARTIFACT_DIR": "/tmp/artifact"},
    }


def test_a_merged_model_is_served_from_the_artifact() -> None:
    plan = plan_for(replace(ARTIFACT, kind="merged"), ["deploy.merge=true"])
    args = body(plan, "vertex:UploadModel")["model"]["containerSpec"]["args"]
    assert "--model=/tmp/artifact/merged" in args
    assert "--served-model-name=support-triage-a100" in args
    assert "--enable-lora" not in args and "--lora-modules" not in args
    view = vertex.parity_view(plan)
    assert view["base_model"] == "merged" and view["adapters"] == {}
    assert view["max_lora_rank"] is None


def test_an_artifact_outside_cloud_storage_is_refused() -> None:
    with pytest.raises(RecipeInputError, match="Cloud Storage"):
        plan_for(replace(ARTIFACT, uri="s3://bucket/runs/x/model.tar.gz"))
    with pytest.raises(RecipeInputError, match="trained on aws"):
        plan_for(replace(ARTIFACT, provider="aws"))


def test_golden_endpoint_plan(update_golden: bool) -> None:
    plan = plan_for().to_dict()
    if update_golden:
        GOLDEN.write_text(json.dumps(plan, indent=2, sort_keys=True) + "\n")
    assert GOLDEN.exists(), "no golden file: run pytest --update-golden and review the diff"
    assert plan == json.loads(GOLDEN.read_text()), "plan changed: --update-golden, review"


# --- deploy ----------------------------------------------------------------------------------


def sent(plan: EndpointPlan, api: str) -> dict[str, Any]:
    """What the REST transport puts in the HTTP body for a planned request: the path and
    query parameters leave it (CreateEndpoint sends only the Endpoint, endpointId in the
    query), and enums travel as numbers."""
    from google.cloud.aiplatform_v1.types import AcceleratorType

    planned = json.loads(json.dumps(body(plan, api)))
    if api == "vertex:CreateEndpoint":
        return planned["endpoint"]
    planned.pop("parent", None)
    planned.pop("endpoint", None)
    if api == "vertex:DeployModel":
        spec = planned["deployedModel"]["dedicatedResources"]["machineSpec"]
        spec["acceleratorType"] = AcceleratorType[spec["acceleratorType"]].value
    return planned


def test_deploy_sends_exactly_the_plan() -> None:
    plan = plan_for()
    with FakeVertexServing() as fake:
        done = vertex_endpoints(fake).deploy(plan)
        assert fake.calls() == ["create_endpoint", "upload", "deploy"]
        assert fake.body("create_endpoint") == sent(plan, "vertex:CreateEndpoint")
        (create,) = fake.seen("POST", r"/endpoints$")
        assert create.query["endpointId"] == ["support-triage"]
        assert fake.body("upload") == sent(plan, "vertex:UploadModel")
        assert fake.body("deploy") == sent(plan, "vertex:DeployModel")
        assert not done.existing
        assert done.created == (
            "vertex:CreateEndpoint support-triage",
            f"vertex:UploadModel {plan.deployment}",
            f"vertex:DeployModel {plan.deployment}",
        )
        assert fake.seen("GET", r"/operations/\d+$")  # each operation was waited for
        assert fake.calls("undeploy") == []  # nothing else on the endpoint to retire
        assert (
            done.ref.ids["deployed_model_id"]
            == body(plan, "vertex:DeployModel")["deployedModel"]["id"]
        )


def test_a_second_deploy_creates_nothing() -> None:
    with FakeVertexServing() as fake:
        provider = vertex_endpoints(fake)
        first = provider.deploy(plan_for())
        again = provider.deploy(plan_for())
        assert again.existing and again.created == () and again.ref == first.ref
        assert fake.calls() == ["create_endpoint", "upload", "deploy"]  # no new writes


def test_a_new_version_replaces_the_previous_one() -> None:
    with FakeVertexServing() as fake:
        provider = vertex_endpoints(fake)
        first = provider.deploy(plan_for())
        newer = plan_for(second_run())
        done = provider.deploy(newer)
        assert not done.existing
        assert done.created == (
            f"vertex:UploadModel {newer.deployment}",
            f"vertex:DeployModel {newer.deployment}",
        )
        assert fake.calls() == [
            "create_endpoint",
            "upload",
            "deploy",
            "update_endpoint",  # the endpoint's labels now name the new run
            "upload",
            "deploy",
            "undeploy",  # the previous version, once the new one holds all the traffic
        ]
        assert fake.body("undeploy") == {
            "deployedModelId": first.ref.ids["deployed_model_id"],
            "trafficSplit": {done.ref.ids["deployed_model_id"]: 100},
        }
        assert fake.seen("PATCH", r"/endpoints/")[0].query["updateMask"] == ["labels"]
        (endpoint,) = fake.endpoints.values()
        assert endpoint["labels"]["run_id"] == second_run().run_id
        status = provider.endpoint_status(done.ref)
        assert status.state == EndpointState.READY
        assert status.traffic == {newer.deployment: 100}
        deployed = {d["displayName"] for d in endpoint["deployedModels"]}
        assert deployed == {newer.deployment}
        # the retired version's Model stays in the Model Registry
        assert set(fake.models) == {first.ref.deployment, newer.deployment}

        again = provider.deploy(newer)  # B again: nothing to create, nothing to retire
        assert again.existing and again.created == ()
        assert fake.calls("upload", "deploy", "undeploy") == [
            "upload",
            "deploy",
            "upload",
            "deploy",
            "undeploy",
        ]


def test_a_failure_half_way_removes_what_this_deploy_created() -> None:
    quota = "The following quota metrics exceed quota limits: custom_model_serving_nvidia_l4_gpus"
    with FakeVertexServing() as fake:
        fake.operation_errors["deploy"] = {"code": 8, "message": quota}
        with pytest.raises(ProviderError) as err:
            vertex_endpoints(fake).deploy(plan_for())
        assert err.value.kind == ErrorKind.QUOTA
        text = str(err.value)
        assert text.startswith("DeployModel failed: 429 RESOURCE_EXHAUSTED: " + quota)
        assert "removed what this deploy had created" in text and "\n" not in text
        assert fake.endpoints == {} and fake.models == {}
        assert fake.seen("DELETE", r"/models/") and fake.seen("DELETE", r"/endpoints/")


def test_a_failed_new_version_leaves_the_serving_endpoint_alone() -> None:
    with FakeVertexServing() as fake:
        provider = vertex_endpoints(fake)
        first = provider.deploy(plan_for())
        denied = "Permission 'aiplatform.endpoints.deploy' denied on resource."
        fake.failures["deploy"] = [error(403, "PERMISSION_DENIED", denied)]
        serving_before = json.loads(json.dumps(fake.endpoints["support-triage"]))
        with pytest.raises(ProviderError) as err:
            provider.deploy(plan_for(second_run()))
        assert err.value.kind == ErrorKind.AUTH
        assert set(fake.models) == {first.ref.deployment}  # only the new upload went
        status = provider.endpoint_status(first.ref)
        assert status.state == EndpointState.READY
        assert status.traffic == {first.ref.deployment: 100}
        endpoint = fake.endpoints["support-triage"]
        assert endpoint["deployedModels"] == serving_before["deployedModels"]
        assert fake.calls("undeploy") == []


def test_a_failed_retirement_keeps_the_new_version() -> None:
    """The new version already holds all the traffic: a refused undeploy of the old one is
    reported, never rolled back into undeploying the version that serves."""
    with FakeVertexServing() as fake:
        provider = vertex_endpoints(fake)
        first = provider.deploy(plan_for())
        newer = plan_for(second_run())
        denied = "Permission 'aiplatform.endpoints.undeploy' denied on resource."
        fake.failures["undeploy"] = [error(403, "PERMISSION_DENIED", denied)]
        with pytest.raises(ProviderError) as err:
            provider.deploy(newer)
        assert err.value.kind == ErrorKind.AUTH
        assert f"{newer.deployment} serves all the traffic" in str(err.value)
        assert "removed what this deploy had created" not in str(err.value)
        status = provider.endpoint_status(provider._ref(newer))
        assert status.state == EndpointState.READY
        assert status.traffic == {newer.deployment: 100}
        assert set(fake.models) == {first.ref.deployment, newer.deployment}
        deployed = {d["displayName"] for d in fake.endpoints["support-triage"]["deployedModels"]}
        assert deployed == {first.ref.deployment, newer.deployment}
        again = provider.deploy(newer)  # the same plan again finishes the job
        assert not again.existing and again.created == ()
        deployed = {d["displayName"] for d in fake.endpoints["support-triage"]["deployedModels"]}
        assert deployed == {newer.deployment}


# --- status / invoke / delete ----------------------------------------------------------------


def test_status_follows_the_endpoint() -> None:
    plan = plan_for()
    with FakeVertexServing() as fake:
        provider = vertex_endpoints(fake)
        ref = provider._ref(plan)
        assert provider.endpoint_status(ref).state == EndpointState.ABSENT
        provider.deploy(plan)
        status = provider.endpoint_status(ref)
        assert status.state == EndpointState.READY and status.replicas == 1
        assert status.deployment == plan.deployment
        assert status.traffic == {plan.deployment: 100}
        assert status.url.endswith("/endpoints/support-triage:rawPredict")


def test_invoke_sends_the_openai_body_through_raw_predict() -> None:
    from openai.types.chat import ChatCompletion

    request = chat_request("support-triage-a100", "My invoice is wrong")
    with FakeVertexServing() as fake:
        provider = vertex_endpoints(fake)
        ref = provider.deploy(plan_for()).ref
        answer = provider.invoke(ref, request)
        (call,) = fake.seen("POST", r":rawPredict$")
        assert call.json() == request  # unchanged, not wrapped in an HttpBody message
        assert call.headers["authorization"] == "Bearer fake-access-token"
    completion = ChatCompletion.model_validate(answer)
    assert completion.choices[0].message.content == "billing"
    assert completion.model == "support-triage-a100"


def test_delete_removes_the_endpoint_and_its_models_and_absent_is_fine() -> None:
    with FakeVertexServing() as fake:
        provider = vertex_endpoints(fake)
        first = provider.deploy(plan_for())
        provider.deploy(plan_for(second_run()))  # A retired, its Model kept
        assert fake.calls("undeploy") == ["undeploy"] and len(fake.models) == 2
        provider.delete_endpoint(first.ref)
        assert fake.endpoints == {} and fake.models == {}
        assert fake.calls("undeploy") == ["undeploy", "undeploy"]
        provider.delete_endpoint(first.ref)  # nothing left: fine
        assert provider.endpoint_status(first.ref).state == EndpointState.ABSENT


def test_delete_undeploys_every_deployed_model() -> None:
    """Two deployed models, one with traffic (a retirement refused once): both leave."""
    with FakeVertexServing() as fake:
        provider = vertex_endpoints(fake)
        first = provider.deploy(plan_for())
        fake.failures["undeploy"] = [error(503, "UNAVAILABLE", "try later")] * 50
        with pytest.raises(ProviderError):
            provider.deploy(plan_for(second_run()))
        fake.failures.clear()
        assert len(fake.endpoints["support-triage"]["deployedModels"]) == 2
        provider.delete_endpoint(first.ref)
        assert fake.endpoints == {} and fake.models == {}


# --- errors and secrets ----------------------------------------------------------------------


def test_throttling_and_auth_errors_have_their_kind() -> None:
    plan = plan_for()
    with FakeVertexServing() as fake:
        provider = vertex_endpoints(fake)
        slow = error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for aiplatform.googleapis.com.")
        fake.failures["get_endpoint"] = [slow] * 200
        with pytest.raises(ProviderError) as err:
            provider.endpoint_status(provider._ref(plan))
        assert err.value.kind == ErrorKind.THROTTLED
        fake.failures["get_endpoint"] = [
            error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        ] * 3
        with pytest.raises(ProviderError) as err:
            provider.deploy(plan)
        assert err.value.kind == ErrorKind.AUTH
        assert "gcloud auth application-default login" in str(err.value)
        assert fake.calls() == []  # nothing was created


def test_no_secret_in_the_plan_or_on_the_wire() -> None:
    plan = plan_for()
    text = json.dumps(plan.to_dict())
    for word in ("token", "secret", "password", "api_key", "HF_TOKEN", "Bearer"):
        assert word.lower() not in text.lower(), word
    with FakeVertexServing() as fake:
        vertex_endpoints(fake).deploy(plan)
        for _, sent_body in fake.received:
            assert "fake-access-token" not in json.dumps(sent_body)
