"""Amazon SageMaker real-time endpoints: a run's artifact behind vLLM's OpenAI-compatible server.

plan_endpoint() is pure and writes down three requests, in the order deploy() sends them:

  sagemaker:CreateModel           NAME = plan.deployment  the serving container, the run's
                                                          model.tar.gz, vLLM's arguments
  sagemaker:CreateEndpointConfig  NAME = plan.deployment  instance type, replicas, host AMI
  sagemaker:CreateEndpoint        NAME = plan.endpoint    (UpdateEndpoint when it exists with
                                                          another config)

Models and endpoint configs are named after the deployment (endpoint + 8 hex digits of the
artifact, server settings and hardware), so a second deploy of the same plan finds all
three and creates nothing; a new version creates its model and config and moves the
endpoint onto them with UpdateEndpoint (SageMaker's blue/green update: the old fleet serves
until the new one is healthy). Names are account-wide in a region: botocore's sagemaker
model, ModelName / EndpointConfigName / EndpointName, at most 63 characters of
[a-zA-Z0-9](-*[a-zA-Z0-9])*.

The container is AWS's vLLM Deep Learning Container, SageMaker variant (providers/images.yaml,
endpoint_images, aws): its entrypoint turns every SM_VLLM_<NAME> variable into vLLM's
--<name> argument (true -> a bare flag, a JSON array -> one argument per element) and runs
`python3 -m vllm.entrypoints.openai.api_server --port 8080 ...`
(github.com/aws/deep-learning-containers @ e0ecedea6a1c56d6b5914f9cfb2fec5c548e67e0:
scripts/docker/vllm/sagemaker_entrypoint.sh, scripts/docker/vllm/sagemaker_args.py,
docs/vllm/deployment/sagemaker.md, docs/vllm/configuration.md; checked 2026-11-23).
SageMaker extracts the model.tar.gz into /opt/ml/model, so a path `p` of the artifact
(ServingSpec) is /opt/ml/model/p in the container. vLLM's /invocations takes the OpenAI
chat-completions body as is: it tries ChatCompletionRequest first, then CompletionRequest
(github.com/vllm-project/vllm: vllm/entrypoints/sagemaker/api_router.py @ 09cb327f,
vllm/entrypoints/openai/generate/factories.py @ 04a0413c).
"""

from __future__ import annotations

import json
import re
from typing import Any

from providers import serving, staging
from providers.aws import sdk
from providers.aws.images import DEFAULT_ACCOUNT, REGION_ACCOUNTS
from providers.aws.settings import EndpointSettings, resolve_endpoint
from providers.base import (
    Artifact,
    Deployed,
    EndpointPlan,
    EndpointRef,
    EndpointState,
    EndpointStatus,
    Request,
    ServingSpec,
)
from recipes.errors import Problem, RecipeInputError
from recipes.schema import Recipe
from recipes.tags import AWS as AWS_TAG_RULES

MODEL_DIR = "/opt/ml/model"  # where SageMaker puts the model data (ModelDataSource)
# Host AMI with NVIDIA driver 580 / CUDA 13.0: the image is built on CUDA 13.0.2 and the
# default hosts' drivers (470/535/550) cannot run it (botocore's sagemaker model,
# ProductionVariant.InferenceAmiVersion; the DLC's docs/vllm/deployment/sagemaker.md: "GPU
# deployments require inference_ami_version").
INFERENCE_AMI = "al2023-ami-sagemaker-inference-gpu-4-1"
# A 7B base is downloaded from the hub and compiled (CUDA graphs) before /ping answers; the
# default health-check window is too short for that. Both bounded 60-3600 s (botocore model).
STARTUP_TIMEOUT_S = 1800
DOWNLOAD_TIMEOUT_S = 1800
_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")  # Model/EndpointConfig/Endpoint names
_ENV_KEY = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")  # ContainerDefinition.Environment
MAX_ENV = 100
MAX_ENV_VALUE = 1024

# DescribeEndpoint's EndpointStatus (botocore's sagemaker model, EndpointStatus enum).
_STATES = {
    "Creating": EndpointState.CREATING,
    "Updating": EndpointState.UPDATING,
    "SystemUpdating": EndpointState.UPDATING,
    "RollingBack": EndpointState.UPDATING,
    "InService": EndpointState.READY,
    "Deleting": EndpointState.DELETING,
    "Failed": EndpointState.FAILED,
    "UpdateRollbackFailed": EndpointState.FAILED,
    "OutOfService": EndpointState.FAILED,
}
CREATE_MODEL = "sagemaker:CreateModel"
CREATE_CONFIG = "sagemaker:CreateEndpointConfig"
CREATE_ENDPOINT = "sagemaker:CreateEndpoint"


class SageMakerEndpoints:
    """OpenAI-compatible SageMaker real-time endpoints (EndpointBackend)."""

    name = "aws"

    def __init__(self, clients: dict[str, Any] | None = None):
        # Tests inject moto-backed clients ("sagemaker:REGION", "sagemaker-runtime:REGION");
        # otherwise built per region from the usual AWS credential chain.
        self.clients = sdk.Clients(clients)

    # --- plan ------------------------------------------------------------------------

    def plan_endpoint(self, recipe: Recipe, artifact: Artifact) -> EndpointPlan:
        setting = resolve_endpoint(recipe)
        region = setting.region
        prepared = serving.prepare(
            recipe,
            artifact,
            self.name,
            region,
            AWS_TAG_RULES,
            registry=dlc_registry(region),
        )
        requests = endpoint_requests(prepared, setting)
        _check_limits(requests)
        notes = (
            f"the container reads the artifact from {MODEL_DIR} (SageMaker extracts "
            "model.tar.gz there); " + serving.SERVING_ROOT_NOTE,
            f"ManagedInstanceScaling keeps {prepared.block.min_replicas}-"
            f"{prepared.block.max_replicas} instances",
        )
        return prepared.plan(requests, notes)

    # --- deploy ----------------------------------------------------------------------

    def deploy(self, plan: EndpointPlan) -> Deployed:
        api = _Hosting(self.clients.get("sagemaker", plan.region))
        return serving.deploy(plan, api, _ref(plan))

    # --- status / invoke / delete ----------------------------------------------------

    def endpoint_status(self, ref: EndpointRef) -> EndpointStatus:
        region = ref.ids["region"]
        found = _describe(self.clients.get("sagemaker", region), "endpoint", ref.endpoint)
        if found is None:
            return EndpointStatus(ref.endpoint, self.name, EndpointState.ABSENT)
        variants = found.get("ProductionVariants") or []
        weights = {v["VariantName"]: float(v.get("CurrentWeight", 1.0)) for v in variants}
        total = sum(weights.values()) or 1.0
        status = found.get("EndpointStatus", "")
        return EndpointStatus(
            endpoint=ref.endpoint,
            provider=self.name,
            state=_STATES.get(status, EndpointState.UPDATING),
            message=status + (f": {found['FailureReason']}" if found.get("FailureReason") else ""),
            url=invocations_url(ref.endpoint, region),
            deployment=found.get("EndpointConfigName", ""),
            replicas=sum(v.get("CurrentInstanceCount", 0) for v in variants) if variants else None,
            traffic={name: round(100 * w / total) for name, w in weights.items()},
        )

    def invoke(self, ref: EndpointRef, body: dict[str, Any]) -> dict[str, Any]:
        runtime = self.clients.get("sagemaker-runtime", ref.ids["region"])
        return sdk.invoke_endpoint(runtime, ref.endpoint, body)

    def delete_endpoint(self, ref: EndpointRef) -> None:
        """The endpoint, then every config and model a deploy made for it (each version is
        named ENDPOINT-XXXXXXXX, so versions replaced by UpdateEndpoint go too)."""
        sm = self.clients.get("sagemaker", ref.ids["region"])
        _delete(sm, "endpoint", ref.endpoint)
        ours = re.compile(re.escape(ref.endpoint) + r"-[0-9a-f]{8}")
        for kind in ("endpoint_config", "model"):
            names = set(_list_names(sm, kind, ref.endpoint)) | {ref.deployment}
            for name in sorted(n for n in names if ours.fullmatch(n)):
                _delete(sm, kind, name)


# --- the request bodies ----------------------------------------------------------------------


def endpoint_requests(prepared: serving.Prepared, setting: EndpointSettings) -> list[Request]:
    """CreateModel, CreateEndpointConfig, CreateEndpoint: what deploy sends, in order."""
    aws, spec, block = setting.section, prepared.serving, prepared.block
    name = prepared.deployment
    tags = [{"Key": k, "Value": v} for k, v in prepared.tags.tags.items()]
    if aws.network_isolation and prepared.artifact.kind == "adapter":
        raise RecipeInputError(
            Problem(
                f"an isolated container cannot download the base model {spec.base_model} "
                "that the adapter is served on",
                field="compute.aws.network_isolation",
                hint="set deploy.merge: true (the merged model is in the artifact), or turn "
                "network isolation off",
            )
        )
    model: dict[str, Any] = {
        "ModelName": name,
        "PrimaryContainer": {
            "Image": spec.image,
            "ModelDataSource": {"S3DataSource": model_data(prepared.artifact)},
            "Environment": container_env(spec),
        },
        "ExecutionRoleArn": setting.role,
        "EnableNetworkIsolation": bool(aws.network_isolation),
        "Tags": tags,
    }
    if aws.subnets:
        model["VpcConfig"] = {"Subnets": aws.subnets, "SecurityGroupIds": aws.security_groups}
    variant = {
        # The variant is named after the deployment, so the endpoint's traffic reads back
        # per deployment (EndpointStatus.traffic) and a canary can sit beside it later.
        "VariantName": name,
        "ModelName": name,
        "InstanceType": prepared.offer.instance_type,
        "InitialInstanceCount": block.min_replicas,
        "InitialVariantWeight": 1.0,
        "InferenceAmiVersion": INFERENCE_AMI,
        "ContainerStartupHealthCheckTimeoutInSeconds": STARTUP_TIMEOUT_S,
        "ModelDataDownloadTimeoutInSeconds": DOWNLOAD_TIMEOUT_S,
        # deploy.min/max_replicas as the variant's instance range (botocore's sagemaker
        # model, ProductionVariantManagedInstanceScaling). SageMaker's own scaling acts on
        # it; traffic-based target tracking of a model variant would be Application Auto
        # Scaling (RegisterScalableTarget/PutScalingPolicy), which this plan does not send.
        "ManagedInstanceScaling": {
            "Status": "ENABLED",
            "MinInstanceCount": block.min_replicas,
            "MaxInstanceCount": block.max_replicas,
        },
    }
    config = {"EndpointConfigName": name, "ProductionVariants": [variant], "Tags": tags}
    endpoint = {"EndpointName": prepared.endpoint, "EndpointConfigName": name, "Tags": tags}
    return [
        Request(CREATE_MODEL, model),
        Request(CREATE_CONFIG, config),
        Request(CREATE_ENDPOINT, endpoint),
    ]


def model_data(artifact: Artifact) -> dict[str, Any]:
    """ModelDataSource.S3DataSource for the run's output: the training job's model.tar.gz
    (ModelArtifacts.S3ModelArtifacts) is one gzipped object; an uncompressed prefix must end
    with '/' (botocore's sagemaker model, S3ModelDataSource)."""
    uri = artifact.uri
    if not uri.startswith("s3://"):
        raise RecipeInputError(
            Problem(
                f"run {artifact.run_id}'s artifact {uri} is not in S3: SageMaker reads model "
                "data from s3:// only",
                field="artifact",
            )
        )
    if uri.endswith(".tar.gz"):
        return {"S3Uri": uri, "S3DataType": "S3Object", "CompressionType": "Gzip"}
    return {"S3Uri": uri.rstrip("/") + "/", "S3DataType": "S3Prefix", "CompressionType": "None"}


def container_env(spec: ServingSpec) -> dict[str, str]:
    """vLLM's arguments as the DLC's SM_VLLM_* variables (values are strings: Environment
    is a string map). SM_VLLM_MODEL is always set: left out, the entrypoint would serve
    /opt/ml/model itself, which holds the adapter, not a model (sagemaker_args.py,
    resolve_model)."""
    # A merged or full model is a folder of the artifact; an adapter's base is a hub id.
    env = {
        "SM_VLLM_MODEL": spec.base_model if spec.adapters else _in_container(spec.base_model),
        "SM_VLLM_MAX_MODEL_LEN": str(spec.max_model_len),
        "SM_VLLM_TENSOR_PARALLEL_SIZE": str(spec.gpus),
    }
    if spec.adapters:
        # The fine-tune answers as its LoRA module's name; the base keeps its hub id.
        modules = [{"name": n, "path": _in_container(p)} for n, p in spec.adapters.items()]
        env["SM_VLLM_ENABLE_LORA"] = "true"
        env["SM_VLLM_LORA_MODULES"] = json.dumps(modules, separators=(",", ":"))
        env["SM_VLLM_MAX_LORAS"] = str(len(modules))
        env["SM_VLLM_MAX_LORA_RANK"] = str(spec.max_lora_rank)
    else:
        env["SM_VLLM_SERVED_MODEL_NAME"] = spec.served_name
    return env


def _in_container(path: str) -> str:
    return f"{MODEL_DIR}/{path.strip('/')}"


def dlc_registry(region: str) -> str:
    """The region's Deep Learning Containers registry (the images.yaml row's {registry}: a
    single placeholder, since serving.prepare takes `region` as its own argument)."""
    account = REGION_ACCOUNTS.get(region, DEFAULT_ACCOUNT)
    return f"{account}.dkr.ecr.{region}.{_domain(region)}"


def _domain(region: str) -> str:
    return "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"


def invocations_url(endpoint: str, region: str) -> str:
    return f"https://runtime.sagemaker.{region}.{_domain(region)}/endpoints/{endpoint}/invocations"


def _check_limits(requests: list[Request]) -> None:
    """SageMaker's limits that botocore's client and moto do not check (the service model's
    patterns and sizes; tests/test_endpoint_aws.py walks the whole model)."""
    problems = []
    for request in requests:
        body = request.body
        for key in ("ModelName", "EndpointConfigName", "EndpointName"):
            if key in body and not _NAME.fullmatch(body[key]):
                problems.append(
                    Problem(f"{key} '{body[key]}' breaks SageMaker's pattern", field="deploy")
                )
    env = requests[0].body["PrimaryContainer"]["Environment"]
    if len(env) > MAX_ENV:
        problems.append(Problem(f"more than {MAX_ENV} environment variables", field="deploy"))
    for key, value in env.items():
        if not _ENV_KEY.fullmatch(key) or len(value) > MAX_ENV_VALUE:
            problems.append(
                Problem(
                    f"container variable {key} breaks SageMaker's limits (a name of letters, "
                    f"digits and _, a value of at most {MAX_ENV_VALUE} characters)",
                    field="deploy",
                )
            )
    if problems:
        raise RecipeInputError(problems)


# --- parity: what the bodies say, read back ------------------------------------------------


def parity_view(plan: EndpointPlan) -> dict[str, Any]:
    """The neutral serving settings as the request bodies carry them (not from plan.serving)."""
    bodies = {r.api: r.body for r in plan.requests}
    container = bodies[CREATE_MODEL]["PrimaryContainer"]
    env = dict(container["Environment"])
    variant = bodies[CREATE_CONFIG]["ProductionVariants"][0]
    scaling = variant["ManagedInstanceScaling"]
    modules = json.loads(env.get("SM_VLLM_LORA_MODULES", "[]"))
    adapters = {m["name"]: _relative(m["path"]) for m in modules}
    base = env["SM_VLLM_MODEL"]
    return {
        "artifact": container["ModelDataSource"]["S3DataSource"]["S3Uri"],
        "image": container["Image"],
        "base_model": _relative(base) if base.startswith(MODEL_DIR + "/") else base,
        "served_name": env.get("SM_VLLM_SERVED_MODEL_NAME") or next(iter(adapters), base),
        "adapters": adapters,
        "max_model_len": int(env["SM_VLLM_MAX_MODEL_LEN"]),
        "max_lora_rank": int(env["SM_VLLM_MAX_LORA_RANK"])
        if "SM_VLLM_MAX_LORA_RANK" in env
        else None,
        "instance_type": variant["InstanceType"],
        "min_replicas": scaling["MinInstanceCount"],
        "max_replicas": scaling["MaxInstanceCount"],
        "tags": {t["Key"]: t["Value"] for t in bodies[CREATE_ENDPOINT]["Tags"]},
        "env": env,
    }


def _relative(path: str) -> str:
    return path[len(MODEL_DIR) + 1 :] if path.startswith(MODEL_DIR + "/") else path


# --- EndpointApi: the SageMaker calls serving.deploy makes ------------------------------------

# Request api -> (the resource's kind, the body's name field).
_RESOURCES = {
    CREATE_MODEL: ("model", "ModelName"),
    CREATE_CONFIG: ("endpoint_config", "EndpointConfigName"),
    CREATE_ENDPOINT: ("endpoint", "EndpointName"),
}
# kind -> (boto3 method suffix, SageMaker operation, name parameter)
_KINDS = {
    "model": ("model", "Model", "ModelName"),
    "endpoint_config": ("endpoint_config", "EndpointConfig", "EndpointConfigName"),
    "endpoint": ("endpoint", "Endpoint", "EndpointName"),
}


class _Hosting:
    """serving.EndpointApi over one region's SageMaker client."""

    def __init__(self, sm: Any):
        self.sm = sm

    def apply(self, request: Request) -> serving.Outcome:
        kind, field = _RESOURCES[request.api]
        name = request.body[field]
        found = _describe(self.sm, kind, name)
        if found is None:
            method = getattr(self.sm, f"create_{_KINDS[kind][0]}")
            sdk.call(lambda: method(**request.body), f"{request.api.split(':')[1]} {name}")
            return "created"
        if (
            kind != "endpoint"
            or found.get("EndpointConfigName") == request.body["EndpointConfigName"]
        ):
            # Models and configs are named by content: the same name is the same body.
            return "existing"
        # Tags stay those of the first deploy: UpdateEndpoint takes none (botocore model).
        config = request.body["EndpointConfigName"]
        sdk.call(
            lambda: self.sm.update_endpoint(EndpointName=name, EndpointConfigName=config),
            f"UpdateEndpoint {name}",
        )
        return "updated"

    def remove(self, request: Request) -> None:
        kind, field = _RESOURCES[request.api]
        _delete(self.sm, kind, request.body[field])

    def describe(self, request: Request) -> str:
        _, field = _RESOURCES[request.api]
        return f"{request.api} {request.body[field]}"


def _describe(sm: Any, kind: str, name: str) -> dict[str, Any] | None:
    suffix, operation, param = _KINDS[kind]
    method = getattr(sm, f"describe_{suffix}")
    return staging.unless_missing(
        lambda: sdk.call(lambda: method(**{param: name}), f"Describe{operation} {name}")
    )


def _delete(sm: Any, kind: str, name: str) -> None:
    """Delete one resource; already gone is fine."""
    suffix, operation, param = _KINDS[kind]
    method = getattr(sm, f"delete_{suffix}")
    staging.unless_missing(
        lambda: sdk.call(lambda: method(**{param: name}), f"Delete{operation} {name}")
    )


def _list_names(sm: Any, kind: str, contains: str) -> list[str]:
    suffix, operation, param = _KINDS[kind]
    plural = {"model": "Models", "endpoint_config": "EndpointConfigs"}[kind]
    pages = sdk.call(lambda: sm.get_paginator(f"list_{suffix}s"), f"List{operation}s")
    found = sdk.call(lambda: list(pages.paginate(NameContains=contains)), f"List{operation}s")
    return [item[param] for page in found for item in page.get(plural, [])]


def _ref(plan: EndpointPlan) -> EndpointRef:
    return EndpointRef(
        provider=plan.provider,
        endpoint=plan.endpoint,
        deployment=plan.deployment,
        ids={
            "region": plan.region,
            "endpoint_name": plan.endpoint,
            "endpoint_config": plan.deployment,
            "model": plan.deployment,
        },
    )
