"""`recipe release` on Azure ML managed online endpoints: the release state machine drives
OnlineEndpoints through the real MLClient over tests/fakes/azure.py (ARM with long-running
operations, the scoring URI, Azure Monitor's Metrics - List). Live traffic is spread by the
endpoint's traffic map while the injected clock sleeps, so the candidate's metrics are the
ones its share earned; a ten-minute bake takes a fraction of a second.

The runs are cloud runs recorded in the ledger, found again through a stub job backend that
reports them succeeded with their azureml:// output, as `recipe release RUN_ID` finds them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from providers import registry
from providers.azure.endpoint import OnlineEndpoints
from providers.base import (
    EndpointRef,
    ErrorKind,
    ProviderError,
    ReleaseBackend,
    RunRef,
    RunStatus,
    State,
)
from recipes.app import endpoints, releases
from recipes.app.ledger import Ledger
from tests.conftest import CATALOG
from tests.fakes.azure import (
    ENDPOINT_KEY,
    FakeAzureMLEndpoints,
    endpoint_ml_client,
    point_sdk_at,
)

RECIPE = CATALOG / "support-triage-a100.yaml"
ENDPOINT = "support-triage"
STABLE_RUN = "support-triage-a100-20261123-100000-0001"
CANDIDATE_RUN = "support-triage-a100-20261123-110000-0002"
T0 = 1_795_000_020.0  # on a minute boundary, as Azure Monitor's one-minute buckets are
# The recipe's canary block (10 %, error rate <= 0.01, p95 <= 800 ms), with its sample
# size, bake and termination wait said here.
CANARY = [
    "deploy.canary.min_requests=50",
    "deploy.canary.bake=10m",
    "deploy.canary.termination_wait=5m",
]


class Jobs:
    """The runs' job backend: each run succeeded, its model at its azureml:// output."""

    def status(self, ref: RunRef) -> RunStatus:
        return RunStatus(
            ref.run_id,
            "azure",
            State.SUCCEEDED,
            artifacts={"model": f"azureml://jobs/{ref.run_id}/outputs/model"},
        )


@dataclass
class Load:
    """Clients calling the endpoint while the clock runs: per_minute requests a minute,
    shared by the endpoint's traffic map; errors / p95_ms per deployment."""

    per_minute: int = 600
    errors: dict[str, float] = field(default_factory=dict)
    p95_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class Setup:
    fake: FakeAzureMLEndpoints
    backend: OnlineEndpoints
    clock: releases.Clock
    load: Load
    now: list[float]
    stable: str = ""
    candidate: str = ""

    def traffic(self) -> dict[str, int]:
        """The endpoint's traffic map as ARM holds it, without the 0 entries."""
        props = self.fake.endpoints[ENDPOINT]["properties"]
        return {k: int(v) for k, v in (props.get("traffic") or {}).items() if int(v)}

    def deployments(self) -> set[str]:
        return {k.split("/", 1)[1] for k in self.fake.deployments if k.startswith(f"{ENDPOINT}/")}

    def traffic_puts(self) -> list[dict[str, int]]:
        """The traffic map of every endpoint PUT, in order."""
        return [
            s.json()["properties"].get("traffic") or {} for s in self.fake.puts("onlineEndpoints")
        ]

    def release(self) -> releases.ReleaseResult:
        return releases.release(
            CANDIDATE_RUN, "azure", overrides=CANARY, clock=self.clock, backend=self.backend
        )


@pytest.fixture
def setup(home: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    with FakeAzureMLEndpoints() as fake:
        point_sdk_at(fake, monkeypatch)
        now = [T0]
        backend = OnlineEndpoints(ml_client=endpoint_ml_client(), now=lambda: now[0])
        load = Load()

        def sleep(seconds: float) -> None:
            if ENDPOINT in fake.endpoints:
                fake.live(ENDPOINT, now[0], seconds, load.per_minute, load.errors, load.p95_ms)
            now[0] += seconds

        clock = releases.Clock(now=lambda: now[0], sleep=sleep, poll_s=60)
        monkeypatch.setattr(registry, "for_run", lambda ref, **_: Jobs())
        monkeypatch.setattr(registry, "endpoint_backend", lambda name, **_: backend)
        ledger = Ledger()
        for run_id in (STABLE_RUN, CANDIDATE_RUN):
            ids = {"job": run_id}
            ledger.record(RunRef("azure", run_id, ids), RECIPE.stem, str(RECIPE), State.SUCCEEDED)
        deployed = endpoints.deploy(STABLE_RUN, "azure", overrides=CANARY, override_budget=True)
        stable = deployed.plan.deployment
        candidate = endpoints.prepare(CANDIDATE_RUN, "azure").plan.deployment
        assert stable != candidate
        yield Setup(fake, backend, clock, load, now, stable, candidate)


def test_online_endpoints_are_a_release_backend() -> None:
    assert isinstance(OnlineEndpoints(), ReleaseBackend)


def test_the_candidate_deploys_beside_stable_at_zero_and_the_probe_reaches_it_alone(
    setup: Setup,
) -> None:
    plan = endpoints.prepare(CANDIDATE_RUN, "azure", overrides=CANARY).plan
    stable_ref = Ledger().find_endpoint(ENDPOINT, "azure").ref
    puts_before = len(setup.fake.puts("onlineEndpoints"))
    ref = setup.backend.deploy_candidate(plan, stable_ref)
    assert ref.deployment == setup.candidate and ref.ids == stable_ref.ids
    assert setup.deployments() == {setup.stable, setup.candidate}
    assert setup.traffic() == {setup.stable: 100}
    # the endpoint exists: not PUT again (its traffic map would be reset), nothing retired
    assert len(setup.fake.puts("onlineEndpoints")) == puts_before
    assert not setup.fake.seen("DELETE", r"/deployments/")
    again = setup.backend.deploy_candidate(plan, stable_ref)  # idempotent
    assert again == ref and len(setup.fake.puts("deployments")) == 2

    body = {"model": "support-triage-a100", "messages": [{"role": "user", "content": "hi"}]}
    answer = setup.backend.invoke_deployment(ref, setup.candidate, body)
    assert answer["choices"][0]["message"]["content"] == "billing"
    (score,) = setup.fake.seen("POST", r"/score$")
    assert score.headers["azureml-model-deployment"] == setup.candidate
    assert score.headers["authorization"] == f"Bearer {ENDPOINT_KEY}"


def test_traffic_reads_the_deployments_own_metrics(setup: Setup) -> None:
    ref = Ledger().find_endpoint(ENDPOINT, "azure").ref
    setup.load.errors = {setup.stable: 0.1}
    setup.load.p95_ms = {setup.stable: 420.0}
    setup.clock.sleep(180)  # three minutes of 600 requests, all to stable
    sample = setup.backend.traffic(ref, setup.stable, T0)
    assert (sample.requests, sample.errors, sample.p95_ms) == (1800, 180, 420.0)
    assert (sample.since, sample.until) == (T0, T0 + 180)
    (query, latency) = setup.fake.seen("GET", r"/providers/Microsoft\.Insights/metrics$")
    assert query.path.endswith(
        f"/onlineEndpoints/{ENDPOINT}/deployments/{setup.stable}"
        "/providers/Microsoft.Insights/metrics"
    )
    assert query.query["metricnames"] == ["RequestsPerMinute"]
    assert query.query["$filter"] == ["envoy_response_code eq '*'"]
    assert query.query["timespan"] == ["2026-11-18T11:07:00Z/2026-11-18T11:10:00Z"]
    assert latency.query["metricnames"] == ["RequestLatency_P95"]
    assert query.headers["authorization"] == "Bearer fake-token"  # the MLClient's credential
    empty = setup.backend.traffic(ref, setup.stable, T0 + 600)  # nothing served yet
    assert (empty.requests, empty.errors, empty.p95_ms) == (0, 0, None)


def test_a_good_candidate_is_promoted(setup: Setup) -> None:
    result = setup.release()
    assert result.outcome == "done" and result.exit_code == 0
    states = [e["state"] for e in result.release.events]
    assert states == ["deployed", "probed", "baking", "probed", "promoted", "done"]
    # traffic: stable 100 (first deploy) -> candidate 10 -> candidate 100 (the SDK drops 0s)
    assert setup.traffic_puts()[1:] == [
        {setup.stable: 100},
        {setup.candidate: 10, setup.stable: 90},
        {setup.candidate: 100},
    ]
    assert setup.traffic() == {setup.candidate: 100}
    assert setup.deployments() == {setup.candidate}  # the old version retired
    (retired,) = setup.fake.seen("DELETE", r"/deployments/")
    assert retired.path.endswith(f"/deployments/{setup.stable}")
    assert Ledger().find_endpoint(ENDPOINT, "azure").ref.deployment == setup.candidate
    passed = result.release.events[3]["verdicts"]
    assert {v["gate"]: v["outcome"] for v in passed} == {
        "served": "pass",
        "error_rate_max": "pass",
        "p95_ms_max": "pass",
    }
    assert passed[0]["samples"] == 600  # 10 % of 600 a minute, for the ten-minute bake


@pytest.mark.parametrize(
    ("errors", "p95_ms", "gate"),
    [(0.2, 200.0, "error_rate_max"), (0.0, 1500.0, "p95_ms_max")],
    ids=["5xx", "p95"],
)
def test_a_candidate_breaking_a_gate_is_rolled_back(
    setup: Setup, errors: float, p95_ms: float, gate: str
) -> None:
    setup.load.errors = {setup.candidate: errors}
    setup.load.p95_ms = {setup.candidate: p95_ms}
    result = setup.release()
    assert result.outcome == "rolled_back" and result.exit_code == 1
    failed = [v["gate"] for v in result.release.events[-1]["verdicts"] if v["outcome"] == "fail"]
    assert failed == [gate]
    assert setup.traffic() == {setup.stable: 100}
    assert setup.deployments() == {setup.stable}  # the candidate removed
    assert Ledger().find_endpoint(ENDPOINT, "azure").ref.deployment == setup.stable


def test_too_little_traffic_holds(setup: Setup) -> None:
    setup.load.per_minute = 30  # 3 a minute reach the candidate: 30 in the bake, 50 needed
    result = setup.release()
    assert result.outcome == "held" and result.exit_code == 1
    assert result.release.state == "held"
    assert all(e["state"] != "promoted" for e in result.release.events)
    assert setup.deployments() == {setup.stable, setup.candidate}
    assert setup.traffic() == {setup.stable: 90, setup.candidate: 10}
    assert Ledger().find_endpoint(ENDPOINT, "azure").ref.deployment == setup.stable


def test_a_failure_mid_shift_keeps_stable_and_a_second_call_resumes(setup: Setup) -> None:
    setup.fake.fail[r"PUT /onlineEndpoints/[^/]+$"] = [409]  # the traffic update refused
    with pytest.raises(ProviderError) as info:
        setup.release()
    assert info.value.kind == ErrorKind.CONFLICT
    assert setup.traffic() == {setup.stable: 100}
    assert setup.deployments() == {setup.stable, setup.candidate}
    assert Ledger().find_endpoint(ENDPOINT, "azure").ref.deployment == setup.stable

    result = setup.release()
    assert result.outcome == "done"
    states = [e["state"] for e in result.release.events]
    assert states == ["deployed", "probed", "baking", "probed", "promoted", "done"]
    assert setup.traffic() == {setup.candidate: 100}
    assert setup.deployments() == {setup.candidate}
    assert Ledger().find_endpoint(ENDPOINT, "azure").ref.deployment == setup.candidate


def test_retire_refuses_a_deployment_with_traffic(setup: Setup) -> None:
    ref: EndpointRef = Ledger().find_endpoint(ENDPOINT, "azure").ref
    with pytest.raises(ProviderError, match="still has 100% of the traffic") as info:
        setup.backend.retire(ref, setup.stable)
    assert info.value.kind == ErrorKind.CONFLICT
    assert setup.deployments() == {setup.stable}
    setup.backend.retire(ref, "v00000000")  # absent is fine
