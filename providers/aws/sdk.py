"""The only module that imports AWS's SDKs (boto3, botocore, kubernetes for HyperPod).

Imports are lazy, so planning needs no SDK; a missing extra is one typed error.
Every SDK exception leaves this module as a ProviderError with a kind, decided
from the service's error codes (never from our own message text).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import tempfile
import time
from collections.abc import Callable
from typing import Any, TypeVar

from recipes.errors import ErrorKind, ProviderError, kind_for_status, missing_extra

T = TypeVar("T")

# Error codes, from botocore's service models (sagemaker, s3, sts, application-autoscaling)
# and the AWS docs on common errors:
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/CommonErrors.html
# Application Auto Scaling's own: ObjectNotFoundException (no such scalable target or policy),
# ConcurrentUpdateException (another change to the same target is under way),
# LimitExceededException (quota), ValidationException (a refused body: ErrorKind.API).
_AUTH_CODES = {
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "AccessDeniedException",
}
_NOT_FOUND_CODES = {
    "ResourceNotFound",
    "ResourceNotFoundException",
    "NoSuchKey",
    "NoSuchBucket",
    "NotFound",
    "404",
    "ObjectNotFoundException",
}
_CONFLICT_CODES = {
    "ResourceInUse",
    "ConflictException",
    "ConflictError",
    "ConcurrentUpdateException",
}
_THROTTLED_CODES = {
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "SlowDown",
}
_MISSING = re.compile(r"not found|could not find", re.IGNORECASE)
_QUOTA_CODES = {"ResourceLimitExceeded", "ServiceQuotaExceededException", "LimitExceededException"}


def boto3() -> Any:
    try:
        import boto3 as module
    except ImportError:
        raise missing_extra("aws", "boto3") from None
    return module


def exceptions() -> Any:
    boto3()
    import botocore.exceptions as module

    return module


class Clients:
    """boto3 clients per service and region; tests inject moto-backed ones by "service:region"."""

    def __init__(self, injected: dict[str, Any] | None = None):
        self._clients = dict(injected or {})

    def get(self, service: str, region: str) -> Any:
        key = f"{service}:{region}"
        if key not in self._clients:
            self._clients[key] = make_client(service, region)
        return self._clients[key]

    def injected(self, key: str) -> Any | None:
        return self._clients.get(key)

    def remember(self, key: str, client: Any) -> Any:
        self._clients[key] = client
        return client


def make_client(service: str, region: str) -> Any:
    from botocore.config import Config

    sdk = boto3()
    # Standard retry mode backs off on throttling and 5xx answers.
    config = Config(retries={"max_attempts": 8, "mode": "standard"}, user_agent_extra="recipe")
    return sdk.client(service, region_name=region, config=config)


def call(fn: Callable[[], T], what: str) -> T:
    """Run one AWS call; any SDK failure becomes one typed, one-line ProviderError."""
    bex = exceptions()
    try:
        return fn()
    except (bex.BotoCoreError, bex.ClientError) as exc:
        raise error(exc, what) from None


def error(exc: Exception, what: str) -> ProviderError:
    bex = exceptions()
    if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
        return ProviderError(
            "no AWS credentials found (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or run `aws sso login`)",
            ErrorKind.AUTH,
        )
    if isinstance(exc, bex.ClientError):
        detail = exc.response.get("Error", {})
        code, message = detail.get("Code", "Error"), detail.get("Message", "")
        kind = _kind(code, message)
        if kind == ErrorKind.AUTH and code not in ("AccessDenied", "AccessDeniedException"):
            return ProviderError(f"AWS rejected the credentials ({code}): {message}", kind)
        return ProviderError(f"{what} failed: {code}: {message}", kind)
    if isinstance(exc, bex.EndpointConnectionError):
        return ProviderError(f"{what}: cannot reach AWS ({exc})", ErrorKind.UNREACHABLE)
    return ProviderError(f"{what} failed: {exc}")


def _kind(code: str, message: str) -> ErrorKind:
    if code in _AUTH_CODES:
        return ErrorKind.AUTH
    if code in _NOT_FOUND_CODES:
        return ErrorKind.NOT_FOUND
    # SageMaker's Describe* calls answer a missing resource with a ValidationException
    # ("Requested resource not found", "Could not find training job ..."), although
    # botocore's model lists ResourceNotFound: the one place where the text decides.
    if code == "ValidationException" and _MISSING.search(message):
        return ErrorKind.NOT_FOUND
    if code in _CONFLICT_CODES:
        return ErrorKind.CONFLICT
    if code in _THROTTLED_CODES:
        return ErrorKind.THROTTLED
    if code in _QUOTA_CODES:
        return ErrorKind.QUOTA
    return ErrorKind.API


# --- Kubernetes (HyperPod's EKS orchestrator) ------------------------------------------------


class Kube:
    """The two Kubernetes APIs a HyperPod job uses."""

    def __init__(self, api_client: Any):
        client = _kubernetes().client
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)


def _kubernetes() -> Any:
    try:
        import kubernetes
    except ImportError:
        raise missing_extra("aws", "the kubernetes client (HyperPod jobs)") from None
    return kubernetes


def kube(clients: Clients, eks_cluster_arn: str, region: str) -> Kube:
    """The EKS cluster's Kubernetes API (tests inject an ApiClient under "k8s:<arn>")."""
    key = f"k8s:{eks_cluster_arn}"
    client = clients.injected(key)
    if client is None:
        client = clients.remember(key, _eks_api_client(clients, eks_cluster_arn, region))
    return client if isinstance(client, Kube) else Kube(client)


def _eks_api_client(clients: Clients, eks_cluster_arn: str, region: str) -> Any:
    client = _kubernetes().client
    eks = clients.get("eks", region)
    cluster_name = eks_cluster_arn.rsplit("/", 1)[-1]
    info = call(lambda: eks.describe_cluster(name=cluster_name), "eks DescribeCluster")["cluster"]
    config = client.Configuration()
    config.host = info["endpoint"]
    with tempfile.NamedTemporaryFile(prefix="eks-ca-", suffix=".crt", delete=False) as ca:
        ca.write(base64.b64decode(info["certificateAuthority"]["data"]))
    config.ssl_ca_cert = ca.name
    config.api_key = {
        "authorization": "Bearer " + eks_token(clients.get("sts", region), cluster_name)
    }
    return client.ApiClient(config)


def eks_token(sts: Any, cluster_name: str) -> str:
    """What `aws eks get-token` prints: a presigned STS GetCallerIdentity URL, base64url."""
    from botocore.signers import RequestSigner

    service = sts.meta.service_model.service_id
    signer = RequestSigner(
        service,
        sts.meta.region_name,
        "sts",
        "v4",
        sts._request_signer._credentials,
        sts.meta.events,
    )
    url = signer.generate_presigned_url(
        {
            "method": "GET",
            "url": f"https://sts.{sts.meta.region_name}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15",
            "body": {},
            "headers": {"x-k8s-aws-id": cluster_name},
            "context": {},
        },
        region_name=sts.meta.region_name,
        expires_in=60,
        operation_name="",
    )
    return "k8s-aws-v1." + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


# The kubernetes client retries nothing; the API server answers 429 (with Retry-After) when
# it sheds load and 5xx when a webhook or etcd is briefly unavailable. Every call made here
# is safe to repeat: reads, deletes, and creates of a named object (a repeat is a 409).
K8S_ATTEMPTS = 5
K8S_BACKOFF_S = 1.0  # doubled after each attempt; module-level so tests can shorten it
K8S_MAX_WAIT_S = 30.0


def k8s(fn: Callable[[], T], what: str) -> T:
    """One Kubernetes call, retried on 429 and 5xx; an ApiException becomes a typed
    ProviderError."""
    from kubernetes.client.exceptions import ApiException

    for attempt in range(K8S_ATTEMPTS):
        try:
            return fn()
        except ApiException as exc:
            retryable = exc.status == 429 or (exc.status or 0) >= 500
            if retryable and attempt + 1 < K8S_ATTEMPTS:
                time.sleep(_k8s_wait(exc, attempt))
                continue
            reason = exc.reason or ""
            with contextlib.suppress(TypeError, ValueError, AttributeError):
                reason = json.loads(exc.body).get("message", reason)
            kind = kind_for_status(exc.status)
            if retryable:
                kind = ErrorKind.THROTTLED if exc.status == 429 else ErrorKind.UNREACHABLE
            raise ProviderError(
                f"Kubernetes refused to {what}: {exc.status} {reason}", kind
            ) from None
    raise AssertionError("unreachable")  # the loop returns or raises


def _k8s_wait(exc: Any, attempt: int) -> float:
    """Retry-After when the server gives one (seconds), else exponential backoff."""
    headers = exc.headers or {}
    with contextlib.suppress(TypeError, ValueError):
        return min(float(headers.get("Retry-After")), K8S_MAX_WAIT_S)
    return min(K8S_BACKOFF_S * 2**attempt, K8S_MAX_WAIT_S)


# --- SageMaker real-time endpoints (providers.aws.endpoint) ----------------------------------

# sagemaker-runtime speaks REST-JSON, its own error codes (botocore's sagemaker-runtime model,
# InvokeEndpoint: ValidationError, ModelError, ModelNotReadyException, ServiceUnavailable,
# InternalFailure, InternalDependencyException). A missing endpoint is a ValidationError
# "Endpoint NAME of account ACCOUNT not found." (docs.aws.amazon.com/sagemaker/latest/
# APIReference/API_runtime_InvokeEndpoint.html, Errors).
_RUNTIME_UNAVAILABLE = {"ServiceUnavailable", "InternalFailure", "InternalDependencyException"}


def invoke_endpoint(
    runtime: Any, endpoint: str, body: dict[str, Any], target_variant: str | None = None
) -> dict[str, Any]:
    """POST one JSON body to the endpoint's container (/invocations); its JSON answer.

    `target_variant` sends it to that production variant alone, whatever the weights
    (botocore's sagemaker-runtime model, InvokeEndpoint.TargetVariant: the
    X-Amzn-SageMaker-Target-Variant header). The body never appears in an error: only the
    service's code and message do.
    """
    bex = exceptions()
    what = f"InvokeEndpoint {endpoint}" + (f" ({target_variant})" if target_variant else "")
    target = {"TargetVariant": target_variant} if target_variant else {}
    try:
        answer = runtime.invoke_endpoint(
            EndpointName=endpoint,
            ContentType="application/json",
            Accept="application/json",
            Body=json.dumps(body).encode(),
            **target,
        )
        raw = answer["Body"].read()
    except bex.ClientError as exc:
        raise _runtime_error(exc, endpoint, what) from None
    except bex.BotoCoreError as exc:
        raise error(exc, what) from None
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ProviderError(
            f"{what}: the container answered something other than a JSON object "
            f"({len(raw)} bytes, starting {raw[:80]!r})",
            ErrorKind.API,
        )
    return parsed


def _runtime_error(exc: Any, endpoint: str, what: str) -> ProviderError:
    detail = exc.response.get("Error", {})
    code, message = detail.get("Code", "Error"), detail.get("Message", "")
    if code == "ValidationError" and _MISSING.search(message):
        return ProviderError(f"endpoint {endpoint} not found: {message}", ErrorKind.NOT_FOUND)
    if code == "ModelError":
        # The container answered non-2xx; SageMaker passes its status and body on.
        status = exc.response.get("OriginalStatusCode")
        return ProviderError(
            f"{what}: the model server refused the request"
            + (f" ({status})" if status else "")
            + f": {message}",
            ErrorKind.API,
        )
    if code == "ModelNotReadyException":
        return ProviderError(
            f"{what}: the endpoint is not ready yet: {message}", ErrorKind.CONFLICT
        )
    if code in _RUNTIME_UNAVAILABLE:
        return ProviderError(f"{what} failed: {code}: {message}", ErrorKind.UNREACHABLE)
    return error(exc, what)


# --- Billing: Cost Explorer and the S3 prefix of a billing export (providers.aws.billing) -----

# Cost Explorer answers too many calls with LimitExceededException ("You made too many calls
# in a short period of time", botocore's ce model), not with a quota: it is retried, as the
# usual throttling codes are. Module-level so tests can shorten the wait.
CE_ATTEMPTS = 5
CE_BACKOFF_S = 1.0  # doubled after each attempt
CE_REGION = "us-east-1"  # Cost Explorer's one endpoint (ce.us-east-1.amazonaws.com)
_CE_RETRIED = _THROTTLED_CODES | {"LimitExceededException"}


def retried(fn: Callable[[], T], what: str) -> T:
    """One call, repeated with exponential backoff while AWS throttles it; any other failure
    (or throttling past the last attempt) is a typed ProviderError."""
    bex = exceptions()
    for attempt in range(CE_ATTEMPTS):
        try:
            return fn()
        except bex.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _CE_RETRIED:
                if attempt + 1 < CE_ATTEMPTS:
                    time.sleep(CE_BACKOFF_S * 2**attempt)
                    continue
                raise ProviderError(
                    f"{what}: still throttled ({code}) after {CE_ATTEMPTS} attempts; try again later",
                    ErrorKind.THROTTLED,
                ) from None
            raise error(exc, what) from None
        except bex.BotoCoreError as exc:
            raise error(exc, what) from None
    raise AssertionError("unreachable")  # the loop returns or raises


def cost_and_usage(ce: Any, request: dict[str, Any]) -> list[dict[str, Any]]:
    """Every page of GetCostAndUsage (NextPageToken followed), each retried when throttled."""
    pages = []
    token: str | None = None
    while True:
        body = {**request, **({"NextPageToken": token} if token else {})}
        page = retried(lambda body=body: ce.get_cost_and_usage(**body), "ce GetCostAndUsage")
        pages.append(page)
        token = page.get("NextPageToken")
        if not token:
            return pages


def cost_allocation_tags(ce: Any, keys: list[str]) -> dict[str, str]:
    """Status (Active | Inactive) of each user-defined cost allocation tag among `keys` that
    AWS knows; a key AWS has never seen on a resource is absent."""
    found: dict[str, str] = {}
    token: str | None = None
    while True:
        body: dict[str, Any] = {"TagKeys": keys[:100], "Type": "UserDefined"}
        if token:
            body["NextToken"] = token
        page = retried(
            lambda body=body: ce.list_cost_allocation_tags(**body), "ce ListCostAllocationTags"
        )
        for tag in page.get("CostAllocationTags", []):
            found[tag["TagKey"]] = tag["Status"]
        token = page.get("NextToken")
        if not token:
            return found


S3_PAGE_SIZE = 1000  # ListObjectsV2's most keys a page; module-level so tests can shrink it


def list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    """Every object key under a prefix (ListObjectsV2, paged)."""
    keys: list[str] = []
    paginator = s3.get_paginator("list_objects_v2")
    config = {"PageSize": S3_PAGE_SIZE}

    def pages() -> None:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, PaginationConfig=config):
            keys.extend(item["Key"] for item in page.get("Contents", []))

    call(pages, f"list s3://{bucket}/{prefix}")
    return keys


def read_object(s3: Any, bucket: str, key: str) -> bytes:
    return call(
        lambda: s3.get_object(Bucket=bucket, Key=key)["Body"].read(), f"read s3://{bucket}/{key}"
    )


def download_object(s3: Any, bucket: str, key: str, target: str) -> None:
    call(lambda: s3.download_file(bucket, key, target), f"read s3://{bucket}/{key}")


# --- Account bootstrap (providers.aws.infra) ---------------------------------------------------

# What the read calls of `recipe infra check` answer when the thing is not there (botocore's
# s3, iam, kms, budgets and cloudformation models, and the S3 API reference's error list):
# each becomes None, so a check reports the item missing instead of failing.
ABSENT_CODES = frozenset(
    {
        "NoSuchBucket",
        "404",
        "NotFound",
        "ServerSideEncryptionConfigurationNotFoundError",
        "NoSuchPublicAccessBlockConfiguration",
        "NoSuchEntity",  # iam GetRole, GetPolicy
        "NotFoundException",  # budgets DescribeBudget, kms DescribeKey
        "ResourceNotFoundException",  # bcm-data-exports GetExport
    }
)


def read_or_none(fn: Callable[[], T], what: str) -> T | None:
    """One read call; None when AWS answers that the thing does not exist."""
    bex = exceptions()
    try:
        return fn()
    except bex.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ABSENT_CODES:
            return None
        raise error(exc, what) from None
    except bex.BotoCoreError as exc:
        raise error(exc, what) from None


def describe_stack(cfn: Any, name: str) -> dict[str, Any] | None:
    """The stack, or None when there is none: CloudFormation answers DescribeStacks of an
    unknown stack with ValidationError "Stack with id NAME does not exist" (botocore's model
    has no dedicated code; the one place here where the service's text decides)."""
    bex = exceptions()
    try:
        return cfn.describe_stacks(StackName=name)["Stacks"][0]
    except bex.ClientError as exc:
        detail = exc.response.get("Error", {})
        if detail.get("Code") == "ValidationError" and "does not exist" in detail.get(
            "Message", ""
        ):
            return None
        raise error(exc, f"cloudformation DescribeStacks {name}") from None
    except bex.BotoCoreError as exc:
        raise error(exc, f"cloudformation DescribeStacks {name}") from None
