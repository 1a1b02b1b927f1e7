"""AWS for tests: moto behind real boto3 clients, in-process (`mock_aws`) or over HTTP
(`moto_server`, a ThreadedMotoServer on loopback, for the CLI in a subprocess), and
BotocoreFake for what moto lacks (status transitions, StopTrainingJob, chosen errors).
"""

from __future__ import annotations

import contextlib
import json
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
