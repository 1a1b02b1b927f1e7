"""`recipe release` on Vertex AI: recipes.app.releases.release() driving VertexEndpoints
(providers/gcp/endpoint.py) through the real aiplatform_v1 REST clients and an
AuthorizedSession, against tests/fakes/gcp.py (EndpointService, ModelService, rawPredict
and Cloud Monitoring's timeSeries.list). Two finished Vertex runs are recorded in the
ledger; the registry is pointed at a stub job backend and at the backend over the fake;
time is a fake clock, so a ten-minute bake takes milliseconds.

The recipe's canary (support-triage-a100.yaml): 10 %, error_rate_max 0.01, p95_ms_max 800,
min_requests 100, no quality gate (so no golden probe)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from providers import registry
from providers.base import EndpointRef, ProviderError, ReleaseBackend, RunRef, RunStatus, State
from providers.gcp.endpoint import VertexEndpoints, deployed_model_id
from recipes.app import endpoints, releases
from recipes.app.ledger import Ledger
from tests.conftest import CATALOG
from tests.fakes.gcp import (
    FakeVertexServing,
    Traffic,
    error,
    fast_operations,
    fast_retries,
    vertex_endpoints,
)

RECIPE = CATALOG / "support-triage-a100.yaml"
OVERRIDES = ["deploy.endpoint=support-triage"]
ROOT = "gs://recipe-artifacts-dev/fine-tunes/runs"
STABLE_RUN, CANDIDATE_RUN = "support-triage-a100-1a2b3c4d-1", "support-triage-a100-9f8e7d6c-1"


class FinishedJobs:
    """The job backend of a Vertex run that succeeded: its model output in Cloud Storage."""

    def status(self, ref: RunRef) -> RunStatus:
        uri = f"{ROOT}/{ref.run_id}/model"
        return RunStatus(ref.run_id, "gcp", State.SUCCEEDED, artifacts={"model": uri})


@dataclass
class Setup:
    fake: FakeVertexServing
    backend: VertexEndpoints
    clock: releases.Clock
    stable: str  # deployment names
    candidate: str
    stable_id: str  # DeployedModel ids
    candidate_id: str

    def release(self) -> releases.ReleaseResult:
        return releases.release(CANDIDATE_RUN, overrides=OVERRIDES, clock=self.clock)

    def split(self) -> dict[str, int]:
        return dict(self.fake.endpoints["support-triage"].get("trafficSplit", {}))

    def deployed(self) -> list[str]:
        return [d["id"] for d in self.fake.endpoints["support-triage"].get("deployedModels", [])]

    def splits_sent(self) -> list[dict[str, int]]:
        """UpdateEndpoint bodies that moved traffic (others update the labels)."""
        received = self.fake.received
        return [
            b["trafficSplit"] for n, b in received if n == "update_endpoint" and "trafficSplit" in b
        ]


@pytest.fixture
def setup(home: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    fast_retries(monkeypatch)
    fast_operations(monkeypatch)
    ledger = Ledger()
    for run_id in (STABLE_RUN, CANDIDATE_RUN):
        ref = RunRef(
            "gcp", run_id, {"job": f"projects/p/locations/us-central1/customJobs/{run_id}"}
        )
        ledger.record(ref, "support-triage-a100", str(RECIPE), State.SUCCEEDED)
    with FakeVertexServing() as fake:
        backend = vertex_endpoints(fake)
        monkeypatch.setattr(registry, "for_run", lambda ref, **_: FinishedJobs())
        monkeypatch.setattr(registry, "endpoint_backend", lambda name, **_: backend)
        stable = endpoints.deploy(STABLE_RUN, overrides=OVERRIDES).plan
        candidate = endpoints.prepare(CANDIDATE_RUN, overrides=OVERRIDES).plan
        now = [1_795_435_200.0]
        clock = releases.Clock(
            now=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s), poll_s=60.0
        )
        yield Setup(
            fake,
            backend,
            clock,
            stable.deployment,
            candidate.deployment,
            deployed_model_id(stable.deployment.rsplit("-", 1)[1]),
            deployed_model_id(candidate.deployment.rsplit("-", 1)[1]),
        )


def test_the_backend_is_a_release_backend(setup: Setup) -> None:
    assert isinstance(setup.backend, ReleaseBackend)
    assert setup.split() == {setup.stable_id: 100}


def test_a_good_candidate_is_promoted_and_the_old_version_retired(setup: Setup) -> None:
    setup.fake.served[setup.candidate_id] = Traffic(240, 1, [120.0] * 240)
    result = setup.release()

    assert (result.outcome, result.exit_code) == ("done", 0)
    # DeployModel kept the stable split and gave the new model 0 ("0" names it).
    deploy = setup.fake.body("deploy")
    assert deploy["deployedModel"]["id"] == setup.candidate_id
    assert deploy["trafficSplit"] == {setup.stable_id: 100, "0": 0}
    # 0 -> 10 -> 100 through UpdateEndpoint (update_mask traffic_split), then the undeploy.
    assert setup.splits_sent() == [
        {setup.stable_id: 90, setup.candidate_id: 10},
        {setup.candidate_id: 100, setup.stable_id: 0},
    ]
    assert setup.fake.body("undeploy")["deployedModelId"] == setup.stable_id
    assert setup.split() == {setup.candidate_id: 100}
    assert setup.deployed() == [setup.candidate_id]
    assert Ledger().find_endpoint("support-triage", "gcp").ref.deployment == setup.candidate
    # The bake read the candidate's own metrics from Cloud Monitoring.
    query = setup.fake.queries[0]
    assert f'metric.labels.deployed_model_id="{setup.candidate_id}"' in query["filter"]
    assert 'resource.labels.endpoint_id="support-triage"' in query["filter"]
    assert {q["filter"].split('"')[1].rsplit("/", 1)[1] for q in setup.fake.queries} == {
        "prediction_count",
        "error_count",
        "prediction_latencies",
    }
    assert "predict" not in setup.fake.calls()  # no probe: the recipe has no quality gate


@pytest.mark.parametrize(
    "served",
    [Traffic(200, 30, [120.0] * 200), Traffic(200, 0, [2500.0] * 200)],
    ids=["5xx-rate", "p95-latency"],
)
def test_a_candidate_breaking_a_gate_is_rolled_back(setup: Setup, served: Traffic) -> None:
    setup.fake.served[setup.candidate_id] = served
    result = setup.release()

    assert (result.outcome, result.exit_code) == ("rolled_back", 1)
    assert setup.splits_sent()[-1] == {setup.stable_id: 100, setup.candidate_id: 0}
    assert setup.split() == {setup.stable_id: 100}
    assert setup.deployed() == [setup.stable_id]
    assert Ledger().find_endpoint("support-triage", "gcp").ref.deployment == setup.stable


def test_too_little_traffic_holds_and_promotes_nothing(setup: Setup) -> None:
    setup.fake.served[setup.candidate_id] = Traffic(12, 0, [120.0] * 12)
    result = setup.release()

    assert (result.outcome, result.exit_code) == ("held", 1)
    assert setup.split() == {setup.stable_id: 90, setup.candidate_id: 10}
    assert sorted(setup.deployed()) == sorted([setup.stable_id, setup.candidate_id])
    assert Ledger().find_endpoint("support-triage", "gcp").ref.deployment == setup.stable

    setup.fake.served[setup.candidate_id] = Traffic(150, 0, [120.0] * 150)
    assert setup.release().outcome == "done"  # run again: it goes on baking, then promotes
    assert setup.split() == {setup.candidate_id: 100}


def test_a_provider_failure_mid_shift_propagates_and_the_release_resumes(setup: Setup) -> None:
    setup.fake.served[setup.candidate_id] = Traffic(240, 0, [120.0] * 240)
    setup.fake.failures["traffic"] = [error(409, "ABORTED", "Concurrent update.")]
    with pytest.raises(ProviderError, match="UpdateEndpoint failed: 409"):
        setup.release()
    assert setup.split() == {setup.stable_id: 100, setup.candidate_id: 0}  # untouched
    assert len(setup.splits_sent()) == 1  # the 10 % shift, refused: it moved nothing

    result = setup.release()
    assert result.outcome == "done"
    assert setup.split() == {setup.candidate_id: 100}
    assert setup.deployed() == [setup.candidate_id]


def test_a_probe_reaches_only_the_deployed_model_it_names(setup: Setup) -> None:
    """rawPredict follows the traffic split: an answer from another deployed model is
    refused rather than scored as the candidate's (endpoint.invoke_deployment)."""
    plan = endpoints.prepare(CANDIDATE_RUN, overrides=OVERRIDES).plan
    stable_ref = Ledger().find_endpoint("support-triage", "gcp").ref
    ref = setup.backend.deploy_candidate(plan, stable_ref)
    assert ref == EndpointRef("gcp", "support-triage", setup.candidate, ref.ids)
    assert setup.backend.deploy_candidate(plan, stable_ref) == ref  # idempotent
    assert setup.fake.calls("deploy") == ["deploy", "deploy"]  # the stable's, then one

    body = {"model": "support-triage-a100", "messages": [{"role": "user", "content": "hi"}]}
    answer = setup.backend.invoke_deployment(ref, setup.stable, body)
    assert answer["choices"][0]["message"]["content"]
    with pytest.raises(ProviderError, match="cannot target one deployed model"):
        setup.backend.invoke_deployment(ref, setup.candidate, body)

    with pytest.raises(ProviderError, match="still serves 100%"):
        setup.backend.retire(ref, setup.stable)
    setup.backend.retire(ref, setup.candidate)
    setup.backend.retire(ref, setup.candidate)  # absent is fine
    assert setup.split() == {setup.stable_id: 100}


def test_quality_gates_are_refused_up_front_where_no_probe_reaches_the_candidate() -> None:
    from recipes.app.releases import _check_probes
    from recipes.errors import RecipeInputError
    from recipes.schema.deploy import CanarySpec

    backend = VertexEndpoints()
    _check_probes(backend, CanarySpec(gates={"error_rate_max": 0.01}), "gcp")  # fine
    with pytest.raises(RecipeInputError, match="cannot send a request to one deployment") as err:
        _check_probes(backend, CanarySpec(gates={"macro_f1_min": 0.8}), "gcp")
    assert err.value.problems[0].field == "deploy.canary.gates.macro_f1_min"
