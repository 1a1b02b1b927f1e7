"""`recipe release` on SageMaker: the candidate as a second production variant of the
endpoint, weights moved by UpdateEndpointWeightsAndCapacities, the golden probe sent with
TargetVariant, the canary gates fed by the variant's own CloudWatch metrics.

Everything goes through real boto3 clients over moto (tests/fakes/aws.py fills in what moto
lacks: UpdateEndpoint with several weighted variants, the weights call, TargetVariant, and
CloudWatch percentiles); the clock is injected, so a bake of minutes takes milliseconds, and
the metrics are put in CloudWatch as SageMaker would publish them for the variant that
holds live traffic.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto import mock_aws

from providers import registry
from providers.aws.endpoint import SageMakerEndpoints
from providers.aws.training_job import TrainingJobs
from providers.base import ProviderError, ReleaseBackend
from recipes.app import endpoints, releases, runs
from recipes.app.ledger import Ledger
from tests.conftest import CATALOG
from tests.fakes import aws

RECIPE = CATALOG / "support-triage-a100.yaml"
ENDPOINT = "support-triage"
# Two steps, a short bake and a probe: every part of the machine runs; min_golden is low
# because the fake model answers only "billing" or "technical".
CANARY = [
    "deploy.canary.steps=[10,50]",
    "deploy.canary.min_requests=40",
    "deploy.canary.min_golden=4",
    "deploy.canary.bake=5m",
    "deploy.canary.termination_wait=2m",
    "deploy.canary.gates.macro_f1_min=0.0",
]


@dataclass
class Traffic:
    """What the endpoint's live clients do each minute, published as SageMaker would."""

    per_minute: int = 100  # requests to the whole endpoint
    candidate_5xx: float = 0.0  # share of the candidate's requests that fail
    candidate_ms: float = 120.0  # its latency
    stable_ms: float = 150.0


@dataclass
class Account:
    backend: SageMakerEndpoints
    hosting: aws.SageMakerHosting
    runtime: aws.SageMakerRuntime
    scaling: aws.ApplicationAutoScaling
    cw: Any
    clock: releases.Clock
    now: list[float]
    traffic: Traffic = field(default_factory=Traffic)
    published: set[int] = field(default_factory=set)  # minutes already in CloudWatch
    stable: str = ""
    jobs: Any = None

    def tick(self, seconds: float) -> None:
        """Time passes: each whole minute, the variants' metrics land in CloudWatch."""
        end = self.now[0] + seconds
        minute = int(self.now[0] // 60) * 60
        while minute < end:
            if minute >= self.now[0] - 1e-9 and minute not in self.published:
                self.publish(minute)
            minute += 60
        self.now[0] = end

    def publish(self, minute: int) -> None:
        self.published.add(minute)
        live = self.hosting.weights(ENDPOINT)
        total = sum(live.values()) or 1.0
        for variant, weight in live.items():
            n = round(self.traffic.per_minute * weight / total)
            if not n:
                continue
            ours = variant != self.stable  # the candidate
            ms = self.traffic.candidate_ms if ours else self.traffic.stable_ms
            errors = round(n * self.traffic.candidate_5xx) if ours else 0
            latencies = [ms * (0.5 + i / n) for i in range(n)]  # p95 ~ 1.45 x ms
            aws.put_variant_metrics(self.cw, ENDPOINT, variant, minute + 30, n, errors, latencies)


@pytest.fixture
def account(home: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    aws.use_fake_keys(monkeypatch)
    with mock_aws(), aws.cloudwatch_percentiles():
        jobs = TrainingJobs(clients={f"s3:{aws.REGION}": aws.bucket()})
        clients = {
            f"{service}:{aws.REGION}": boto3.client(service, region_name=aws.REGION)
            for service in (
                "sagemaker",
                "sagemaker-runtime",
                "application-autoscaling",
                "cloudwatch",
            )
        }
        now = [float(int(time.time() // 60) * 60 - 3600)]  # an hour ago, on the minute
        backend = SageMakerEndpoints(clients=clients, now=lambda: now[0])
        account = Account(
            backend,
            aws.SageMakerHosting(clients[f"sagemaker:{aws.REGION}"]),
            aws.SageMakerRuntime(clients[f"sagemaker-runtime:{aws.REGION}"]),
            aws.ApplicationAutoScaling(clients[f"application-autoscaling:{aws.REGION}"]),
            clients[f"cloudwatch:{aws.REGION}"],
            releases.Clock(now=lambda: now[0], sleep=lambda s: None, poll_s=60.0),
            now,
        )
        account.clock.sleep = account.tick
        monkeypatch.setattr(registry, "for_run", lambda ref, **_: jobs)
        monkeypatch.setattr(registry, "endpoint_backend", lambda name, **_: backend)
        stable = _trained(jobs)
        endpoints.deploy(stable)
        account.stable = Ledger().find_endpoint(ENDPOINT, "aws").ref.deployment
        account.jobs = jobs
        yield account


def _trained(jobs: TrainingJobs, seed: int = 42) -> str:
    """A finished SageMaker run (another seed: another job, so another artifact)."""
    overrides = [f"training.seed={seed}"]
    run_id = runs.run(RECIPE, overrides, provider="aws", backend=jobs).ref.run_id
    aws.set_training_job(run_id, "Completed", "Completed")
    return run_id


def _release(account: Account, run_id: str, *extra: str) -> releases.ReleaseResult:
    return releases.release(run_id, overrides=[*CANARY, *extra], clock=account.clock)


def test_a_good_candidate_is_promoted_and_the_old_variant_retired(account: Account) -> None:
    assert isinstance(account.backend, ReleaseBackend)
    stable = account.stable
    candidate_run = _trained(account.jobs, seed=43)
    targets_before = account.scaling.targets()
    assert list(targets_before) == [f"endpoint/{ENDPOINT}/variant/{stable}"]

    result = _release(account, candidate_run)

    candidate = result.release.candidate
    assert result.outcome == "done" and result.exit_code == 0, result.release.events
    assert candidate != stable and result.release.stable == stable
    # 0 % beside the stable variant (UpdateEndpoint onto a two-variant config), then the
    # weights: 10, 50, 100 (the stable variant at 90, 50, 0), then the stable one retired.
    (pair,) = [
        c
        for c in account.hosting.created("CreateEndpointConfig")
        if len(c["ProductionVariants"]) == 2
    ]
    weights = {v["VariantName"]: v["InitialVariantWeight"] for v in pair["ProductionVariants"]}
    assert weights == {stable: 1.0, candidate: 0.0}
    updates = account.hosting.created("UpdateEndpoint")
    assert [u["EndpointConfigName"] for u in updates] == [pair["EndpointConfigName"], candidate]
    assert all(u["RetainAllVariantProperties"] is True for u in updates)
    assert account.hosting.weight_history == [
        {stable: 90.0, candidate: 10.0},
        {stable: 50.0, candidate: 50.0},
        {stable: 0.0, candidate: 100.0},
    ]
    sent = account.hosting.created("UpdateEndpointWeightsAndCapacities")
    assert sent[0]["DesiredWeightsAndCapacities"] == sorted(
        [
            {"VariantName": candidate, "DesiredWeight": 10.0},
            {"VariantName": stable, "DesiredWeight": 90.0},
        ],
        key=lambda d: d["VariantName"],
    )
    # The golden probe reached the candidate alone, by TargetVariant.
    probes = [
        i for i in account.runtime.invocations if "x-amzn-sagemaker-target-variant" in i["headers"]
    ]
    assert probes and {p["variant"] for p in probes} == {candidate}
    # Promoted: the endpoint runs the candidate's own config, its only variant, at 100 %.
    assert account.hosting.weights(ENDPOINT) == {candidate: 100.0}
    found = account.hosting.client.describe_endpoint(EndpointName=ENDPOINT)
    assert found["EndpointConfigName"] == candidate and found["EndpointStatus"] == "InService"
    # The old variant's scalable target went before the update that removed it; its model,
    # its config and the pair's config are gone.
    assert account.scaling.targets() == {}
    deleted = {c["EndpointConfigName"] for c in account.hosting.created("DeleteEndpointConfig")}
    assert deleted == {stable, pair["EndpointConfigName"]}
    assert [m["ModelName"] for m in account.hosting.created("DeleteModel")] == [stable]
    # The old version was retired after termination_wait, not before.
    events = {e["state"]: e["at"] for e in result.release.events}
    assert events["done"] - events["promoted"] >= 120
    assert Ledger().find_endpoint(ENDPOINT, "aws").ref.deployment == candidate
    assert endpoints.status(ENDPOINT).traffic == {candidate: 100}
    # The promoted variant has no autoscaling (not during the canary either); a deploy of
    # the same run finds everything else in place and registers it.
    again = endpoints.deploy(candidate_run)
    assert [c.split(" ")[0] for c in again.deployed.created] == [
        "application-autoscaling:RegisterScalableTarget",
        "application-autoscaling:PutScalingPolicy",
    ]
    assert list(account.scaling.targets()) == [f"endpoint/{ENDPOINT}/variant/{candidate}"]


def test_a_candidate_breaking_the_latency_gate_is_rolled_back(account: Account) -> None:
    account.traffic.candidate_ms = 2000.0  # p95 ~2.9 s of ModelLatency: over 800 ms
    candidate_run = _trained(account.jobs, seed=43)

    result = _release(account, candidate_run)

    stable, candidate = account.stable, result.release.candidate
    assert result.outcome == "rolled_back" and result.exit_code == 1
    failed = [v for v in result.release.events[-1]["verdicts"] if v["outcome"] == "fail"]
    assert [v["gate"] for v in failed] == ["p95_ms_max"]
    assert 2000 < failed[0]["value"] < 3000  # microseconds read as milliseconds
    assert account.hosting.weight_history[-1] == {stable: 100.0, candidate: 0.0}
    # Back on the stable version's own config, the candidate's model and config gone; the
    # stable variant's autoscaling untouched.
    found = account.hosting.client.describe_endpoint(EndpointName=ENDPOINT)
    assert found["EndpointConfigName"] == stable
    assert account.hosting.weights(ENDPOINT) == {stable: 100.0}
    assert [m["ModelName"] for m in account.hosting.created("DeleteModel")] == [candidate]
    assert list(account.scaling.targets()) == [f"endpoint/{ENDPOINT}/variant/{stable}"]
    assert account.scaling.calls("DeregisterScalableTarget") == 0
    assert Ledger().find_endpoint(ENDPOINT, "aws").ref.deployment == stable


def test_a_candidate_answering_5xx_is_rolled_back(account: Account) -> None:
    account.traffic.candidate_5xx = 0.2
    result = _release(account, _trained(account.jobs, seed=43))
    assert result.outcome == "rolled_back"
    failed = [v for v in result.release.events[-1]["verdicts"] if v["outcome"] == "fail"]
    assert [v["gate"] for v in failed] == ["error_rate_max"]
    assert account.hosting.weights(ENDPOINT) == {account.stable: 100.0}


def test_too_little_traffic_holds_and_promotes_nothing(account: Account) -> None:
    account.traffic.per_minute = 20  # 2 a minute at 10 %: 10 in the bake, 40 needed
    result = _release(account, _trained(account.jobs, seed=43))

    stable, candidate = account.stable, result.release.candidate
    assert result.outcome == "held" and result.exit_code == 1
    held = result.release.events[-1]["verdicts"]
    assert [v["outcome"] for v in held if v["gate"] == "served"] == ["inconclusive"]
    assert account.hosting.weights(ENDPOINT) == {stable: 90.0, candidate: 10.0}
    assert Ledger().find_endpoint(ENDPOINT, "aws").ref.deployment == stable
    assert account.hosting.calls("DeleteModel") == 0


def test_a_provider_failure_mid_shift_keeps_stable_serving_and_resumes(account: Account) -> None:
    candidate_run = _trained(account.jobs, seed=43)
    stable, sm = account.stable, account.hosting
    # The first weights change (0 -> 10 %) is refused by the service.
    sm.error("UpdateEndpointWeightsAndCapacities", 400, "ValidationException", "refused")
    with pytest.raises(ProviderError, match="UpdateEndpointWeightsAndCapacities"):
        _release(account, candidate_run)
    candidate = Ledger().releases(ENDPOINT, "aws")[0].data["candidate"]
    # The candidate sits beside the stable variant with weight 0: stable keeps all traffic.
    assert sm.weights(ENDPOINT) == {stable: 1.0, candidate: 0.0}
    assert endpoints.status(ENDPOINT).traffic == {stable: 100, candidate: 0}
    assert Ledger().find_endpoint(ENDPOINT, "aws").ref.deployment == stable

    result = _release(account, candidate_run)
    assert result.outcome == "done"
    assert sm.weights(ENDPOINT) == {candidate: 100.0}
    assert Ledger().find_endpoint(ENDPOINT, "aws").ref.deployment == candidate
    # Resumed, not redone: the candidate was deployed once.
    assert len(sm.created("UpdateEndpoint")) == 2  # onto the pair, then onto the candidate's own


def test_a_failing_metrics_read_mid_bake_propagates_and_the_release_resumes(
    account: Account,
) -> None:
    candidate_run = _trained(account.jobs, seed=43)
    stable = account.stable
    cw = aws.BotocoreFake(account.cw)
    cw.error("GetMetricData", 400, "InvalidParameterValue", "refused", times=1)
    with pytest.raises(ProviderError, match="GetMetricData"):
        _release(account, candidate_run)
    candidate = Ledger().releases(ENDPOINT, "aws")[0].data["candidate"]
    assert account.hosting.weights(ENDPOINT) == {stable: 90.0, candidate: 10.0}
    assert Ledger().find_endpoint(ENDPOINT, "aws").ref.deployment == stable
    result = _release(account, candidate_run)
    assert result.outcome == "done"
    assert account.hosting.weights(ENDPOINT) == {candidate: 100.0}
