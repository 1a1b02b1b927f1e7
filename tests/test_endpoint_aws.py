"""SageMaker real-time endpoints through real boto3 clients against moto, with what moto lacks
(UpdateEndpoint, refusing duplicate names, InvokeEndpoint answered as vLLM would) filled in at
botocore's HTTP layer (tests/fakes/aws.py: SageMakerHosting, SageMakerRuntime), and their
autoscaling through moto's Application Auto Scaling (ApplicationAutoScaling records it)."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.model
import botocore.session
import pytest
from botocore.config import Config
from moto import mock_aws

from providers import registry, serving
from providers.aws.endpoint import (
    INFERENCE_AMI,
    MODEL_DIR,
    SCALE_IN_COOLDOWN_S,
    SCALE_OUT_COOLDOWN_S,
    TARGET_INVOCATIONS_PER_INSTANCE,
    SageMakerEndpoints,
    parity_view,
)
from providers.base import (
    Artifact,
    EndpointBackend,
    EndpointPlan,
    EndpointState,
    ErrorKind,
    ProviderError,
)
from recipes.errors import RecipeInputError
from recipes.loader import load_recipe
from recipes.schema import Recipe
from tests.conftest import CATALOG, REPO
from tests.fakes import aws
from tests.test_service_models import SAGEMAKER, violations

RECIPE = CATALOG / "support-triage-a100.yaml"
OVERRIDES = ["deploy.endpoint=support-triage", "deploy.max_replicas=2"]
GOLDEN = REPO / "tests" / "golden" / "endpoint-aws.json"
RUN = "support-triage-a100-1a2b3c4d-1"
# RunStatus.artifacts["model"] of the training job: S3OutputPath (BUCKET/runs/RUN/output)
# / job name / output / model.tar.gz (providers/aws/training_job.py; DescribeTrainingJob's
# ModelArtifacts.S3ModelArtifacts).
OUTPUT = f"s3://recipe-artifacts-123456789012/fine-tunes/runs/{RUN}/output/{RUN}/output"
ARTIFACT = Artifact(
    run_id=RUN,
    provider="aws",
    uri=f"{OUTPUT}/model.tar.gz",
    kind="adapter",
    base_model="Qwen/Qwen2.5-7B-Instruct",
    name="support-triage-a100",
    lora_rank=32,
)
SECRETS = ("testing", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "HF_TOKEN", "hf_")


def _autoscaling_model() -> Any:
    """botocore's application-autoscaling model, its Java surrogate-pair range (any code point
    above U+FFFF, in ResourceIdMaxLen1600 and XmlString) written as Python's regex reads it."""
    data = copy.deepcopy(botocore.session.get_session().get_service_data("application-autoscaling"))
    for shape in data["shapes"].values():
        if "pattern" in shape:
            shape["pattern"] = shape["pattern"].replace(
                "\\uD800\\uDC00-\\uDBFF\\uDFFF", "\\U00010000-\\U0010FFFF"
            )
    return botocore.model.ServiceModel(data, "application-autoscaling")


AUTOSCALING = _autoscaling_model()
MODELS = {"sagemaker": SAGEMAKER, "application-autoscaling": AUTOSCALING}


def recipe(*extra: str) -> Recipe:
    return load_recipe(RECIPE, [*OVERRIDES, *extra]).resolved()


def plan(*extra: str, artifact: Artifact = ARTIFACT) -> EndpointPlan:
    return SageMakerEndpoints().plan_endpoint(recipe(*extra), artifact)


def body(p: EndpointPlan, api: str) -> dict[str, Any]:
    """The body of `api`: "CreateModel" (sagemaker) or "service:Operation"."""
    name = api if ":" in api else f"sagemaker:{api}"
    return next(r.body for r in p.requests if r.api == name)


def rid(deployment: str) -> str:
    """The deployment's variant as Application Auto Scaling names it."""
    return f"endpoint/support-triage/variant/{deployment}"


# --- plan ------------------------------------------------------------------------------------


VARIANTS = {
    "adapter": ([], ARTIFACT),
    "merged": (["deploy.merge=true"], dataclasses.replace(ARTIFACT, kind="merged")),
    "full": ([], dataclasses.replace(ARTIFACT, kind="full", lora_rank=None)),
    "prefix-vpc-2gpu": (
        [
            "compute.aws.subnets=[subnet-0abc]",
            "compute.aws.security_groups=[sg-0123]",
            "deploy.gpus=4",
            "deploy.accelerator=A10G",
        ],
        dataclasses.replace(ARTIFACT, uri=f"{OUTPUT}/model"),
    ),
}


@pytest.mark.parametrize("case", sorted(VARIANTS))
def test_every_body_fits_botocores_service_model(case: str) -> None:
    extra, artifact = VARIANTS[case]
    p = plan(*extra, artifact=artifact)
    assert [r.api for r in p.requests] == [
        "sagemaker:CreateModel",
        "sagemaker:CreateEndpointConfig",
        "sagemaker:CreateEndpoint",
        "application-autoscaling:RegisterScalableTarget",
        "application-autoscaling:PutScalingPolicy",
    ]
    for request in p.requests:
        service, operation = request.api.split(":")
        shape = MODELS[service].operation_model(operation).input_shape
        assert violations(request.body, shape) == [], request.api


def test_the_bodies_say_what_the_recipe_and_run_ask() -> None:
    p = plan()
    model, config, endpoint, *_ = (r.body for r in p.requests)
    assert model["ModelName"] == config["EndpointConfigName"] == p.deployment
    assert p.deployment.startswith("support-triage-") and len(p.deployment) <= 63
    assert endpoint == {
        "EndpointName": "support-triage",
        "EndpointConfigName": p.deployment,
        "Tags": model["Tags"],
    }
    assert model["ExecutionRoleArn"] == "arn:aws:iam::123456789012:role/recipe-sagemaker-training"
    source = model["PrimaryContainer"]["ModelDataSource"]["S3DataSource"]
    assert source == {"S3Uri": ARTIFACT.uri, "S3DataType": "S3Object", "CompressionType": "Gzip"}
    assert model["PrimaryContainer"]["Image"] == (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/vllm:0.27.1-gpu-py312-cu130-ubuntu22.04-sagemaker"
    )
    (variant,) = config["ProductionVariants"]
    assert variant["ModelName"] == variant["VariantName"] == p.deployment
    assert variant["InstanceType"] == p.compute["instance_type"] == "ml.g6.xlarge"
    assert variant["InferenceAmiVersion"] == INFERENCE_AMI
    assert variant["InitialInstanceCount"] == 1
    # The inference-components feature, refused on a model variant: not sent.
    assert "ManagedInstanceScaling" not in variant
    tags = {t["Key"]: t["Value"] for t in model["Tags"]}
    assert tags == p.tags and tags["run_id"] == RUN and tags["endpoint"] == "support-triage"
    assert config["Tags"] == model["Tags"]


def test_max_replicas_is_application_auto_scaling_of_the_variant() -> None:
    p = plan()
    variant = body(p, "CreateEndpointConfig")["ProductionVariants"][0]["VariantName"]
    target_id = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": f"endpoint/support-triage/variant/{variant}",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }
    assert body(p, "application-autoscaling:RegisterScalableTarget") == {
        **target_id,
        "MinCapacity": 1,
        "MaxCapacity": 2,
        "Tags": p.tags,
    }
    assert body(p, "application-autoscaling:PutScalingPolicy") == {
        "PolicyName": f"{p.deployment}-invocations",
        **target_id,
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": TARGET_INVOCATIONS_PER_INSTANCE,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
            },
            "ScaleInCooldown": SCALE_IN_COOLDOWN_S,
            "ScaleOutCooldown": SCALE_OUT_COOLDOWN_S,
        },
    }
    assert "1-2 instances" in " ".join(p.notes)


def test_a_fixed_fleet_registers_nothing_to_scale() -> None:
    p = plan("deploy.max_replicas=1")
    assert [r.api.split(":")[0] for r in p.requests] == ["sagemaker"] * 3
    view = parity_view(p)
    assert (view["min_replicas"], view["max_replicas"]) == (1, 1)
    wider = parity_view(plan("deploy.min_replicas=3", "deploy.max_replicas=5"))
    assert (wider["min_replicas"], wider["max_replicas"]) == (3, 5)


def test_vllm_arguments_for_an_adapter() -> None:
    """SM_VLLM_<NAME> -> --<name>; LoRA modules as the JSON array of {name, path} the DLC's
    sagemaker_args.py gives one argv token per element (its test_sagemaker_args.py)."""
    env = body(plan(), "CreateModel")["PrimaryContainer"]["Environment"]
    assert env == {
        "SM_VLLM_MODEL": "Qwen/Qwen2.5-7B-Instruct",
        "SM_VLLM_MAX_MODEL_LEN": "2048",  # data.max_seq_len
        "SM_VLLM_TENSOR_PARALLEL_SIZE": "1",
        "SM_VLLM_ENABLE_LORA": "true",
        "SM_VLLM_LORA_MODULES": json.dumps(
            [{"name": "support-triage-a100", "path": f"{MODEL_DIR}/adapter"}],
            separators=(",", ":"),
        ),
        "SM_VLLM_MAX_LORAS": "1",
        "SM_VLLM_MAX_LORA_RANK": "32",
    }


def test_vllm_arguments_for_a_merged_model_and_bigger_hardware() -> None:
    merged = dataclasses.replace(ARTIFACT, kind="merged")
    p = plan("deploy.merge=true", "deploy.max_model_len=4096", artifact=merged)
    env = body(p, "CreateModel")["PrimaryContainer"]["Environment"]
    assert env == {
        "SM_VLLM_MODEL": f"{MODEL_DIR}/merged",
        "SM_VLLM_MAX_MODEL_LEN": "4096",
        "SM_VLLM_TENSOR_PARALLEL_SIZE": "1",
        "SM_VLLM_SERVED_MODEL_NAME": "support-triage-a100",
    }
    p4 = plan("deploy.gpus=4", "deploy.accelerator=A10G")
    env4 = body(p4, "CreateModel")["PrimaryContainer"]["Environment"]
    assert env4["SM_VLLM_TENSOR_PARALLEL_SIZE"] == "4"
    assert body(p4, "CreateEndpointConfig")["ProductionVariants"][0]["InstanceType"] == (
        "ml.g5.12xlarge"
    )
    assert p4.deployment != plan().deployment  # other hardware, another deployment


def test_parity_view_reads_the_bodies_back() -> None:
    p = plan()
    view = parity_view(p)
    assert view["artifact"] == ARTIFACT.uri
    assert view["image"] == p.serving.image
    assert view["base_model"] == p.serving.base_model == "Qwen/Qwen2.5-7B-Instruct"
    assert view["served_name"] == p.serving.served_name == "support-triage-a100"
    assert view["adapters"] == p.serving.adapters == {"support-triage-a100": "adapter"}
    assert (view["max_model_len"], view["max_lora_rank"]) == (2048, 32)
    assert (view["min_replicas"], view["max_replicas"]) == (1, 2)
    assert view["instance_type"] == "ml.g6.xlarge" and view["tags"] == p.tags
    merged = parity_view(
        plan("deploy.merge=true", artifact=dataclasses.replace(ARTIFACT, kind="merged"))
    )
    assert (merged["base_model"], merged["adapters"], merged["max_lora_rank"]) == (
        "merged",
        {},
        None,
    )
    assert merged["served_name"] == "support-triage-a100"


def test_plan_is_pure_and_holds_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    aws.use_fake_keys(monkeypatch)
    backend = SageMakerEndpoints()
    p = backend.plan_endpoint(recipe(), ARTIFACT)
    assert backend.clients._clients == {}  # no client was even built
    text = json.dumps(p.to_dict())
    assert not [s for s in SECRETS if s in text]
    assert p == backend.plan_endpoint(recipe(), ARTIFACT)  # deterministic, names included


def test_what_cannot_be_served_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RecipeInputError, match="--provider gcp|trained on gcp"):
        plan(artifact=dataclasses.replace(ARTIFACT, provider="gcp"))
    with pytest.raises(RecipeInputError, match="s3:// only"):
        plan(artifact=dataclasses.replace(ARTIFACT, uri="gs://b/model.tar.gz"))
    with pytest.raises(RecipeInputError, match="cannot download the base model") as err:
        plan("compute.aws.network_isolation=true")
    assert "compute.aws.network_isolation" in err.value.render()
    isolated = plan(
        "compute.aws.network_isolation=true",
        "deploy.merge=true",
        artifact=dataclasses.replace(ARTIFACT, kind="merged"),
    )
    assert body(isolated, "CreateModel")["EnableNetworkIsolation"] is True
    with pytest.raises(RecipeInputError, match="at least one instance"):
        plan("deploy.min_replicas=0")
    monkeypatch.delenv("SAGEMAKER_ROLE_ARN", raising=False)
    with pytest.raises(RecipeInputError, match="compute.aws.role"):
        plan("compute.aws.role=null")


def test_golden_endpoint_plan(update_golden: bool) -> None:
    current = plan().to_dict()
    if update_golden:
        GOLDEN.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert GOLDEN.exists(), "no golden file: run pytest with --update-golden and review the diff"
    assert current == json.loads(GOLDEN.read_text()), (
        "plan changed: run pytest tests/test_endpoint_aws.py --update-golden, review the diff"
    )


def test_the_registry_serves_this_backend() -> None:
    backend = registry.endpoint_backend("aws")
    assert isinstance(backend, SageMakerEndpoints) and isinstance(backend, EndpointBackend)


# --- deploy, status, invoke, delete over moto --------------------------------------------


@dataclasses.dataclass
class Cloud:
    backend: SageMakerEndpoints
    sm: Any
    control: aws.SageMakerHosting
    runtime: aws.SageMakerRuntime
    scaling: aws.ApplicationAutoScaling

    def exists(self, kind: str, name: str) -> bool:
        param = {"model": "ModelName", "endpoint_config": "EndpointConfigName"}.get(
            kind, "EndpointName"
        )
        try:
            getattr(self.sm, f"describe_{kind}")(**{param: name})
        except self.sm.exceptions.ClientError:
            return False
        return True


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    aws.use_fake_keys(monkeypatch)
    # Standard retries as the backend's own clients use, fewer attempts to keep tests fast.
    config = Config(retries={"total_max_attempts": 2, "mode": "standard"})
    with mock_aws():
        sm = boto3.client("sagemaker", region_name=aws.REGION, config=config)
        runtime = boto3.client("sagemaker-runtime", region_name=aws.REGION, config=config)
        aas = boto3.client("application-autoscaling", region_name=aws.REGION, config=config)
        backend = SageMakerEndpoints(
            clients={
                f"sagemaker:{aws.REGION}": sm,
                f"sagemaker-runtime:{aws.REGION}": runtime,
                f"application-autoscaling:{aws.REGION}": aas,
            }
        )
        yield Cloud(
            backend,
            sm,
            aws.SageMakerHosting(sm),
            aws.SageMakerRuntime(runtime),
            aws.ApplicationAutoScaling(aas),
        )


def creates(cloud: Cloud) -> dict[str, int]:
    ops = ("CreateModel", "CreateEndpointConfig", "CreateEndpoint", "UpdateEndpoint")
    return {op: cloud.control.calls(op) for op in ops} | {
        op: cloud.scaling.calls(op) for op in aws.ApplicationAutoScaling.OPERATIONS
    }


def test_deploy_sends_exactly_the_plans_bodies(cloud: Cloud) -> None:
    p = plan()
    deployed = cloud.backend.deploy(p)
    assert not deployed.existing
    assert deployed.created == (
        f"sagemaker:CreateModel {p.deployment}",
        f"sagemaker:CreateEndpointConfig {p.deployment}",
        "sagemaker:CreateEndpoint support-triage",
        f"application-autoscaling:RegisterScalableTarget {rid(p.deployment)}",
        f"application-autoscaling:PutScalingPolicy {p.deployment}-invocations",
    )
    for request in p.requests:
        service, operation = request.api.split(":")
        fake = cloud.control if service == "sagemaker" else cloud.scaling
        assert fake.created(operation) == [request.body]
    assert cloud.scaling.targets() == {rid(p.deployment): (1, 2)}
    assert cloud.scaling.policies() == {f"{p.deployment}-invocations": rid(p.deployment)}
    assert deployed.ref.ids["region"] == aws.REGION and deployed.ref.deployment == p.deployment
    status = cloud.backend.endpoint_status(deployed.ref)
    assert status.state == EndpointState.READY and status.deployment == p.deployment
    assert status.traffic == {p.deployment: 100} and status.replicas == 1
    assert status.url.endswith("/endpoints/support-triage/invocations")


def test_a_second_deploy_creates_nothing(cloud: Cloud) -> None:
    p = plan()
    cloud.backend.deploy(p)
    before = creates(cloud)
    again = cloud.backend.deploy(plan())
    assert again.existing and again.created == ()
    assert creates(cloud) == before  # no Create*, no RegisterScalableTarget, no PutScalingPolicy


def test_a_changed_range_updates_the_target_in_place(cloud: Cloud) -> None:
    cloud.backend.deploy(plan())
    wider = plan("deploy.max_replicas=4")
    assert wider.deployment != plan().deployment  # the range is part of the version
    cloud.backend.deploy(wider)
    assert cloud.scaling.targets() == {rid(wider.deployment): (1, 4)}
    # A target that exists with other limits is registered again, without Tags.
    cloud.scaling.client.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=rid(wider.deployment),
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=1,
        MaxCapacity=9,
    )
    again = cloud.backend.deploy(wider)
    assert not again.existing and again.created == ()
    assert cloud.scaling.targets() == {rid(wider.deployment): (1, 4)}
    assert "Tags" not in cloud.scaling.bodies("RegisterScalableTarget")[-1]


def test_a_new_version_updates_the_endpoint(cloud: Cloud) -> None:
    first = plan()
    cloud.backend.deploy(first)
    newer = plan(artifact=dataclasses.replace(ARTIFACT, run_id="support-triage-a100-1a2b3c4d-2"))
    assert newer.endpoint == first.endpoint and newer.deployment != first.deployment
    deployed = cloud.backend.deploy(newer)
    assert not deployed.existing
    assert deployed.created == (
        f"sagemaker:CreateModel {newer.deployment}",
        f"sagemaker:CreateEndpointConfig {newer.deployment}",
        f"application-autoscaling:RegisterScalableTarget {rid(newer.deployment)}",
        f"application-autoscaling:PutScalingPolicy {newer.deployment}-invocations",
    )
    assert cloud.control.created("UpdateEndpoint") == [
        {"EndpointName": "support-triage", "EndpointConfigName": newer.deployment}
    ]
    assert cloud.control.created("CreateEndpoint") == [body(first, "CreateEndpoint")]
    status = cloud.backend.endpoint_status(deployed.ref)
    assert status.deployment == newer.deployment and status.traffic == {newer.deployment: 100}
    assert cloud.exists("model", first.deployment)  # the old fleet's model stays until delete
    # The old variant left autoscaling before the update (SageMaker refuses to remove a
    # registered variant); the new one is registered with its own policy.
    assert [b["ResourceId"] for b in cloud.scaling.created("DeregisterScalableTarget")] == [
        rid(first.deployment)
    ]
    assert cloud.scaling.targets() == {rid(newer.deployment): (1, 2)}
    assert cloud.scaling.policies() == {f"{newer.deployment}-invocations": rid(newer.deployment)}


def test_scaling_waits_for_the_endpoint_to_be_in_service(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    import providers.aws.endpoint as module

    p = plan()
    cloud.backend.deploy(p)
    cloud.control.set_status("support-triage", "Creating")
    polls: list[float] = []

    def sleep(seconds: float) -> None:  # the endpoint comes into service after two polls
        polls.append(seconds)
        if len(polls) == 2:
            cloud.control.set_status("support-triage", "InService")

    monkeypatch.setattr(module.time, "sleep", sleep)
    api = module._Hosting(cloud.sm, module._Scaling(lambda: None))
    api.wait_in_service("support-triage")
    assert polls == [module.IN_SERVICE_POLL_S] * 2
    cloud.control.set_status("support-triage", "Failed", "CUDA driver too old for the image")
    with pytest.raises(ProviderError, match="did not come into service: CUDA driver") as err:
        api.wait_in_service("support-triage")
    assert err.value.kind == ErrorKind.API


def test_an_update_in_flight_shows_and_a_second_one_is_refused(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    import providers.aws.endpoint as module

    # The fake leaves updates Updating for good; the wait before scaling is tested above.
    monkeypatch.setattr(module._Hosting, "wait_in_service", lambda self, endpoint: None)
    cloud.control.settle = False
    cloud.backend.deploy(plan())
    newer = plan(artifact=dataclasses.replace(ARTIFACT, uri=f"{OUTPUT}/other.tar.gz"))
    ref = cloud.backend.deploy(newer).ref
    assert cloud.backend.endpoint_status(ref).state == EndpointState.UPDATING
    third = plan("deploy.max_model_len=4096")
    with pytest.raises(ProviderError, match="in-progress") as err:
        cloud.backend.deploy(third)
    # What this deploy created is gone again; the endpoint is left on its update.
    assert "removed what this deploy had created" in str(err.value)
    assert not cloud.exists("model", third.deployment)
    assert not cloud.exists("endpoint_config", third.deployment)
    # The running update's variant was deregistered for the refused one, and came back.
    assert cloud.scaling.targets() == {rid(newer.deployment): (1, 2)}
    assert cloud.scaling.policies() == {f"{newer.deployment}-invocations": rid(newer.deployment)}


@pytest.mark.parametrize(
    ("operation", "code", "kind"),
    [
        ("CreateEndpoint", "ResourceLimitExceeded", ErrorKind.QUOTA),
        ("CreateEndpointConfig", "ValidationException", ErrorKind.API),
        ("RegisterScalableTarget", "ConcurrentUpdateException", ErrorKind.CONFLICT),
        ("PutScalingPolicy", "LimitExceededException", ErrorKind.QUOTA),
        ("PutScalingPolicy", "ObjectNotFoundException", ErrorKind.NOT_FOUND),
    ],
)
def test_a_failure_half_way_rolls_back(
    cloud: Cloud, operation: str, code: str, kind: ErrorKind
) -> None:
    p = plan()
    fake = cloud.scaling if operation in aws.ApplicationAutoScaling.OPERATIONS else cloud.control
    # Every attempt: botocore's standard mode retries LimitExceededException as throttling.
    fake.error(operation, 400, code, "refused for the test", times=None)
    with pytest.raises(ProviderError) as err:
        cloud.backend.deploy(p)
    assert err.value.kind == kind and code in str(err.value)
    assert "removed what this deploy had created" in str(err.value)
    for kind_name in ("model", "endpoint_config"):
        assert not cloud.exists(kind_name, p.deployment)
    assert not cloud.exists("endpoint", "support-triage")
    assert cloud.control.calls("DeleteModel") == 1
    assert cloud.scaling.targets() == {} and cloud.scaling.policies() == {}


def test_a_model_variant_with_managed_instance_scaling_is_refused(cloud: Cloud) -> None:
    """What SageMaker answers the body this backend no longer sends (the fake holds it)."""
    p = plan()
    config = body(p, "CreateEndpointConfig")
    variant = {
        **config["ProductionVariants"][0],
        "ManagedInstanceScaling": {"Status": "ENABLED", "MinInstanceCount": 1},
    }
    with pytest.raises(cloud.sm.exceptions.ClientError, match="inference component endpoints"):
        cloud.sm.create_endpoint_config(**{**config, "ProductionVariants": [variant]})


def test_a_failed_rollback_says_what_to_delete_by_hand(cloud: Cloud) -> None:
    p = plan()
    cloud.control.error("CreateEndpoint", 400, "ResourceLimitExceeded", "no ml.g6.xlarge left")
    cloud.control.error("DeleteModel", 400, "AccessDeniedException", "not allowed")
    with pytest.raises(ProviderError) as err:
        cloud.backend.deploy(p)
    assert f"could NOT remove (delete by hand): sagemaker:CreateModel {p.deployment}" in str(
        err.value
    )
    assert cloud.exists("model", p.deployment)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("ThrottlingException", ErrorKind.THROTTLED),
        ("UnrecognizedClientException", ErrorKind.AUTH),
        ("AccessDeniedException", ErrorKind.AUTH),
    ],
)
def test_sdk_errors_map_to_kinds(cloud: Cloud, code: str, kind: ErrorKind) -> None:
    cloud.control.error("CreateModel", 400, code, "for the test", times=None)
    with pytest.raises(ProviderError) as err:
        cloud.backend.deploy(plan())
    assert err.value.kind == kind
    if kind == ErrorKind.THROTTLED:
        assert cloud.control.calls("CreateModel") == 2  # botocore retried it, then gave up
    assert not [s for s in SECRETS if s in str(err.value)]


def test_status_of_a_failed_and_of_an_absent_endpoint(cloud: Cloud) -> None:
    ref = cloud.backend.deploy(plan()).ref
    cloud.control.set_status("support-triage", "Failed", "the primary container did not pass /ping")
    status = cloud.backend.endpoint_status(ref)
    assert status.state == EndpointState.FAILED and "did not pass /ping" in status.message
    gone = dataclasses.replace(ref, endpoint="never-deployed")
    assert cloud.backend.endpoint_status(gone).state == EndpointState.ABSENT


def test_invoke_sends_the_chat_body_and_returns_a_chat_completion(cloud: Cloud) -> None:
    from openai.types.chat import ChatCompletion

    ref = cloud.backend.deploy(plan()).ref
    request = serving.chat_request("support-triage-a100", "I was charged twice this month")
    answer = cloud.backend.invoke(ref, request)
    completion = ChatCompletion.model_validate(answer)
    assert completion.model == "support-triage-a100"
    assert completion.choices[0].message.content == "billing"
    (sent,) = cloud.runtime.invocations
    assert sent["endpoint"] == "support-triage" and sent["body"] == request
    assert sent["headers"]["content-type"] == "application/json"


def test_invoke_errors(cloud: Cloud) -> None:
    ref = cloud.backend.deploy(plan()).ref
    with pytest.raises(ProviderError, match="does not exist") as err:
        cloud.backend.invoke(ref, serving.chat_request("no-such-model", "hello"))
    assert err.value.kind == ErrorKind.API and "(404)" in str(err.value)
    with pytest.raises(ProviderError, match="not found") as err:
        cloud.backend.invoke(
            dataclasses.replace(ref, endpoint="nope"), serving.chat_request("m", "x")
        )
    assert err.value.kind == ErrorKind.NOT_FOUND
    cloud.runtime.error(
        "InvokeEndpoint", 403, "AccessDeniedException", "no sagemaker:InvokeEndpoint"
    )
    with pytest.raises(ProviderError) as err:
        cloud.backend.invoke(ref, serving.chat_request("support-triage-a100", "x"))
    assert err.value.kind == ErrorKind.AUTH


def test_delete_removes_every_version_and_absent_is_fine(cloud: Cloud) -> None:
    first = plan()
    cloud.backend.deploy(first)
    newer = plan(artifact=dataclasses.replace(ARTIFACT, uri=f"{OUTPUT}/other.tar.gz"))
    ref = cloud.backend.deploy(newer).ref
    # Someone else's resources with similar names stay.
    cloud.sm.create_model(ModelName="support-triage-other", ExecutionRoleArn=aws_role())
    cloud.sm.create_model(ModelName="support-triage-extra-1234abcd", ExecutionRoleArn=aws_role())
    # A target left behind by an older deploy goes too; another endpoint's stays.
    others = {
        "ServiceNamespace": "sagemaker",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        "MinCapacity": 1,
        "MaxCapacity": 2,
    }
    cloud.scaling.client.register_scalable_target(ResourceId=rid(first.deployment), **others)
    cloud.scaling.client.register_scalable_target(
        ResourceId="endpoint/support-triage-other/variant/v", **others
    )
    cloud.backend.delete_endpoint(ref)
    assert not cloud.exists("endpoint", "support-triage")
    for name in (first.deployment, newer.deployment):
        assert not cloud.exists("model", name) and not cloud.exists("endpoint_config", name)
    assert cloud.scaling.targets() == {"endpoint/support-triage-other/variant/v": (1, 2)}
    assert cloud.scaling.policies() == {}
    assert cloud.exists("model", "support-triage-other")
    assert cloud.exists("model", "support-triage-extra-1234abcd")
    cloud.backend.delete_endpoint(ref)  # already gone: fine
    assert cloud.backend.endpoint_status(ref).state == EndpointState.ABSENT


def aws_role() -> str:
    return "arn:aws:iam::123456789012:role/recipe-sagemaker-training"
