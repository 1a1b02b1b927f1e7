"""SageMaker training jobs, what is particular to them: the CreateTrainingJob body and
SageMaker's limits, what moto makes of a submitted job, status messages, and the CLI
against moto over HTTP. The contract every backend keeps (pure plans, idempotent submit,
uploads, throttling, refused creates, credentials, states, cancel) is
tests/test_backend_contract.py."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from providers.aws.training_job import TrainingJobs
from providers.base import Plan, State
from providers.staging import cloud_identity
from recipes.errors import RecipeInputError
from recipes.loader import load_recipe
from tests.conftest import CATALOG, CLI, MULTINODE
from tests.fakes.aws import (
    BUCKET,
    REGION,
    http_client,
    moto_server,
    server_env,
    set_training_job,
    use_fake_keys,
)
from tests.fakes.aws import bucket as make_bucket


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_keys(monkeypatch)


def plan_for(path: Path, overrides: list[str] | None = None, attempt: int = 1) -> Plan:
    loaded = load_recipe(path, overrides)
    recipe = loaded.resolved()
    identity = cloud_identity(recipe.name, loaded.content_hash, attempt)
    return TrainingJobs().plan(recipe, identity)


def moto_provider() -> TrainingJobs:
    clients = {f"{s}:{REGION}": boto3.client(s, region_name=REGION) for s in ("sagemaker", "logs")}
    return TrainingJobs(clients={**clients, f"s3:{REGION}": make_bucket()})


# --- plan ------------------------------------------------------------------------------------


def test_plan_is_complete() -> None:
    plan = plan_for(MULTINODE)
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
def test_sagemaker_accepts_the_job_as_planned(aws_env: None) -> None:
    """What moto stores for the job, as DescribeTrainingJob and ListTags answer it."""
    provider = moto_provider()
    plan = plan_for(MULTINODE)
    ref = provider.submit(plan).ref
    assert ref.ids["arn"].endswith(f"training-job/{ref.run_id}")
    sm = provider.clients.get("sagemaker", REGION)
    job = sm.describe_training_job(TrainingJobName=ref.run_id)
    body = plan.requests[-1].body
    for key in ("RoleArn", "ResourceConfig", "StoppingCondition", "CheckpointConfig"):
        assert job[key] == body[key], key
    assert job["EnableManagedSpotTraining"] is True
    tags = sm.list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == plan.tags


@mock_aws
def test_status_message_and_artifacts(aws_env: None) -> None:
    provider = moto_provider()
    ref = provider.submit(plan_for(MULTINODE)).ref
    set_training_job(ref.run_id, "Stopped", "Stopped", "Training job stopped")
    stopped = provider.status(ref)
    assert stopped.state == State.CANCELLED
    assert stopped.message == "Stopped/Stopped: Training job stopped"
    assert stopped.artifacts["checkpoints"].endswith(f"/runs/{ref.run_id}/checkpoints")
    assert stopped.artifacts["job"] == ref.ids["arn"]


# --- the CLI against a moto server over HTTP -------------------------------------------------


@pytest.fixture
def moto_endpoint(cli: CLI) -> Any:
    with moto_server() as endpoint:
        cli.env.update(server_env(endpoint))
        http_client("s3", endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint


def test_cli_run_status_logs_cancel_over_http(cli: CLI, moto_endpoint: str) -> None:
    plan = cli("plan", str(MULTINODE), "--provider", "aws", "--format", "json")
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    body = planned["requests"][-1]["body"]

    run = cli("run", str(MULTINODE), "--provider", "aws")
    assert run.returncode == 0, run.stderr
    run_id = run.stdout.strip()
    assert run_id == planned["run_id"]

    sm = http_client("sagemaker", moto_endpoint)
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

    logs = http_client("logs", moto_endpoint)
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
