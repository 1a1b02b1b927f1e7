"""SageMaker training jobs through real boto3: moto in-process, moto over HTTP, and a
botocore-level fake only for what moto lacks (status transitions, StopTrainingJob)."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from providers.aws.training_job import TrainingJobs
from providers.base import Plan, ProviderError, RunRef, State
from providers.staging import cloud_identity
from recipes.errors import RecipeInputError
from recipes.loader import load_recipe
from tests.conftest import CATALOG, CLI
from tests.http_fake import FakeServer, Seen, json_reply

MULTINODE = CATALOG / "support-triage-multinode.yaml"
REGION = "us-east-1"
BUCKET = "recipe-artifacts-123456789012"
FAKE_KEYS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in FAKE_KEYS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


def plan_for(path: Path, overrides: list[str] | None = None, attempt: int = 1) -> Plan:
    loaded = load_recipe(path, overrides)
    recipe = loaded.resolved()
    identity = cloud_identity(recipe.name, loaded.content_hash, attempt)
    return TrainingJobs().plan(recipe, identity)


def moto_provider() -> TrainingJobs:
    clients = {
        f"{s}:{REGION}": boto3.client(s, region_name=REGION) for s in ("sagemaker", "s3", "logs")
    }
    clients[f"s3:{REGION}"].create_bucket(Bucket=BUCKET)
    return TrainingJobs(clients=clients)


def ref_for(plan: Plan) -> RunRef:
    name = plan.identity.run_id
    return RunRef(provider="aws", run_id=name, ids={"region": REGION, "job_name": name})


# --- plan ------------------------------------------------------------------------------------


def test_plan_is_pure_and_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("plan() touched the network")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    plan = plan_for(MULTINODE)
    assert plan.to_dict() == plan_for(MULTINODE).to_dict()
    create = plan.requests[-1]
    assert create.api == "sagemaker:CreateTrainingJob"
    body = create.body
    assert body["TrainingJobName"] == plan.identity.run_id
    assert body["ResourceConfig"]["InstanceType"] == "ml.g5.12xlarge"
    assert body["ResourceConfig"]["InstanceCount"] == 2
    assert plan.compute["world_size"] == 8
    assert body["EnableManagedSpotTraining"] is True
    stop = body["StoppingCondition"]
    assert stop["MaxWaitTimeInSeconds"] >= stop["MaxRuntimeInSeconds"] == 6 * 3600
    assert body["CheckpointConfig"]["S3Uri"].endswith(f"/runs/{plan.identity.run_id}/checkpoints")
    assert body["Environment"]["RECIPE_WANDB_SECRET"] == "aws-secretsmanager:recipe/wandb-api-key"
    assert {c["ChannelName"] for c in body["InputDataConfig"]} == {
        "code",
        "recipe",
        "train",
        "golden",
    }
    assert {t["Key"]: t["Value"] for t in body["Tags"]} == plan.tags
    assert plan.tags["cost_center"] == "cc-4711" and plan.tags["run_id"] == plan.identity.run_id
    # recipe.json names the data by the S3 URIs the job's channels come from.
    recipe_json = next(r for r in plan.requests if r.body["uri"].endswith("recipe.json"))
    assert recipe_json.body["content"]["recipe"]["data"]["train"].startswith(f"s3://{BUCKET}/")
    assert (
        plan.estimate.spot_usd is not None and plan.estimate.spot_usd < plan.estimate.on_demand_usd
    )


def test_no_secret_in_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "sk-wandb-should-never-travel")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-should-never-travel")
    text = json.dumps(plan_for(MULTINODE).to_dict())
    assert "should-never-travel" not in text


def test_online_wandb_without_a_secret_reference_is_refused() -> None:
    with pytest.raises(RecipeInputError, match="secret store"):
        plan_for(MULTINODE, ["compute.aws.wandb_secret=null"])


def test_hardware_overrides_and_impossible_asks() -> None:
    plan = plan_for(
        MULTINODE, ["compute.aws.instance_type=ml.g5.48xlarge", "compute.gpus_per_node=8"]
    )
    assert plan.requests[-1].body["ResourceConfig"]["InstanceType"] == "ml.g5.48xlarge"
    with pytest.raises(RecipeInputError) as err:
        plan_for(MULTINODE, ["compute.accelerator=H100", "compute.gpus_per_node=2"])
    assert "no aws offer has 2x H100" in str(err.value) and "ml.p5.48xlarge" in str(err.value)
    with pytest.raises(RecipeInputError, match="did you mean 'ml.g5.12xlarge'"):
        plan_for(MULTINODE, ["compute.aws.instance_type=ml.g5.12xlarg"])


def test_sagemaker_limits_are_checked_at_plan_time() -> None:
    with pytest.raises(RecipeInputError, match="at least compute.max_runtime"):
        plan_for(MULTINODE, ["compute.aws.spot_max_wait=1h"])
    with pytest.raises(RecipeInputError, match="28 days"):
        plan_for(MULTINODE, ["compute.max_runtime=30d"])


def test_role_and_bucket_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAGEMAKER_ROLE_ARN", raising=False)
    monkeypatch.delenv("RECIPE_AWS_BUCKET", raising=False)
    with pytest.raises(RecipeInputError) as err:
        plan_for(CATALOG / "quickstart.yaml")
    assert "compute.aws.role" in str(err.value) and "compute.aws.bucket" in str(err.value)
    monkeypatch.setenv("SAGEMAKER_ROLE_ARN", "arn:aws:iam::123456789012:role/ft")
    monkeypatch.setenv("RECIPE_AWS_BUCKET", f"s3://{BUCKET}")
    plan = plan_for(CATALOG / "quickstart.yaml")
    assert plan.requests[-1].body["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"
    assert "/pytorch-training:" in plan.compute["image"] and "-cpu-" in plan.compute["image"]


# --- submit against moto in-process ----------------------------------------------------------


@mock_aws
def test_submit_sends_the_plan_and_is_idempotent(aws_env: None) -> None:
    provider = moto_provider()
    plan = plan_for(MULTINODE)
    ref = provider.submit(plan).ref
    assert ref.run_id == plan.identity.run_id and "arn" in ref.ids

    sm, s3 = provider.clients.get("sagemaker", REGION), provider.clients.get("s3", REGION)
    job = sm.describe_training_job(TrainingJobName=ref.run_id)
    body = plan.requests[-1].body
    for key in (
        "RoleArn",
        "ResourceConfig",
        "StoppingCondition",
        "CheckpointConfig",
        "OutputDataConfig",
    ):
        assert job[key] == body[key], key
    assert (
        job["AlgorithmSpecification"]["ContainerEntrypoint"]
        == body["AlgorithmSpecification"]["ContainerEntrypoint"]
    )
    assert job["EnableManagedSpotTraining"] is True
    tags = sm.list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == plan.tags

    # Every planned upload is there, tagged with the run's tags.
    for upload in plan.requests[:-1]:
        key = upload.body["uri"].split(f"{BUCKET}/", 1)[1]
        tagging = s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]
        assert {t["Key"]: t["Value"] for t in tagging}["run_id"] == plan.identity.run_id
    recipe_key = plan.requests[-2].body["uri"].split(f"{BUCKET}/", 1)[1]
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=recipe_key)["Body"].read())
    assert stored == plan.requests[-2].body["content"]

    again = provider.submit(plan_for(MULTINODE))
    assert again.existing
    assert len(sm.list_training_jobs()["TrainingJobSummaries"]) == 1
    assert provider.latest_attempt(plan) == 1


@mock_aws
def test_unchanged_code_and_data_are_not_uploaded_again(aws_env: None) -> None:
    provider = moto_provider()
    s3 = provider.clients.get("s3", REGION)
    puts: list[str] = []
    s3.meta.events.register(
        "before-call.s3.PutObject", lambda params, **_: puts.append(params["url_path"])
    )
    provider.submit(plan_for(MULTINODE))
    assert len(puts) == 4  # code, train, golden, recipe.json
    puts.clear()
    provider.submit(plan_for(MULTINODE, attempt=2))
    assert [p.rsplit("/", 1)[-1] for p in puts] == ["recipe.json"]


@mock_aws
def test_failed_create_leaves_no_orphan(aws_env: None) -> None:
    provider = moto_provider()
    sm = provider.clients.get("sagemaker", REGION)
    BotocoreFake(sm).fail(
        "CreateTrainingJob",
        400,
        "ResourceLimitExceeded",
        "The account-level service limit 'ml.g5.12xlarge for spot training job usage' is 0 Instances",
    )
    plan = plan_for(MULTINODE)
    with pytest.raises(ProviderError) as err:
        provider.submit(plan)
    message = str(err.value)
    assert "ResourceLimitExceeded" in message and "left in S3, tagged" in message
    s3 = provider.clients.get("s3", REGION)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert not any(k.endswith("recipe.json") for k in keys)  # run-scoped: removed
    assert any(k.endswith("sourcedir.tar.gz") for k in keys)  # content-addressed: reported


# --- what moto lacks: a botocore-level fake ---------------------------------------------------


class BotocoreFake:
    """Answers chosen operations of a real boto3 client before they reach the wire."""

    def __init__(self, client: Any):
        self.client = client
        self.calls: list[str] = []

    def answer(self, operation: str, responses: list[dict[str, Any]]) -> None:
        queue = list(responses)

        def handler(**_kwargs: Any) -> Any:
            self.calls.append(operation)
            from botocore.awsrequest import AWSResponse

            response = queue.pop(0) if len(queue) > 1 else queue[0]
            return AWSResponse("https://fake", 200, {}, None), response

        self.client.meta.events.register(f"before-call.sagemaker.{operation}", handler)

    def fail(self, operation: str, status: int, code: str, message: str) -> None:
        from botocore.exceptions import ClientError

        def handler(**_kwargs: Any) -> Any:
            self.calls.append(operation)
            raise ClientError(
                {
                    "Error": {"Code": code, "Message": message},
                    "ResponseMetadata": {"HTTPStatusCode": status},
                },
                operation,
            )

        self.client.meta.events.register(f"before-call.sagemaker.{operation}", handler)


def job_state(primary: str, secondary: str, message: str = "") -> dict[str, Any]:
    return {
        "TrainingJobName": "j",
        "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/j",
        "TrainingJobStatus": primary,
        "SecondaryStatus": secondary,
        "SecondaryStatusTransitions": [
            {"Status": secondary, "StartTime": time.time(), "StatusMessage": message}
        ],
    }


@mock_aws
def test_status_transitions_and_cancel(aws_env: None) -> None:
    provider = moto_provider()
    plan = plan_for(MULTINODE)
    ref = provider.submit(plan).ref
    fake = BotocoreFake(provider.clients.get("sagemaker", REGION))
    fake.answer(
        "DescribeTrainingJob",
        [
            job_state("InProgress", "Starting", "Preparing the instances for training"),
            job_state("InProgress", "Downloading", "Downloading input data"),
            job_state(
                "InProgress", "Training", "Training image download completed. Training in progress."
            ),
            job_state("InProgress", "Training"),  # cancel() looks first
            job_state("Stopping", "Stopping"),
            job_state("Stopped", "Stopped", "Training job stopped"),
        ],
    )
    fake.answer("StopTrainingJob", [{}])
    seen = [provider.status(ref).state for _ in range(3)]
    assert seen == [State.QUEUED, State.QUEUED, State.RUNNING]
    assert provider.cancel(ref).state == State.RUNNING  # Stopping: not over yet
    final = provider.status(ref)
    assert final.state == State.CANCELLED and "Training job stopped" in final.message
    assert "StopTrainingJob" in fake.calls


@pytest.mark.parametrize(
    ("primary", "secondary", "state"),
    [
        ("Completed", "Completed", State.SUCCEEDED),
        ("Failed", "Failed", State.FAILED),
        ("Stopped", "MaxRuntimeExceeded", State.FAILED),
        ("Stopped", "MaxWaitTimeExceeded", State.FAILED),
        ("InProgress", "Interrupted", State.RUNNING),
        ("InProgress", "LaunchingMLInstances", State.QUEUED),
    ],
)
def test_state_mapping(primary: str, secondary: str, state: State) -> None:
    from providers.aws.training_job import status_from_job

    ref = RunRef(provider="aws", run_id="j", ids={"region": REGION, "job_name": "j"})
    assert status_from_job(ref, job_state(primary, secondary)).state == state


def test_throttling_and_5xx_are_retried() -> None:
    """Real botocore retries against an HTTP fake answering 429-style and 5xx first."""
    from botocore.config import Config

    answers = [
        json_reply(400, {"__type": "ThrottlingException", "message": "Rate exceeded"}),
        json_reply(503, {"__type": "ServiceUnavailable", "message": "try later"}),
        json_reply(
            200, {"TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/j"}
        ),
    ]

    def reply(_: Seen, __: Any) -> Any:
        return answers.pop(0)

    with FakeServer() as server:
        server.route("POST", r"/", reply)
        client = boto3.client(
            "sagemaker",
            region_name=REGION,
            endpoint_url=server.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 8, "mode": "standard"}),
        )
        from providers.aws.sdk import call

        start = time.time()
        result = call(
            lambda: client.create_training_job(
                TrainingJobName="j",
                RoleArn="arn:aws:iam::123456789012:role/ft",
                OutputDataConfig={"S3OutputPath": "s3://b/o"},
                AlgorithmSpecification={"TrainingInputMode": "File"},
            ),
            "CreateTrainingJob",
        )
    assert result["TrainingJobArn"].endswith("/j")
    assert len(server.seen) == 3 and time.time() - start < 30
    assert server.seen[0].headers["x-amz-target"] == "SageMaker.CreateTrainingJob"


# --- the CLI against a moto server over HTTP -------------------------------------------------


@pytest.fixture
def moto_server(cli: CLI) -> Any:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    cli.env.update(FAKE_KEYS)
    cli.env["AWS_ENDPOINT_URL"] = endpoint
    boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **_keys()).create_bucket(
        Bucket=BUCKET
    )
    yield endpoint
    server.stop()


def _keys() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def test_cli_run_status_logs_cancel_over_http(cli: CLI, moto_server: str) -> None:
    plan = cli("plan", str(MULTINODE), "--provider", "aws", "--format", "json")
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    body = planned["requests"][-1]["body"]

    run = cli("run", str(MULTINODE), "--provider", "aws")
    assert run.returncode == 0, run.stderr
    run_id = run.stdout.strip()
    assert run_id == planned["run_id"]

    sm = boto3.client("sagemaker", endpoint_url=moto_server, region_name=REGION, **_keys())
    job = sm.describe_training_job(TrainingJobName=run_id)
    assert job["ResourceConfig"] == body["ResourceConfig"]
    assert (
        job["AlgorithmSpecification"]["TrainingImage"]
        == body["AlgorithmSpecification"]["TrainingImage"]
    )

    again = cli("run", str(MULTINODE), "--provider", "aws")
    assert again.returncode == 0 and again.stdout.strip() == run_id
    assert "already exists" in again.stderr
    assert len(sm.list_training_jobs()["TrainingJobSummaries"]) == 1

    logs = boto3.client("logs", endpoint_url=moto_server, region_name=REGION, **_keys())
    group = "/aws/sagemaker/TrainingJobs"
    logs.create_log_group(logGroupName=group)
    stream = f"{run_id}/algo-1-1700000000"
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    now = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[
            {"timestamp": now, "message": "launch: Topology(nnodes=2)"},
            {"timestamp": now + 1, "message": "step 10/40 loss 1.23"},
        ],
    )
    printed = cli("logs", run_id)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.splitlines() == ["launch: Topology(nnodes=2)", "step 10/40 loss 1.23"]

    status = cli("status", run_id, "--format", "json")
    assert json.loads(status.stdout)["state"] == "succeeded"  # moto completes jobs at once
    cancel = cli("cancel", run_id)
    assert cancel.returncode == 0 and "succeeded" in cancel.stdout  # nothing left to stop

    newer = cli("run", str(MULTINODE), "--provider", "aws", "--new-attempt")
    assert newer.returncode == 0, newer.stderr
    assert newer.stdout.strip() == run_id[:-1] + "2"


def test_cli_budget_guard(cli: CLI) -> None:
    result = cli("run", str(MULTINODE), "--provider", "aws", "budget.max_usd=0.5")
    assert result.returncode == 2
    assert "budget.max_usd" in result.stderr and "exceeds budget.max_usd $0.50" in result.stderr
    assert re.match(r"command line: budget.max_usd: estimate \$[\d.]+ spot", result.stderr)
    assert "on demand $" in result.stderr and "--override-budget" in result.stderr
    over = cli("plan", str(MULTINODE), "--provider", "aws", "budget.max_usd=0.5")
    assert over.returncode == 0  # plan shows; only run refuses


def test_cli_missing_credentials_is_one_line(cli: CLI, tmp_path: Path) -> None:
    for key in list(cli.env):
        if key.startswith("AWS_"):
            del cli.env[key]
    cli.env.update(
        {
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    result = cli("run", str(MULTINODE), "--provider", "aws")
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        "error: no AWS credentials found (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, or run `aws sso login`)"
    ]
