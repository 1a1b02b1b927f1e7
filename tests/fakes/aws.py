"""AWS for tests: moto behind real boto3 clients, in-process (`mock_aws`) or over HTTP
(`moto_server`, a ThreadedMotoServer on loopback, for the CLI in a subprocess), and
BotocoreFake for what moto lacks (status transitions, StopTrainingJob, chosen errors).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

REGION = "us-east-1"
BUCKET = "recipe-artifacts-123456789012"  # the bucket the catalog recipes name
ACCOUNT = "123456789012"  # moto's default account
EKS_ARN = "arn:aws:eks:us-east-1:123456789012:cluster/hyperpod-eks"  # the HyperPod recipe's
FAKE_KEYS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}
NO_CREDENTIALS = (
    "no AWS credentials found (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY, or run `aws sso login`)"
)


def use_fake_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials moto accepts, and nothing that would send boto3 elsewhere."""
    for key, value in FAKE_KEYS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


def without_credentials(env: dict[str, str], nowhere: str) -> dict[str, str]:
    """`env` with every source of the AWS credential chain removed (files point at `nowhere`)."""
    kept = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    return {
        **kept,
        "AWS_SHARED_CREDENTIALS_FILE": nowhere,
        "AWS_CONFIG_FILE": nowhere,
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance metadata service either
    }


def bucket(region: str = REGION) -> Any:
    """An S3 client with the recipes' bucket created (inside mock_aws)."""
    s3 = boto3.client("s3", region_name=region)
    s3.create_bucket(Bucket=BUCKET)
    return s3


def stored_objects(s3: Any) -> dict[str, tuple[bytes, dict[str, str]]]:
    """s3:// URI -> (bytes, tags) of every object in the bucket, as S3 answers them."""
    found = {}
    for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        key = item["Key"]
        data = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        tags = s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]
        found[f"s3://{BUCKET}/{key}"] = (data, {t["Key"]: t["Value"] for t in tags})
    return found


def set_training_job(name: str, primary: str, secondary: str, message: str = "") -> None:
    """What moto's DescribeTrainingJob answers for a job: moto completes jobs at once and
    records no transitions, so tests set the primary and secondary status here (the
    SageMaker states: docs.aws.amazon.com/sagemaker/latest/APIReference/API_DescribeTrainingJob.html)."""
    from moto.sagemaker.models import sagemaker_backends

    job = sagemaker_backends[ACCOUNT][REGION].training_jobs[name]
    job.training_job_status = primary
    job.secondary_status = secondary
    job.secondary_status_transitions = [
        {"Status": secondary, "StartTime": job.creation_time, "StatusMessage": message}
    ]


class BotocoreFake:
    """Answers chosen operations of a real boto3 client at its HTTP layer.

    Registered on botocore's `before-send` event for each watched operation, ahead of
    moto's own handler (moto then ignores an answered request): botocore still serializes and signs the request, then parses the
    answer (and retries it, as its retry mode says) exactly as it would a real one. An
    operation with nothing queued goes on to moto. Every attempt is recorded.
    Error bodies follow the JSON protocol SageMaker speaks: {"__type": CODE, "message": ...}.
    """

    def __init__(self, client: Any):
        self.client = client
        self.service = client.meta.service_model.service_id.hyphenize()
        self.sent: dict[str, list[Any]] = defaultdict(list)  # operation -> AWSPreparedRequest
        self.queued: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        self.always: dict[str, tuple[int, dict[str, Any]]] = {}  # once the queue is empty
        self._watched: set[str] = set()

    def watch(self, operation: str) -> BotocoreFake:
        if operation not in self._watched:
            self._watched.add(operation)
            self.client.meta.events.register_first(
                f"before-send.{self.service}.{operation}",
                lambda request, **_: self._send(operation, request),
            )
        return self

    def answer(
        self, operation: str, status: int, body: dict[str, Any], times: int | None = 1
    ) -> None:
        """The next `times` attempts get this answer; every later one too when times is None."""
        self.watch(operation)
        if times is None:
            self.always[operation] = (status, body)
        else:
            self.queued[operation] += [(status, body)] * times

    def error(
        self, operation: str, status: int, code: str, message: str, times: int | None = 1
    ) -> None:
        self.answer(operation, status, {"__type": code, "message": message}, times)

    def calls(self, operation: str) -> int:
        """HTTP attempts, retries included."""
        return len(self.sent[operation])

    def bodies(self, operation: str) -> list[Any]:
        return [json.loads(r.body) for r in self.sent[operation]]

    def _send(self, operation: str, request: Any) -> Any:
        from botocore.awsrequest import AWSResponse
        from moto.core.botocore_stubber import MockRawResponse

        self.sent[operation].append(request)
        if self.queued[operation]:
            status, body = self.queued[operation].pop(0)
        elif operation in self.always:
            status, body = self.always[operation]
        else:
            return None  # moto answers
        # botocore calls every before-send handler and keeps the first answer, so moto would
        # still act on this request (create the job we refused): readdress it away from moto.
        request.url = "https://answered-by-botocore-fake.invalid/"
        headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": "fake"}
        return AWSResponse(request.url, status, headers, MockRawResponse(json.dumps(body)))


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto over HTTP on loopback, for boto3 in another process (AWS_ENDPOINT_URL)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def http_client(service: str, endpoint: str) -> Any:
    """A boto3 client of the moto server at `endpoint`."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def server_env(endpoint: str) -> dict[str, str]:
    """What a `recipe` subprocess needs to reach the moto server as its AWS."""
    return {**FAKE_KEYS, "AWS_ENDPOINT_URL": endpoint}


# --- SageMaker hosting: what moto lacks of real-time endpoints -------------------------------


def _answer(request: Any, status: int, body: Any, headers: dict[str, str]) -> Any:
    """An HTTP answer botocore parses as if the service had sent it (moto does not see it)."""
    from botocore.awsrequest import AWSResponse
    from moto.core.botocore_stubber import MockRawResponse

    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request.url = "https://answered-by-botocore-fake.invalid/"
    headers = {"x-amzn-RequestId": "fake", "Content-Length": str(len(data)), **headers}
    return AWSResponse(request.url, status, headers, MockRawResponse(data))


def _hosting(region: str = REGION) -> Any:
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[ACCOUNT][region]


def _arn(kind: str, name: str, region: str = REGION) -> str:
    return f"arn:aws:sagemaker:{region}:{ACCOUNT}:{kind}/{name.lower()}"


class SageMakerHosting(BotocoreFake):
    """The SageMaker control plane of real-time endpoints over moto, with what moto lacks:

    - UpdateEndpoint (moto has none): the endpoint moves to the new config's variants, each
      with its weight (a weight of 0 included, which moto's CreateEndpoint drops), and with
      RetainAllVariantProperties a variant already live keeps its weight and instance count;
    - UpdateEndpointWeightsAndCapacities: moto's sets a variant's instance count to None when
      the body has no DesiredInstanceCount; here the body is checked against botocore's model
      (required members, VariantWeight >= 0), refused while the endpoint is not InService or
      names a variant it lacks, and only what it names changes (Updating with settle=False);
    - Create* of a name that exists is refused, as SageMaker does ("Cannot create already
      existing model|endpoint configuration|endpoint", ValidationException), where moto would
      silently replace it;
    - CreateEndpointConfig refuses ManagedInstanceScaling on a model variant, as SageMaker
      does ("ManagedInstanceScaling is only supported for inference component endpoints.",
      hashicorp/terraform-provider-aws#45926);
    - endpoint states: moto puts a new endpoint InService at once; `settle=False` leaves an
      updated one Updating, as SageMaker does until the new fleet is healthy; `set_status`
      sets any state (DescribeEndpoint's EndpointStatus and FailureReason).

    Errors queued with `error()` (BotocoreFake) come first, for the Nth-call failures.
    """

    _OWN = (
        "CreateModel",
        "CreateEndpointConfig",
        "CreateEndpoint",
        "UpdateEndpoint",
        "UpdateEndpointWeightsAndCapacities",
    )

    def __init__(self, client: Any, settle: bool = True):
        super().__init__(client)
        self.settle = settle
        self.region = client.meta.region_name
        self.accepted: dict[str, list[tuple[dict[str, Any], bool]]] = defaultdict(list)
        self.weight_history: list[dict[str, float]] = []  # after each accepted weights change
        for operation in (*self._OWN, "DeleteModel", "DeleteEndpointConfig", "DeleteEndpoint"):
            self.watch(operation)

    def created(self, operation: str) -> list[dict[str, Any]]:
        """Bodies of the calls SageMaker accepted (queued errors and refusals left out)."""
        return [body for body, ok in self.accepted[operation] if ok]

    def set_status(self, endpoint: str, status: str, reason: str | None = None) -> None:
        found = _hosting(self.region).endpoints[endpoint]
        found.endpoint_status = status
        found.failure_reason = reason

    def _send(self, operation: str, request: Any) -> Any:
        answered = super()._send(operation, request)
        body = json.loads(request.body) if request.body else {}
        if answered is not None:
            self.accepted[operation].append((body, False))
            return answered
        refusal = self._refusal(operation, body)
        self.accepted[operation].append((body, refusal is None))
        if refusal is not None:
            return _answer(
                request,
                400,
                {"__type": "ValidationException", "message": refusal},
                {"Content-Type": "application/x-amz-json-1.1"},
            )
        if operation == "UpdateEndpoint":
            return self._update(request, body)
        if operation == "UpdateEndpointWeightsAndCapacities":
            return self._weights(request, body)
        if operation == "CreateEndpointConfig":
            return self._create_config(request, body)
        return None  # moto answers

    def _create_config(self, request: Any, body: dict[str, Any]) -> Any:
        """moto's CreateEndpointConfig, checking instance types against botocore's model
        (ProductionVariantInstanceType) instead of moto's own list, which stops at ml.g4dn."""
        from unittest import mock

        from moto.core.exceptions import ServiceException
        from moto.sagemaker.models import FakeEndpointConfig

        enum = self.client.meta.service_model.shape_for("ProductionVariantInstanceType").enum

        def check(_: Any, instance_type: str) -> None:
            if instance_type not in enum:
                raise ServiceException(
                    "ValidationException",
                    f"Value '{instance_type}' at 'instanceType' failed to satisfy constraint: "
                    "Member must satisfy enum value set",
                )

        json_type = {"Content-Type": "application/x-amz-json-1.1"}
        try:
            with mock.patch.object(FakeEndpointConfig, "validate_instance_type", check):
                config = _hosting(self.region).create_endpoint_config(
                    endpoint_config_name=body["EndpointConfigName"],
                    production_variants=body["ProductionVariants"],
                    data_capture_config=body.get("DataCaptureConfig", {}),
                    async_inference_config=body.get("AsyncInferenceConfig", {}),
                    tags=body.get("Tags", []),
                    kms_key_id=body.get("KmsKeyId", ""),
                )
        except ServiceException as exc:
            self.accepted["CreateEndpointConfig"][-1] = (body, False)
            return _answer(request, 400, {"__type": exc.code, "message": exc.message}, json_type)
        return _answer(request, 200, {"EndpointConfigArn": config.endpoint_config_arn}, json_type)

    def _refusal(self, operation: str, body: dict[str, Any]) -> str | None:
        backend = _hosting(self.region)
        if operation == "CreateModel" and body["ModelName"] in backend._models:
            return f'Cannot create already existing model "{_arn("model", body["ModelName"])}".'
        if operation == "CreateEndpointConfig" and body["EndpointConfigName"] in (
            backend.endpoint_configs
        ):
            arn = _arn("endpoint-config", body["EndpointConfigName"])
            return f'Cannot create already existing endpoint configuration "{arn}".'
        if operation == "CreateEndpointConfig" and any(
            "ManagedInstanceScaling" in v and "ModelName" in v for v in body["ProductionVariants"]
        ):
            return "ManagedInstanceScaling is only supported for inference component endpoints."
        if operation == "CreateEndpoint" and body["EndpointName"] in backend.endpoints:
            arn = _arn("endpoint", body["EndpointName"])
            return f'Cannot create already existing endpoint "{arn}".'
        if operation == "UpdateEndpoint":
            if body["EndpointName"] not in backend.endpoints:
                return f'Could not find endpoint "{_arn("endpoint", body["EndpointName"])}".'
            if body["EndpointConfigName"] not in backend.endpoint_configs:
                arn = _arn("endpoint-config", body["EndpointConfigName"])
                return f'Could not find endpoint configuration "{arn}".'
            status = backend.endpoints[body["EndpointName"]].endpoint_status
            if status not in ("InService", "Failed"):
                arn = _arn("endpoint", body["EndpointName"])
                return f'Cannot update in-progress endpoint "{arn}".'
            registered = _registered_variants(self.region, body["EndpointName"])
            kept = {
                v["VariantName"]
                for v in backend.endpoint_configs[body["EndpointConfigName"]].production_variants
            }
            if registered - kept:
                # SageMaker refuses to remove a variant registered for autoscaling
                # (docs: endpoint-scaling-update.html); the wording here is assumed.
                return (
                    f"The variant(s) {', '.join(sorted(registered - kept))} are registered for "
                    "autoscaling; deregister them before removing them from the endpoint."
                )
        if operation == "UpdateEndpointWeightsAndCapacities":
            return self._weights_refusal(backend, body)
        return None

    def _weights_refusal(self, backend: Any, body: dict[str, Any]) -> str | None:
        from botocore.validate import ParamValidator

        shape = self.client.meta.service_model.operation_model(
            "UpdateEndpointWeightsAndCapacities"
        ).input_shape
        report = ParamValidator().validate(body, shape)
        if report.has_errors():
            return report.generate_report()
        arn = _arn("endpoint", body["EndpointName"])
        if body["EndpointName"] not in backend.endpoints:
            return f'Could not find endpoint "{arn}".'
        endpoint = backend.endpoints[body["EndpointName"]]
        if endpoint.endpoint_status != "InService":
            return f'Cannot update in-progress endpoint "{arn}".'
        live = {v["VariantName"] for v in endpoint.production_variants}
        names = [d["VariantName"] for d in body["DesiredWeightsAndCapacities"]]
        if len(set(names)) != len(names):
            return "The variant names in the request must be unique."
        missing = [n for n in names if n not in live]
        if missing:
            return (
                f'The variant name(s) "{", ".join(missing)}" is/are not present within '
                f'endpoint configuration "{endpoint.endpoint_config_name}".'
            )
        return None

    def _weights(self, request: Any, body: dict[str, Any]) -> Any:
        endpoint = _hosting(self.region).endpoints[body["EndpointName"]]
        for desired in body["DesiredWeightsAndCapacities"]:
            variant = next(
                v
                for v in endpoint.production_variants
                if v["VariantName"] == desired["VariantName"]
            )
            if "DesiredWeight" in desired:
                variant["CurrentWeight"] = variant["DesiredWeight"] = desired["DesiredWeight"]
            if "DesiredInstanceCount" in desired:
                count = desired["DesiredInstanceCount"]
                variant["CurrentInstanceCount"] = variant["DesiredInstanceCount"] = count
        endpoint.endpoint_status = "InService" if self.settle else "Updating"
        self.weight_history.append(weights(endpoint))
        return _answer(
            request,
            200,
            {"EndpointArn": endpoint.arn},
            {"Content-Type": "application/x-amz-json-1.1"},
        )

    def weights(self, endpoint: str) -> dict[str, float]:
        """VariantName -> CurrentWeight, as DescribeEndpoint reads back."""
        return weights(_hosting(self.region).endpoints[endpoint])

    def _update(self, request: Any, body: dict[str, Any]) -> Any:
        backend = _hosting(self.region)
        endpoint = backend.endpoints[body["EndpointName"]]
        config = backend.endpoint_configs[body["EndpointConfigName"]]
        retain = body.get("RetainAllVariantProperties", False)
        live = {v["VariantName"]: v for v in endpoint.production_variants}
        endpoint.endpoint_config_name = config.endpoint_config_name
        variants = endpoint._process_production_variants(config.production_variants)
        for variant, wanted in zip(variants, config.production_variants, strict=True):
            weight = float(wanted.get("InitialVariantWeight", 1.0))
            variant["CurrentWeight"] = variant["DesiredWeight"] = weight
            before = live.get(variant["VariantName"])
            if retain and before is not None:
                for key in ("CurrentWeight", "DesiredWeight"):
                    variant[key] = before.get(key, 1.0)
                for key in ("CurrentInstanceCount", "DesiredInstanceCount"):
                    if key in before:
                        variant[key] = before[key]
        endpoint.production_variants = variants
        endpoint.endpoint_status = "InService" if self.settle else "Updating"
        return _answer(
            request,
            200,
            {"EndpointArn": endpoint.arn},
            {"Content-Type": "application/x-amz-json-1.1"},
        )


class ApplicationAutoScaling(BotocoreFake):
    """moto's Application Auto Scaling, every call recorded (moto answers them all; errors
    queued with `error()` come first). `created(op)`: the bodies moto accepted."""

    OPERATIONS = (
        "RegisterScalableTarget",
        "PutScalingPolicy",
        "DeregisterScalableTarget",
        "DeleteScalingPolicy",
    )

    def __init__(self, client: Any):
        super().__init__(client)
        self.accepted: dict[str, list[tuple[dict[str, Any], bool]]] = defaultdict(list)
        for operation in self.OPERATIONS:
            self.watch(operation)

    def created(self, operation: str) -> list[dict[str, Any]]:
        return [body for body, ok in self.accepted[operation] if ok]

    def targets(self) -> dict[str, tuple[int, int]]:
        """ResourceId -> (MinCapacity, MaxCapacity) of every registered SageMaker variant."""
        found = self.client.describe_scalable_targets(ServiceNamespace="sagemaker")
        return {
            t["ResourceId"]: (t["MinCapacity"], t["MaxCapacity"]) for t in found["ScalableTargets"]
        }

    def policies(self) -> dict[str, str]:
        """PolicyName -> ResourceId of every SageMaker scaling policy."""
        found = self.client.describe_scaling_policies(ServiceNamespace="sagemaker")
        return {p["PolicyName"]: p["ResourceId"] for p in found["ScalingPolicies"]}

    def _send(self, operation: str, request: Any) -> Any:
        answered = super()._send(operation, request)
        body = json.loads(request.body) if request.body else {}
        self.accepted[operation].append((body, answered is None))
        if answered is None and operation == "DeregisterScalableTarget":
            # AWS: "Deregistering a scalable target deletes the scaling policies ... associated
            # with it" (botocore's model); moto keeps them, so they go here first.
            from moto.applicationautoscaling.models import applicationautoscaling_backends

            backend = applicationautoscaling_backends[ACCOUNT][self.client.meta.region_name]
            for key, policy in list(backend.policies.items()):
                if policy.resource_id == body["ResourceId"]:
                    del backend.policies[key]
        return answered


class SageMakerRuntime(BotocoreFake):
    """InvokeEndpoint as SageMaker's runtime and the vLLM container behind it answer it.

    The runtime finds the endpoint in moto's SageMaker (else ValidationError "Endpoint NAME
    of account ACCOUNT not found.", 400) and passes the body to the container's /invocations:
    vLLM validates it as a ChatCompletionRequest and answers an OpenAI chat.completion for a
    model it serves (the LoRA modules, or SM_VLLM_SERVED_MODEL_NAME / SM_VLLM_MODEL). A
    container's error reaches the caller as ModelError (424) with OriginalStatusCode and
    OriginalMessage (botocore's sagemaker-runtime model; API_runtime_InvokeEndpoint.html).
    """

    def __init__(self, client: Any):
        super().__init__(client)
        self.region = client.meta.region_name
        self.invocations: list[dict[str, Any]] = []  # endpoint, headers, body per call
        self.watch("InvokeEndpoint")

    def _send(self, operation: str, request: Any) -> Any:
        answered = super()._send(operation, request)
        if answered is not None:
            return answered
        name = request.url.rstrip("/").split("/")[-2]
        headers = {
            k.lower(): (v.decode() if isinstance(v, bytes) else v)
            for k, v in request.headers.items()
        }
        body = json.loads(request.body)
        self.invocations.append({"endpoint": name, "headers": headers, "body": body})
        backend = _hosting(self.region)
        if name not in backend.endpoints:
            return _runtime_error(
                request, 400, "ValidationError", f"Endpoint {name} of account {ACCOUNT} not found."
            )
        endpoint = backend.endpoints[name]
        target = headers.get("x-amzn-sagemaker-target-variant")
        names = [v["VariantName"] for v in endpoint.production_variants]
        if target is not None and target not in names:
            # Not checked against the service: the message SageMaker gives is assumed.
            return _runtime_error(
                request,
                400,
                "ValidationError",
                f"Target variant {target} does not exist on endpoint {name}.",
            )
        # Without a target, the variant with the greatest weight answers (deterministic).
        variant = (
            target
            or max(endpoint.production_variants, key=lambda v: float(v.get("CurrentWeight", 1.0)))[
                "VariantName"
            ]
        )
        self.invocations[-1]["variant"] = variant
        served = served_models(endpoint, variant)
        if body.get("model") not in served:
            # vLLM's answer to an unknown model (openai serving: check_model -> 404).
            original = json.dumps(
                {
                    "error": {
                        "message": f"The model `{body.get('model')}` does not exist.",
                        "type": "NotFoundError",
                        "param": None,
                        "code": 404,
                    }
                }
            )
            return _runtime_error(
                request,
                424,
                "ModelError",
                f'Received client error (404) from primary with message "{original}".',
                OriginalStatusCode=404,
                OriginalMessage=original,
            )
        answer = chat_completion(body)
        return _answer(
            request,
            200,
            answer,
            {"Content-Type": "application/json", "x-Amzn-Invoked-Production-Variant": variant},
        )


def _registered_variants(region: str, endpoint: str) -> set[str]:
    """The endpoint's variants that moto's Application Auto Scaling has as scalable targets."""
    from moto.applicationautoscaling.models import applicationautoscaling_backends

    prefix = f"endpoint/{endpoint}/variant/"
    targets = applicationautoscaling_backends[ACCOUNT][region].targets
    return {
        resource[len(prefix) :]
        for by_dimension in targets.values()
        for resource in by_dimension
        if resource.startswith(prefix)
    }


def weights(endpoint: Any) -> dict[str, float]:
    return {
        v["VariantName"]: float(v.get("CurrentWeight", 1.0)) for v in endpoint.production_variants
    }


def served_models(endpoint: Any, variant: str | None = None) -> set[str]:
    """The names the variant's vLLM answers to (the first variant's by default), from its
    model's SM_VLLM_* variables."""
    backend = _hosting(endpoint.arn.split(":")[3])
    config = backend.endpoint_configs[endpoint.endpoint_config_name]
    found = config.production_variants
    chosen = next((v for v in found if v["VariantName"] == variant), found[0])
    model = backend._models[chosen["ModelName"]]
    env = model.primary_container.get("Environment", {})
    names = {m["name"] for m in json.loads(env.get("SM_VLLM_LORA_MODULES", "[]"))}
    names.add(env.get("SM_VLLM_SERVED_MODEL_NAME") or env.get("SM_VLLM_MODEL", ""))
    return names


def chat_completion(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat.completion for the request (vLLM's ChatCompletionResponse shape)."""
    question = body["messages"][-1]["content"]
    content = "billing" if "charge" in str(question).lower() else "technical"
    return {
        "id": "chatcmpl-fake0001",
        "object": "chat.completion",
        "created": 1_790_000_000,
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "tool_calls": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
    }


def _runtime_error(request: Any, status: int, code: str, message: str, **extra: Any) -> Any:
    """sagemaker-runtime's REST-JSON error: the code in x-amzn-ErrorType, fields in the body."""
    return _answer(
        request,
        status,
        {"message": message, "Message": message, **extra},
        {
            "Content-Type": "application/json",
            "x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazon.coral.service/",
        },
    )


# --- CloudWatch: a variant's metrics as SageMaker publishes them -----------------------------


@contextlib.contextmanager
def cloudwatch_percentiles() -> Iterator[None]:
    """moto's GetMetricData with extended statistics (pNN), which moto answers with nothing:
    the nearest-rank percentile of the period's raw values (published with Values/Counts or
    Value; CloudWatch computes no percentile from statistic sets either)."""
    from unittest import mock

    from moto.cloudwatch.models import Statistics

    plain = Statistics.get_statistics_for_type

    def stat(self: Any, name: str) -> Any:
        if name.startswith("p") and name[1:].replace(".", "", 1).isdigit():
            values = sorted(self.metric_single_values_list)
            if not values:
                return None
            rank = max(1, math.ceil(float(name[1:]) / 100 * len(values)))
            return values[rank - 1]
        return plain(self, name)

    with mock.patch.object(Statistics, "get_statistics_for_type", stat):
        yield


def put_variant_metrics(
    cw: Any,
    endpoint: str,
    variant: str,
    at: float,
    invocations: int,
    errors_5xx: int = 0,
    latencies_ms: list[float] | None = None,
) -> None:
    """One minute of a variant's metrics as SageMaker puts them in CloudWatch: namespace
    AWS/SageMaker, dimensions EndpointName and VariantName; Invocations and
    Invocation5XXErrors counts, ModelLatency in MICROseconds (docs.aws.amazon.com/sagemaker/
    latest/dg/monitoring-cloudwatch.html)."""
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(at, UTC)
    dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
    data: list[dict[str, Any]] = [
        {"MetricName": "Invocations", "Dimensions": dims, "Timestamp": when, "Value": invocations},
        {
            "MetricName": "Invocation5XXErrors",
            "Dimensions": dims,
            "Timestamp": when,
            "Value": errors_5xx,
        },
    ]
    if latencies_ms:
        data.append(
            {
                "MetricName": "ModelLatency",
                "Dimensions": dims,
                "Timestamp": when,
                "Values": [ms * 1000 for ms in latencies_ms],
                "Unit": "Microseconds",
            }
        )
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=data)


# --- Cost Explorer and CUR exports (providers.aws.billing) ------------------------------------

MOTO_CE_RESULTS = "http://motoapi.amazonaws.com/moto-api/static/ce/cost-and-usage-results"


def ce_client(max_attempts: int = 1) -> Any:
    """A Cost Explorer client (inside mock_aws) with botocore's own retries off by default, so
    a test sees the retries our code makes."""
    from botocore.config import Config

    return boto3.client(
        "ce", region_name=REGION, config=Config(retries={"total_max_attempts": max_attempts})
    )


def register_cost_and_usage(pages: list[dict[str, Any]]) -> None:
    """Queue GetCostAndUsage answers through moto's own API (moto/ce/models.py: each new
    request body takes the next queued result, so a NextPageToken request gets the next page)."""
    import requests

    answer = requests.post(MOTO_CE_RESULTS, json={"results": pages}, timeout=10)
    assert answer.status_code == 201, answer.text


def cost_explorer_pages(
    charges: list[Any], tag_key: str | None, days_per_page: int = 10
) -> list[dict[str, Any]]:
    """What GetCostAndUsage answers for synthetic charges, DAILY, grouped by TAG `tag_key` and
    RECORD_TYPE, split into pages of `days_per_page` days linked by NextPageToken.

    Shapes from botocore's ce model (ResultByTime, Group, MetricValue): amounts are strings,
    TAG group keys are "key$value" ("key$" when the line has no such tag), RECORD_TYPE values
    as Cost Explorer names them (Usage, Credit, Refund, Tax), Estimated for days not final."""
    by_day: dict[Any, dict[tuple[str, ...], list[float]]] = defaultdict(dict)
    estimated: dict[Any, bool] = {}
    for c in charges:
        if c.provider != "aws":
            continue
        day = c.start.date()
        keys = ((f"{tag_key}${c.tags.get(tag_key, '')}",) if tag_key else ()) + (c.charge_kind,)
        sums = by_day[day].setdefault(keys, [0.0, 0.0, 0.0])
        sums[0] += c.billed_cost
        sums[1] += c.effective_cost
        sums[2] += c.quantity
        estimated[day] = estimated.get(day, False) or not c.final
    days = sorted(by_day)
    results = []
    for day in days:
        groups = [
            {
                "Keys": list(keys),
                "Metrics": {
                    "UnblendedCost": {"Amount": f"{v[0]:.10f}", "Unit": "USD"},
                    "AmortizedCost": {"Amount": f"{v[1]:.10f}", "Unit": "USD"},
                },
            }
            for keys, v in sorted(by_day[day].items())
        ]
        results.append(
            {
                "TimePeriod": {"Start": day.isoformat(), "End": (day + _one_day()).isoformat()},
                "Total": {},
                "Groups": groups,
                "Estimated": estimated[day],
            }
        )
    chunks = [results[i : i + days_per_page] for i in range(0, len(results), days_per_page)]
    pages = []
    for n, chunk in enumerate(chunks):
        page: dict[str, Any] = {"ResultsByTime": chunk, "DimensionValueAttributes": []}
        if n + 1 < len(chunks):
            page["NextPageToken"] = f"page-{n + 2}"
        pages.append(page)
    return pages


def _one_day() -> Any:
    from datetime import timedelta

    return timedelta(days=1)


def cost_allocation_tags(fake: BotocoreFake, statuses: dict[str, str]) -> None:
    """ListCostAllocationTags (which moto lacks) answering these keys' statuses, every time."""
    fake.answer(
        "ListCostAllocationTags",
        200,
        {
            "CostAllocationTags": [
                {"TagKey": key, "Type": "UserDefined", "Status": status}
                for key, status in statuses.items()
            ]
        },
        times=None,
    )


# --- Account bootstrap (providers.aws.infra): what moto's CloudFormation leaves out -----------


def complete_moto_bucket(s3: Any, template_text: str, bucket: str) -> None:
    """Set on a bucket moto's CloudFormation created what it dropped from the template.

    moto 5.2's AWS::S3::Bucket reads only BucketEncryption and Tags
    (moto/s3/models.py FakeBucket.create_from_cloudformation_json), so the template's
    PublicAccessBlockConfiguration and VersioningConfiguration are put here, through the S3
    API, from the template's own values (literals there). LifecycleConfiguration and
    AWS::S3::BucketPolicy (a type moto's CloudFormation does not know) are not checked.
    """
    from cfnlint.decode import cfn_yaml

    props = cfn_yaml.loads(template_text)["Resources"]["Bucket"]["Properties"]
    block = {k: bool(v) for k, v in props["PublicAccessBlockConfiguration"].items()}
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=block)
    status = str(props["VersioningConfiguration"]["Status"])
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})


def data_exports(fake: BotocoreFake, exports: list[dict[str, Any]]) -> None:
    """bcm-data-exports (which moto lacks) answering ListExports with these exports, and
    GetExport with the first one, every time. Each export is a CreateExport `Export` body
    plus its ExportArn (shapes: botocore's bcm-data-exports model, ExportReference, Export)."""
    listed = [
        {
            "ExportArn": e["ExportArn"],
            "ExportName": e["Name"],
            "ExportStatus": {"StatusCode": "HEALTHY"},
        }
        for e in exports
    ]
    fake.answer("ListExports", 200, {"Exports": listed}, times=None)
    if exports:
        fake.answer(
            "GetExport",
            200,
            {"Export": exports[0], "ExportStatus": {"StatusCode": "HEALTHY"}},
            times=None,
        )


def tag_activation(fake: BotocoreFake, refused: dict[str, str] | None = None) -> None:
    """UpdateCostAllocationTagsStatus (which moto lacks): every key activated except those in
    `refused` (key -> error code), which come back in Errors as Cost Explorer reports a key it
    has not seen (botocore's ce model, UpdateCostAllocationTagsStatusError)."""
    errors = [
        {"TagKey": key, "Code": code, "Message": f"Tag key {key} not found"}
        for key, code in (refused or {}).items()
    ]
    fake.answer("UpdateCostAllocationTagsStatus", 200, {"Errors": errors}, times=None)


def moto_key_policies_as_text(region: str = REGION) -> None:
    """moto 5.2's AWS::KMS::Key keeps a template's KeyPolicy as the parsed object, where its
    own KMS API (DescribeKey's policy check) expects the JSON text CreateKey stores: make it
    text, as AWS holds it."""
    from moto.kms.models import kms_backends

    for key in kms_backends[ACCOUNT][region].keys.values():
        if not isinstance(key.policy, str):
            key.policy = json.dumps(key.policy)
