"""Amazon SageMaker real-time endpoints: a run's artifact behind vLLM's OpenAI-compatible server.

plan_endpoint() is pure and writes down the requests, in the order deploy() sends them:

  sagemaker:CreateModel           NAME = plan.deployment  the serving container, the run's
                                                          model.tar.gz, vLLM's arguments
  sagemaker:CreateEndpointConfig  NAME = plan.deployment  instance type, replicas, host AMI
  sagemaker:CreateEndpoint        NAME = plan.endpoint    (UpdateEndpoint when it exists with
                                                          another config)
and, when deploy.max_replicas > deploy.min_replicas, Application Auto Scaling's two:
  application-autoscaling:RegisterScalableTarget  the variant, min..max instances
  application-autoscaling:PutScalingPolicy        target tracking of invocations per instance

A model variant is scaled by Application Auto Scaling alone (docs.aws.amazon.com/sagemaker/
latest/dg/endpoint-auto-scaling.html; "Register a model": ResourceId endpoint/E/variant/V,
ScalableDimension sagemaker:variant:DesiredInstanceCount). An update replaces the variant
(it is named after the deployment), and SageMaker refuses an UpdateEndpoint that removes a
variant registered for scaling, so the old variant's target is deregistered first and the
new one registered after (docs: endpoint-scaling-update.html).

Models and endpoint configs are named after the deployment (endpoint + 8 hex digits of the
artifact, server settings and hardware), so a second deploy of the same plan finds every
resource (a scalable target and a policy count as found when they read back equal to the
body) and creates nothing; a new version creates its model and config and moves the
endpoint onto them with UpdateEndpoint (SageMaker's blue/green update: the old fleet serves
until the new one is healthy). Names are account-wide in a region: botocore's sagemaker
model, ModelName / EndpointConfigName / EndpointName, at most 63 characters of
[a-zA-Z0-9](-*[a-zA-Z0-9])*.

Releases (ReleaseBackend, `recipe release`) run the candidate as a second production variant
of the same endpoint (variants are named after their deployment):
  deploy_candidate  CreateModel + CreateEndpointConfig (the plan's own bodies), then an
                    endpoint config of the live variants as they are plus the candidate with
                    InitialVariantWeight 0, UpdateEndpoint (RetainAllVariantProperties) onto
                    it, DescribeEndpoint until InService; the stable version is not touched
                    (its weight, instances and scalable target stay); with no stable version,
                    deploy()
  set_traffic       UpdateEndpointWeightsAndCapacities, DesiredWeight per variant
  invoke_deployment sagemaker-runtime InvokeEndpoint with TargetVariant
  traffic           CloudWatch GetMetricData, AWS/SageMaker, EndpointName + VariantName:
                    Invocations (Sum), Invocation5XXErrors (Sum), ModelLatency (p95, in
                    microseconds: / 1000)
  retire            (weight 0 only) DeregisterScalableTarget of that variant, then an endpoint
                    config without it (the remaining version's own config when one is left)
                    and UpdateEndpoint, then its model and config are deleted
The candidate is not registered with Application Auto Scaling during the canary, nor after
its promotion: it serves at deploy.min_replicas until the next `recipe endpoint deploy` of
the same run registers it (that deploy finds the model, config and endpoint in place).

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

import functools
import hashlib
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
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
    ErrorKind,
    ProviderError,
    Request,
    ServingSpec,
    TrafficSample,
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
REGISTER_TARGET = "application-autoscaling:RegisterScalableTarget"
# A vLLM endpoint pulls a ~10 GB image and the model: minutes, sometimes tens of them.
IN_SERVICE_POLL_S = 15.0
IN_SERVICE_TIMEOUT_S = 3600.0
PUT_POLICY = "application-autoscaling:PutScalingPolicy"

# Application Auto Scaling of a model variant (botocore's application-autoscaling model,
# ServiceNamespace / ScalableDimension enums; SageMaker's "Register a model").
NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
# Target tracking of SageMakerVariantInvocationsPerInstance, a per-minute CloudWatch metric.
# 70 is the value of AWS's own example policy (docs.aws.amazon.com/sagemaker/latest/dg/
# endpoint-auto-scaling-add-code-define.html, and endpoint-auto-scaling-policy.html: "a target
# value of 70 can keep InvocationsPerInstance at, or close to 70"). AWS's load-testing guide
# derives the value as MAX_RPS * SAFETY_FACTOR * 60 with SAFETY_FACTOR 0.5 to start
# (endpoint-scaling-loadtest.html): 70/min stands for a peak of ~2.3 requests/s per
# instance, not measured here for vLLM on these GPUs; tune it after a load test.
TARGET_INVOCATIONS_PER_INSTANCE = 70.0
# Cooldowns: scale out at AWS's default for SageMaker variants (300 s, Application Auto
# Scaling's "Define cooldown periods"); scale in slower, as AWS's CloudFormation example does
# (600 s, endpoint-scaling-cloudformation.html), since a vLLM instance takes many minutes
# (STARTUP_TIMEOUT_S) to come back.
SCALE_OUT_COOLDOWN_S = 300
SCALE_IN_COOLDOWN_S = 600


class SageMakerEndpoints:
    """OpenAI-compatible SageMaker real-time endpoints (EndpointBackend)."""

    name = "aws"

    def __init__(self, clients: dict[str, Any] | None = None, now: Callable[[], float] = time.time):
        # Tests inject moto-backed clients ("sagemaker:REGION", "sagemaker-runtime:REGION",
        # "cloudwatch:REGION"); otherwise built per region from the usual AWS credential chain.
        self.clients = sdk.Clients(clients)
        self.now = now  # the end of a traffic() window (tests inject their clock)

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
        low, high = prepared.block.min_replicas, prepared.block.max_replicas
        notes = (
            f"the container reads the artifact from {MODEL_DIR} (SageMaker extracts "
            "model.tar.gz there); " + serving.SERVING_ROOT_NOTE,
            f"Application Auto Scaling keeps {low}-{high} instances, tracking "
            f"{TARGET_INVOCATIONS_PER_INSTANCE:g} invocations per instance per minute"
            if high > low
            else f"a fixed {low} instance(s): deploy.max_replicas = min_replicas, no autoscaling",
        )
        return prepared.plan(requests, notes)

    # --- deploy ----------------------------------------------------------------------

    def deploy(self, plan: EndpointPlan) -> Deployed:
        return serving.deploy(plan, self._hosting(plan.region), _ref(plan))

    def _hosting(self, region: str) -> _Hosting:
        return _Hosting(
            self.clients.get("sagemaker", region),
            _Scaling(lambda: self.clients.get("application-autoscaling", region)),
        )

    # --- releases (ReleaseBackend): two production variants of one endpoint ----------

    def deploy_candidate(self, plan: EndpointPlan, stable: EndpointRef | None) -> EndpointRef:
        """The candidate as a second variant beside the stable one, with weight 0.

        CreateModel and CreateEndpointConfig with the plan's own bodies (so a later deploy
        of the same plan finds them), then an endpoint config holding the endpoint's
        variants as they are plus the candidate's with InitialVariantWeight 0 (botocore's
        sagemaker model: VariantWeight, min 0), then UpdateEndpoint onto it with
        RetainAllVariantProperties, so the stable variant keeps its live weight and instance
        count (autoscaling may have changed it), and DescribeEndpoint until InService. The
        stable variant's scalable target stays: SageMaker refuses an update that changes or
        removes a registered variant, and this one does neither (endpoint-scaling-update.html).
        The candidate is not registered for autoscaling during the canary: it serves a
        share at its min_replicas instances. With no stable version, this is deploy().
        """
        if stable is None:
            return self.deploy(plan).ref
        sm, hosting = self.clients.get("sagemaker", plan.region), self._hosting(plan.region)
        bodies = {r.api: r.body for r in plan.requests}
        found = _describe(sm, "endpoint", plan.endpoint)
        if found is None:
            raise ProviderError(
                f"SageMaker endpoint {plan.endpoint} not found: its stable version "
                f"{stable.deployment} should be serving it",
                ErrorKind.NOT_FOUND,
            )
        for api in (CREATE_MODEL, CREATE_CONFIG):
            hosting.apply(Request(api, bodies[api]))
        hosting.wait_in_service(plan.endpoint)  # an endpoint being updated refuses another
        found = _describe(sm, "endpoint", plan.endpoint) or found
        current = _live_config(sm, found)
        variants = current["ProductionVariants"]
        if plan.deployment in (v["VariantName"] for v in variants):
            return _ref(plan)  # already beside it
        own = bodies[CREATE_CONFIG]
        candidate = {**own["ProductionVariants"][0], "InitialVariantWeight": 0.0}
        both = [*variants, candidate]
        config = {
            "EndpointConfigName": _config_name(plan.endpoint, both),
            "ProductionVariants": both,
            "Tags": own["Tags"],
        }
        hosting.apply(Request(CREATE_CONFIG, config))
        _update_endpoint(sm, plan.endpoint, config["EndpointConfigName"])
        hosting.wait_in_service(plan.endpoint)
        return _ref(plan)

    def set_traffic(self, ref: EndpointRef, weights: dict[str, int]) -> None:
        """UpdateEndpointWeightsAndCapacities: DesiredWeight per variant (relative weights;
        percentages summing to 100 are such weights), then DescribeEndpoint until InService.
        Instance counts are left alone (no DesiredInstanceCount). A variant already gone
        that is asked for 0 is left out (a rollback resumed after its retire)."""
        sm, hosting = (
            self.clients.get("sagemaker", ref.ids["region"]),
            self._hosting(ref.ids["region"]),
        )
        found = _describe(sm, "endpoint", ref.endpoint)
        if found is None:
            raise ProviderError(f"SageMaker endpoint {ref.endpoint} not found", ErrorKind.NOT_FOUND)
        present = {v["VariantName"] for v in found.get("ProductionVariants") or []}
        desired = [
            {"VariantName": name, "DesiredWeight": float(weight)}
            for name, weight in sorted(weights.items())
            if weight or name in present
        ]
        hosting.wait_in_service(ref.endpoint)
        sdk.call(
            lambda: sm.update_endpoint_weights_and_capacities(
                EndpointName=ref.endpoint, DesiredWeightsAndCapacities=desired
            ),
            f"UpdateEndpointWeightsAndCapacities {ref.endpoint}",
        )
        hosting.wait_in_service(ref.endpoint)

    def invoke_deployment(
        self, ref: EndpointRef, deployment: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """InvokeEndpoint with TargetVariant: that variant alone, whatever its weight."""
        runtime = self.clients.get("sagemaker-runtime", ref.ids["region"])
        return sdk.invoke_endpoint(runtime, ref.endpoint, body, target_variant=deployment)

    def traffic(self, ref: EndpointRef, deployment: str, since: float) -> TrafficSample:
        """The variant's own CloudWatch metrics since `since` (GetMetricData, one period
        spanning the window, so Sum and p95 are over all of it).

        Namespace AWS/SageMaker, dimensions EndpointName and VariantName: Invocations (Sum),
        Invocation5XXErrors (Sum: the model's 5xx answers), ModelLatency (p95; in
        MICROseconds, hence / 1000) (docs.aws.amazon.com/sagemaker/latest/dg/
        monitoring-cloudwatch.html, "Endpoint invocation metrics"). CloudWatch rounds a
        StartTime of under 15 days ago down to the minute (API_GetMetricData.html), so
        the window starts at the minute of `since` and may count the minute's earlier
        requests, the golden probe's included (Invocations counts TargetVariant requests).
        """
        region = ref.ids["region"]
        cw = self.clients.get("cloudwatch", region)
        until = self.now()
        start = int(since // 60) * 60
        end = max(start + 60, -(-int(until) // 60) * 60)
        period = end - start
        dims = [
            {"Name": "EndpointName", "Value": ref.endpoint},
            {"Name": "VariantName", "Value": deployment},
        ]
        queries = [
            {
                "Id": key,
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/SageMaker",
                        "MetricName": metric,
                        "Dimensions": dims,
                    },
                    "Period": period,
                    "Stat": stat,
                },
                "ReturnData": True,
            }
            for key, metric, stat in _TRAFFIC_METRICS
        ]
        values: dict[str, list[float]] = {key: [] for key, _, _ in _TRAFFIC_METRICS}
        token: dict[str, str] = {}
        while True:
            fetch = functools.partial(
                cw.get_metric_data,
                MetricDataQueries=queries,
                StartTime=datetime.fromtimestamp(start, UTC),
                EndTime=datetime.fromtimestamp(end, UTC),
                **token,
            )
            page = sdk.call(fetch, f"GetMetricData AWS/SageMaker {ref.endpoint}/{deployment}")
            for result in page.get("MetricDataResults", []):
                values[result["Id"]] += [float(v) for v in result.get("Values", [])]
            if not page.get("NextToken"):
                break
            token = {"NextToken": page["NextToken"]}
        # More than one period (a window CloudWatch split): the worst period's p95.
        p95_us = max(values["latency"], default=None)
        return TrafficSample(
            deployment=deployment,
            requests=int(sum(values["invocations"])),
            errors=int(sum(values["errors"])),
            p95_ms=None if p95_us is None else p95_us / 1000.0,
            since=since,
            until=until,
        )

    def retire(self, ref: EndpointRef, deployment: str) -> None:
        """Take a variant without traffic off the endpoint, then delete its model and config.

        Its scalable target is deregistered first (SageMaker refuses an UpdateEndpoint that
        removes a registered variant: endpoint-scaling-update.html) and registered again if
        the update is refused. The endpoint moves to a config of the other variants (the
        remaining version's own config when one is left), with RetainAllVariantProperties so
        their live weights and instance counts stay. Absent is fine."""
        region = ref.ids["region"]
        sm, hosting = self.clients.get("sagemaker", region), self._hosting(region)
        found = _describe(sm, "endpoint", ref.endpoint)
        summary = next(
            (
                v
                for v in (found or {}).get("ProductionVariants") or []
                if v["VariantName"] == deployment
            ),
            None,
        )
        if found is not None and summary is not None:
            weight = float(summary.get("CurrentWeight", 1.0))
            others = [v for v in found["ProductionVariants"] if v is not summary]
            if weight > 0 or not others:
                raise ProviderError(
                    f"variant {deployment} of {ref.endpoint} still serves "
                    + ("its only traffic" if not others else f"weight {weight:g}")
                    + "; not removed",
                    ErrorKind.CONFLICT,
                )
            hosting.wait_in_service(ref.endpoint)
            previous = _live_config(sm, found)
            keep = [v for v in previous["ProductionVariants"] if v["VariantName"] != deployment]
            target = self._config_for(sm, hosting, ref.endpoint, previous, keep)
            removed = hosting.scaling.release_one(resource_id(ref.endpoint, deployment))
            try:
                _update_endpoint(sm, ref.endpoint, target)
            except ProviderError as exc:
                raise hosting.scaling.restore(removed, exc) from None
            hosting.wait_in_service(ref.endpoint)
            if _describe(sm, "model", previous["EndpointConfigName"]) is None:
                _delete(sm, "endpoint_config", previous["EndpointConfigName"])  # a pair's
        if _ours(ref.endpoint).fullmatch(deployment):  # only what a deploy named for it
            _delete(sm, "endpoint_config", deployment)
            _delete(sm, "model", deployment)

    def _config_for(
        self,
        sm: Any,
        hosting: _Hosting,
        endpoint: str,
        previous: dict[str, Any],
        keep: list[dict[str, Any]],
    ) -> str:
        """The config holding just `keep`: one version's own config when it is one and reads
        back so, else a new one named after the variants."""
        if len(keep) == 1:
            own = _describe(sm, "endpoint_config", keep[0]["VariantName"])
            if own is not None and [v["VariantName"] for v in own["ProductionVariants"]] == [
                keep[0]["VariantName"]
            ]:
                return own["EndpointConfigName"]
        name = _config_name(endpoint, keep)
        arn = previous.get("EndpointConfigArn")
        tags = _tags(sm, arn) if arn else []
        body = {"EndpointConfigName": name, "ProductionVariants": keep, "Tags": tags}
        hosting.apply(Request(CREATE_CONFIG, body))
        return name

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
        """The endpoint's scalable targets (their policies go with them), the endpoint, then
        every config and model a deploy made for it (each version is named
        ENDPOINT-XXXXXXXX, so versions replaced by UpdateEndpoint go too)."""
        region = ref.ids["region"]
        sm = self.clients.get("sagemaker", region)
        # SageMaker deregisters them itself only when the caller may (docs: "Delete endpoints
        # configured for auto scaling"); doing it here leaves none behind either way.
        scaling = _Scaling(lambda: self.clients.get("application-autoscaling", region))
        for target in scaling.targets(ref.endpoint):
            scaling.deregister(target["ResourceId"])
        _delete(sm, "endpoint", ref.endpoint)
        ours = _ours(ref.endpoint)
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
        # No ManagedInstanceScaling: it scales the instances under inference components
        # (its ScaleInPolicy speaks of component copies), not a model variant's, and
        # SageMaker refuses it on a variant with a ModelName: "ManagedInstanceScaling is only
        # supported for inference component endpoints" (CreateEndpointConfig's
        # ValidationException, seen in hashicorp/terraform-provider-aws#45926's acceptance run
        # and fixed in its tests by #48767). deploy.max_replicas is Application Auto
        # Scaling's MaxCapacity below.
    }
    config = {"EndpointConfigName": name, "ProductionVariants": [variant], "Tags": tags}
    endpoint = {"EndpointName": prepared.endpoint, "EndpointConfigName": name, "Tags": tags}
    return [
        Request(CREATE_MODEL, model),
        Request(CREATE_CONFIG, config),
        Request(CREATE_ENDPOINT, endpoint),
        *scaling_requests(prepared, variant["VariantName"]),
    ]


def resource_id(endpoint: str, variant: str) -> str:
    """Application Auto Scaling's name of a variant (its ResourceId)."""
    return f"endpoint/{endpoint}/variant/{variant}"


def scaling_requests(prepared: serving.Prepared, variant: str) -> list[Request]:
    """RegisterScalableTarget and PutScalingPolicy for the variant, when it has room to scale.

    No RoleARN: Application Auto Scaling then uses (and the first time creates) its
    service-linked role AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint, so the
    caller needs iam:CreateServiceLinkedRole once per account."""
    block = prepared.block
    if block.max_replicas <= block.min_replicas:
        return []  # nothing to scale: InitialInstanceCount is the whole fleet
    target_id = {
        "ServiceNamespace": NAMESPACE,
        "ResourceId": resource_id(prepared.endpoint, variant),
        "ScalableDimension": DIMENSION,
    }
    target = {
        **target_id,
        "MinCapacity": block.min_replicas,
        "MaxCapacity": block.max_replicas,
        # A string map here (botocore's TagMap), not SageMaker's Key/Value list.
        "Tags": dict(prepared.tags.tags),
    }
    policy = {
        "PolicyName": f"{prepared.deployment}-invocations",
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
    return [Request(REGISTER_TARGET, target), Request(PUT_POLICY, policy)]


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
    # The instance range is Application Auto Scaling's when the plan registers the variant;
    # else the fleet is fixed at InitialInstanceCount (ManagedInstanceScaling if present).
    scaling = variant.get("ManagedInstanceScaling") or {}
    target = bodies.get(REGISTER_TARGET)
    fixed = variant["InitialInstanceCount"]
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
        "min_replicas": target["MinCapacity"] if target else scaling.get("MinInstanceCount", fixed),
        "max_replicas": target["MaxCapacity"] if target else scaling.get("MaxInstanceCount", fixed),
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
    """serving.EndpointApi over one region's SageMaker and Application Auto Scaling."""

    def __init__(self, sm: Any, scaling: _Scaling):
        self.sm = sm
        self.scaling = scaling

    def apply(self, request: Request) -> serving.Outcome:
        if request.api == REGISTER_TARGET:
            # AWS's examples register a variant once the endpoint is InService
            # (endpoint-auto-scaling-add-policy.html); a variant still being created is
            # not yet a scalable resource.
            self.wait_in_service(request.body["ResourceId"].split("/")[1])
        if request.api in _SCALING:
            return self.scaling.apply(request)
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
        # The update replaces the variant; SageMaker refuses it while the old variant is a
        # scalable target, so that goes first and comes back if the update is refused.
        keep = resource_id(name, config)  # the new variant: named after its config
        removed = self.scaling.release(name, keep)
        try:
            sdk.call(
                lambda: self.sm.update_endpoint(EndpointName=name, EndpointConfigName=config),
                f"UpdateEndpoint {name}",
            )
        except ProviderError as exc:
            raise self.scaling.restore(removed, exc) from None
        return "updated"

    def wait_in_service(self, endpoint: str) -> None:
        """Poll DescribeEndpoint until InService; Failed (or the deadline) is a ProviderError."""
        deadline = time.monotonic() + IN_SERVICE_TIMEOUT_S
        while True:
            found = _describe(self.sm, "endpoint", endpoint) or {}
            status = found.get("EndpointStatus", "")
            if status == "InService":
                return
            if status == "Failed" or time.monotonic() > deadline:
                why = found.get("FailureReason") or f"still {status or 'absent'}"
                raise ProviderError(
                    f"SageMaker endpoint {endpoint} did not come into service: {why}",
                    ErrorKind.API,
                )
            time.sleep(IN_SERVICE_POLL_S)

    def remove(self, request: Request) -> None:
        if request.api in _SCALING:
            self.scaling.remove(request)
            return
        kind, field = _RESOURCES[request.api]
        _delete(self.sm, kind, request.body[field])

    def describe(self, request: Request) -> str:
        if request.api == PUT_POLICY:
            return f"{request.api} {request.body['PolicyName']}"
        if request.api == REGISTER_TARGET:
            return f"{request.api} {request.body['ResourceId']}"
        _, field = _RESOURCES[request.api]
        return f"{request.api} {request.body[field]}"


_SCALING = (REGISTER_TARGET, PUT_POLICY)
_TARGET_ID = ("ServiceNamespace", "ResourceId", "ScalableDimension")


class _Scaling:
    """Application Auto Scaling of SageMaker variants (the client is built on first use)."""

    def __init__(self, client: Callable[[], Any]):
        self._client = client

    @property
    def aas(self) -> Any:
        return self._client()

    def apply(self, request: Request) -> serving.Outcome:
        """RegisterScalableTarget and PutScalingPolicy are upserts: what reads back equal to
        the body is "existing", else the call is sent ("created" or "updated")."""
        body = request.body
        if request.api == REGISTER_TARGET:
            found = self.target(body["ResourceId"])
            if found is not None and all(
                found.get(k) == body[k] for k in ("MinCapacity", "MaxCapacity")
            ):
                return "existing"
            # Tags only on creation ("To tag an existing scalable target, use TagResource").
            sent = body if found is None else {k: v for k, v in body.items() if k != "Tags"}
            what = f"RegisterScalableTarget {body['ResourceId']}"
            sdk.call(lambda: self.aas.register_scalable_target(**sent), what)
            return "created" if found is None else "updated"
        found = self.policy(body)
        if found is not None and _same_policy(found, body):
            return "existing"
        what = f"PutScalingPolicy {body['PolicyName']}"
        sdk.call(lambda: self.aas.put_scaling_policy(**body), what)
        return "created" if found is None else "updated"

    def remove(self, request: Request) -> None:
        body = request.body
        if request.api == REGISTER_TARGET:
            self.deregister(body["ResourceId"])
            return
        ids = {k: body[k] for k in ("PolicyName", *_TARGET_ID)}
        staging.unless_missing(
            lambda: sdk.call(
                lambda: self.aas.delete_scaling_policy(**ids),
                f"DeleteScalingPolicy {body['PolicyName']}",
            )
        )

    def targets(self, endpoint: str) -> list[dict[str, Any]]:
        """Every scalable target of the endpoint's variants."""
        prefix = f"endpoint/{endpoint}/variant/"
        pages = sdk.call(
            lambda: self.aas.get_paginator("describe_scalable_targets"), "DescribeScalableTargets"
        )
        found = sdk.call(
            lambda: list(pages.paginate(ServiceNamespace=NAMESPACE, ScalableDimension=DIMENSION)),
            "DescribeScalableTargets",
        )
        return [
            t
            for page in found
            for t in page.get("ScalableTargets", [])
            if t["ResourceId"].startswith(prefix)
        ]

    def target(self, resource: str) -> dict[str, Any] | None:
        found = sdk.call(
            lambda: self.aas.describe_scalable_targets(
                ServiceNamespace=NAMESPACE, ResourceIds=[resource], ScalableDimension=DIMENSION
            ),
            f"DescribeScalableTargets {resource}",
        )
        return next(
            (t for t in found.get("ScalableTargets", []) if t["ResourceId"] == resource), None
        )

    def policies(self, resource: str, names: list[str] | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {
            "ServiceNamespace": NAMESPACE,
            "ResourceId": resource,
            "ScalableDimension": DIMENSION,
        }
        if names:
            query["PolicyNames"] = names
        found = sdk.call(
            lambda: self.aas.describe_scaling_policies(**query),
            f"DescribeScalingPolicies {resource}",
        )
        return [p for p in found.get("ScalingPolicies", []) if p["ResourceId"] == resource]

    def policy(self, body: dict[str, Any]) -> dict[str, Any] | None:
        found = self.policies(body["ResourceId"], [body["PolicyName"]])
        return next((p for p in found if p["PolicyName"] == body["PolicyName"]), None)

    def deregister(self, resource: str) -> None:
        """Deregister one variant (its policies go with it); absent is fine."""
        if self.target(resource) is None:
            return
        staging.unless_missing(
            lambda: sdk.call(
                lambda: self.aas.deregister_scalable_target(
                    ServiceNamespace=NAMESPACE, ResourceId=resource, ScalableDimension=DIMENSION
                ),
                f"DeregisterScalableTarget {resource}",
            )
        )

    def release_one(self, resource: str) -> list[tuple[dict[str, Any], list[Any]]]:
        """Deregister one variant's target, if registered; what was removed, to restore."""
        target = self.target(resource)
        if target is None:
            return []
        policies = self.policies(resource)
        self.deregister(resource)
        return [(target, policies)]

    def release(self, endpoint: str, keep: str) -> list[tuple[dict[str, Any], list[Any]]]:
        """Deregister the endpoint's targets but `keep`; what was removed, to restore."""
        removed = []
        for target in self.targets(endpoint):
            if target["ResourceId"] == keep:
                continue
            policies = self.policies(target["ResourceId"])
            self.deregister(target["ResourceId"])
            removed.append((target, policies))
        return removed

    def restore(
        self, removed: list[tuple[dict[str, Any], list[Any]]], exc: ProviderError
    ) -> ProviderError:
        """Register again what `release` took away; `exc` with what could not come back."""
        lost = []
        for target, policies in removed:
            resource = target["ResourceId"]
            try:
                sent = {k: target[k] for k in (*_TARGET_ID, "MinCapacity", "MaxCapacity")}
                register = functools.partial(self.aas.register_scalable_target, **sent)
                sdk.call(register, f"RegisterScalableTarget {resource}")
                for found in policies:
                    kept = {k: v for k, v in found.items() if k in _POLICY_FIELDS}
                    put = functools.partial(self.aas.put_scaling_policy, **kept)
                    sdk.call(put, f"PutScalingPolicy {found['PolicyName']}")
            except ProviderError as cleanup:
                lost.append(f"{resource} ({cleanup})")
        if not lost:
            return exc
        return ProviderError(
            f"{exc}; autoscaling of the old variant could NOT be restored (register it by "
            "hand): " + ", ".join(lost),
            exc.kind,
        )


# PutScalingPolicy's input members a DescribeScalingPolicies answer carries back.
_POLICY_FIELDS = (
    "PolicyName",
    *_TARGET_ID,
    "PolicyType",
    "StepScalingPolicyConfiguration",
    "TargetTrackingScalingPolicyConfiguration",
    "PredictiveScalingPolicyConfiguration",
)


def _same_policy(found: dict[str, Any], body: dict[str, Any]) -> bool:
    """The policy reads back as the body asks (members AWS adds on its own are ignored)."""
    if found.get("PolicyType") != body["PolicyType"]:
        return False
    key = "TargetTrackingScalingPolicyConfiguration"
    have = found.get(key) or {}
    return all(have.get(k) == v for k, v in body[key].items())


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


# --- releases: helpers ------------------------------------------------------------------------

# (query id, metric, statistic) of a variant's traffic (monitoring-cloudwatch.html: Invocations
# and Invocation5XXErrors are counts, Sum; ModelLatency in microseconds, percentiles allowed;
# an extended statistic "p95" is a valid MetricStat.Stat, botocore's cloudwatch model).
_TRAFFIC_METRICS = (
    ("invocations", "Invocations", "Sum"),
    ("errors", "Invocation5XXErrors", "Sum"),
    ("latency", "ModelLatency", "p95"),
)


def _ours(endpoint: str) -> re.Pattern[str]:
    """The names a deploy or a release gives this endpoint's models and configs."""
    return re.compile(re.escape(endpoint) + r"-[0-9a-f]{8}")


def _config_name(endpoint: str, variants: list[dict[str, Any]]) -> str:
    """An endpoint config of several variants, named after them (ENDPOINT-XXXXXXXX like a
    deployment's, so delete_endpoint finds it; variants are named by content, so the same
    name is the same body)."""
    names = "+".join(sorted(v["VariantName"] for v in variants))
    return f"{endpoint}-{hashlib.sha256(names.encode()).hexdigest()[:8]}"


def _live_config(sm: Any, endpoint: dict[str, Any]) -> dict[str, Any]:
    """DescribeEndpointConfig of the config the endpoint runs."""
    name = endpoint["EndpointConfigName"]
    found = _describe(sm, "endpoint_config", name)
    if found is None:
        raise ProviderError(
            f"endpoint config {name} of {endpoint['EndpointName']} not found", ErrorKind.NOT_FOUND
        )
    return found


def _update_endpoint(sm: Any, endpoint: str, config: str) -> None:
    """UpdateEndpoint keeping the live variants' weights and instance counts
    (RetainAllVariantProperties, botocore's sagemaker model); a new variant takes the
    config's InitialVariantWeight and InitialInstanceCount."""
    sdk.call(
        lambda: sm.update_endpoint(
            EndpointName=endpoint, EndpointConfigName=config, RetainAllVariantProperties=True
        ),
        f"UpdateEndpoint {endpoint}",
    )


def _tags(sm: Any, arn: str) -> list[dict[str, str]]:
    found = sdk.call(lambda: sm.list_tags(ResourceArn=arn), f"ListTags {arn}")
    return list(found.get("Tags", []))


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
