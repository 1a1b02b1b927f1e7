"""Deploy what was trained, on a cloud: a SageMaker training run launched through the use
cases becomes its endpoint, with the artifact read from the run's own record.

The training job and the endpoint both go through real boto3 clients over moto (with
tests/fakes/aws.py filling what moto lacks); only the registry is pointed at backends
whose clients carry those fakes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws
from openai.types.chat import ChatCompletion

from providers import registry
from providers.aws.endpoint import SageMakerEndpoints
from providers.aws.training_job import TrainingJobs
from providers.base import EndpointState
from recipes.app import endpoints, runs
from recipes.errors import RecipeInputError
from tests.conftest import CATALOG
from tests.fakes import aws

RECIPE = CATALOG / "support-triage-a100.yaml"


@dataclass
class Account:
    jobs: TrainingJobs
    hosting: aws.SageMakerHosting
    runtime: aws.SageMakerRuntime


@pytest.fixture
def account(home: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    aws.use_fake_keys(monkeypatch)
    with mock_aws():
        jobs = TrainingJobs(clients={f"s3:{aws.REGION}": aws.bucket()})
        sm = boto3.client("sagemaker", region_name=aws.REGION)
        runtime = boto3.client("sagemaker-runtime", region_name=aws.REGION)
        served = SageMakerEndpoints(
            clients={f"sagemaker:{aws.REGION}": sm, f"sagemaker-runtime:{aws.REGION}": runtime}
        )
        monkeypatch.setattr(registry, "for_run", lambda ref, **_: jobs)
        monkeypatch.setattr(registry, "endpoint_backend", lambda name, **_: served)
        yield Account(jobs, aws.SageMakerHosting(sm), aws.SageMakerRuntime(runtime))


def test_a_sagemaker_run_becomes_its_endpoint(account: Account) -> None:
    run_id = runs.run(RECIPE, provider="aws", backend=account.jobs).ref.run_id

    aws.set_training_job(run_id, "InProgress", "Training")
    with pytest.raises(RecipeInputError, match="is still running.*only a run that succeeded"):
        endpoints.prepare(run_id)
    aws.set_training_job(run_id, "Failed", "Failed", "eval gate failed: macro_f1 0.41 < 0.85")
    with pytest.raises(RecipeInputError, match="eval gate failed"):
        endpoints.deploy(run_id)
    assert account.hosting.calls("CreateModel") == 0  # nothing created for a failed run

    aws.set_training_job(run_id, "Completed", "Completed")
    output = runs.status(run_id).artifacts["model"]
    assert output.endswith("/output/model.tar.gz")
    result = endpoints.deploy(run_id)
    assert result.plan.artifact.uri == output and result.plan.artifact.lora_rank == 32
    (model,) = account.hosting.created("CreateModel")
    assert model["PrimaryContainer"]["ModelDataSource"]["S3DataSource"]["S3Uri"] == output
    # model, config, endpoint, and the autoscaling target and policy (max_replicas 2 > 1)
    assert not result.deployed.existing and len(result.deployed.created) == 5

    again = endpoints.deploy(run_id)
    assert again.deployed.existing and again.deployed.created == ()
    assert account.hosting.calls("CreateModel") == 1

    assert endpoints.status("support-triage").state == EndpointState.READY
    answer = endpoints.invoke("support-triage", "My card was stolen yesterday")
    assert ChatCompletion.model_validate(answer).model == "support-triage-a100"
    assert [e.ref.endpoint for e in endpoints.list_endpoints()] == ["support-triage"]

    endpoints.delete("support-triage")
    assert endpoints.list_endpoints() == []
    with pytest.raises(RecipeInputError, match="no endpoint 'support-triage'"):
        endpoints.status("support-triage")


def test_the_monthly_budget_guards_the_deploy(account: Account) -> None:
    run_id = runs.run(RECIPE, provider="aws", backend=account.jobs).ref.run_id
    aws.set_training_job(run_id, "Completed", "Completed")
    tight = ["budget.max_monthly_usd=100"]
    with pytest.raises(RecipeInputError, match="exceeds budget.max_monthly_usd") as info:
        endpoints.deploy(run_id, overrides=tight)
    assert info.value.render().startswith("command line: budget.max_monthly_usd")
    assert account.hosting.calls("CreateModel") == 0
    result = endpoints.deploy(run_id, overrides=tight, override_budget=True)
    assert result.warnings and "deploying anyway" in result.warnings[0]
