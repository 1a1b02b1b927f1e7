"""The release state machine, with faults injected through an in-memory backend.

The backend plans like the local one (a real plan of a real run record) and keeps the
endpoint's deployments, weights and each deployment's traffic in memory; the clock is
injected, so a ten-minute bake takes milliseconds. Each scenario ends as it should and
the stable version keeps serving throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from providers.base import (
    Artifact,
    Deployed,
    EndpointPlan,
    EndpointRef,
    EndpointState,
    EndpointStatus,
    ProviderError,
    TrafficSample,
)
from providers.local.endpoint import LocalEndpoints
from recipes.app import releases
from recipes.app.ledger import Ledger
from recipes.errors import RecipeInputError
from recipes.schema import Recipe
from tests.conftest import finished_run, tiny_recipe

CANARY = {
    "percent": 10,
    "min_requests": 50,
    "min_golden": 8,
    "bake": "10m",
    "termination_wait": "5m",
    "gates": {"error_rate_max": 0.02, "p95_ms_max": 800, "exact_match_min": 0.5},
}


@dataclass
class Behaviour:
    answers: str = "right"  # right or wrong golden answers
    per_minute: int = 30  # live requests it serves per minute at 10 % share
    error_rate: float = 0.0
    p95_ms: float = 200.0


@dataclass
class Memory:
    """An endpoint in memory: what is deployed, the weights, and every call made."""

    deployed: dict[str, Behaviour] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)
    history: list[dict[str, int]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    fail: dict[str, BaseException] = field(default_factory=dict)  # call -> raised once
    golden: dict[str, str] = field(default_factory=dict)  # user message -> right answer


class FakeBackend:
    name = "local"

    def __init__(self, memory: Memory, behaviour: Behaviour, now: list[float]):
        self.memory, self.behaviour, self.now = memory, behaviour, now
        self.planner = LocalEndpoints()

    def _call(self, name: str) -> None:
        self.memory.calls.append(name)
        if name in self.memory.fail:
            raise self.memory.fail.pop(name)

    def plan_endpoint(self, recipe: Recipe, artifact: Artifact) -> EndpointPlan:
        return self.planner.plan_endpoint(recipe, artifact)

    def deploy(self, plan: EndpointPlan) -> Deployed:
        self.memory.deployed = {plan.deployment: self.behaviour}
        self.memory.weights = {plan.deployment: 100}
        return Deployed(EndpointRef("local", plan.endpoint, plan.deployment))

    def deploy_candidate(self, plan: EndpointPlan, stable: EndpointRef | None) -> EndpointRef:
        self._call("deploy_candidate")
        self.memory.deployed[plan.deployment] = self.behaviour
        self.memory.weights.setdefault(plan.deployment, 0 if stable else 100)
        return EndpointRef("local", plan.endpoint, plan.deployment)

    def set_traffic(self, ref: EndpointRef, weights: dict[str, int]) -> None:
        self._call("set_traffic")
        self.memory.weights = dict(weights)
        self.memory.history.append(dict(weights))

    def invoke_deployment(self, ref: EndpointRef, deployment: str, body: dict) -> dict:
        behaviour = self.memory.deployed[deployment]
        question = body["messages"][-1]["content"]
        right = self.memory.golden[question]
        content = right if behaviour.answers == "right" else "no idea"
        return {"choices": [{"message": {"content": content}}]}

    def traffic(self, ref: EndpointRef, deployment: str, since: float) -> TrafficSample:
        self._call("traffic")
        b = self.memory.deployed[deployment]
        minutes = max(0.0, self.now[0] - since) / 60
        share = self.memory.weights.get(deployment, 0) / 10
        served = int(b.per_minute * minutes * share)
        return TrafficSample(
            deployment, served, int(served * b.error_rate), b.p95_ms, since, self.now[0]
        )

    def retire(self, ref: EndpointRef, deployment: str) -> None:
        self._call(f"retire {deployment}")
        self.memory.deployed.pop(deployment, None)
        self.memory.weights.pop(deployment, None)

    def endpoint_status(self, ref: EndpointRef) -> EndpointStatus:
        return EndpointStatus(ref.endpoint, "local", EndpointState.READY)

    def invoke(self, ref: EndpointRef, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def delete_endpoint(self, ref: EndpointRef) -> None:
        self.memory.deployed.clear()


@dataclass
class World:
    home: Path
    memory: Memory
    now: list[float]
    stable_run: str
    candidate_run: str
    recipe_file: Path

    def clock(self) -> releases.Clock:
        def sleep(seconds: float) -> None:
            self.now[0] += seconds

        return releases.Clock(now=lambda: self.now[0], sleep=sleep, poll_s=30)

    def release(self, behaviour: Behaviour, run: str | None = None, **kw: Any):
        backend = FakeBackend(self.memory, behaviour, self.now)
        return releases.release(
            run or self.candidate_run, backend=backend, clock=self.clock(), **kw
        )

    def serving(self) -> dict[str, int]:
        return {d: w for d, w in self.memory.weights.items() if w}


@pytest.fixture
def world(home: Path, write_recipe, small_data: Path, adapter_dir: Path) -> World:
    from tests.test_endpoints import DEPLOY

    recipe_file = write_recipe(tiny_recipe(small_data, deploy={**DEPLOY, "canary": CANARY}))
    stable = finished_run(home, recipe_file, adapter_dir, run_id="tiny-20261123-100000-0001")
    candidate = finished_run(home, recipe_file, adapter_dir, run_id="tiny-20261123-110000-0002")
    memory = Memory()
    from training_scripts.rows import read_examples

    for example in read_examples(small_data / "golden.jsonl"):
        memory.golden[example.messages[-2]["content"]] = example.messages[-1]["content"]
    w = World(home, memory, [1_000_000.0], stable, candidate, recipe_file)
    first = w.release(Behaviour(), run=stable)  # the endpoint's first version
    assert first.outcome == "done" and w.serving() == {_deployment(w, stable): 100}
    memory.calls.clear()
    memory.history.clear()
    return w


def _deployment(world: World, run_id: str) -> str:
    from recipes.app import endpoints

    return endpoints.prepare(run_id).plan.deployment


def test_a_good_candidate_is_promoted_after_its_bake(world: World) -> None:
    stable, candidate = (_deployment(world, r) for r in (world.stable_run, world.candidate_run))
    result = world.release(Behaviour())
    assert result.outcome == "done" and result.exit_code == 0
    assert world.memory.history == [{candidate: 10, stable: 90}, {candidate: 100, stable: 0}]
    assert world.serving() == {candidate: 100}
    assert f"retire {stable}" in world.memory.calls
    states = [e["state"] for e in result.release.events]
    assert states == ["deployed", "probed", "baking", "probed", "promoted", "done"]
    # The evidence is recorded: who, the gates with their values and sample counts.
    baked = result.release.events[3]["verdicts"]
    assert {v["gate"] for v in baked} == {"served", "error_rate_max", "p95_ms_max"}
    assert all(v["samples"] >= 50 for v in baked) and "@" in result.release.who
    assert len(result.release.recipe_hash) == 64 and all(e["at"] for e in result.release.events)
    assert Ledger().find_endpoint("tiny-triage").ref.deployment == candidate


@pytest.mark.parametrize(
    ("behaviour", "why"),
    [
        (Behaviour(error_rate=0.2), "canary gate failed"),  # answers 5xx
        (Behaviour(p95_ms=2500), "canary gate failed"),  # slow
        (Behaviour(answers="wrong"), "golden set failed a quality gate"),  # untrained
    ],
)
def test_a_bad_candidate_is_rolled_back_and_stable_keeps_serving(
    world: World, behaviour: Behaviour, why: str
) -> None:
    stable, candidate = (_deployment(world, r) for r in (world.stable_run, world.candidate_run))
    result = world.release(behaviour)
    assert result.outcome == "rolled_back" and result.exit_code == 1
    assert why in result.release.events[-1]["text"]
    assert world.serving() == {stable: 100}
    assert candidate not in world.memory.deployed
    # The stable version never had less than 100 - canary percent.
    assert all(h.get(stable, 100) >= 90 for h in world.memory.history)
    if behaviour.answers == "wrong":
        assert world.memory.history == [{stable: 100, candidate: 0}]  # no live traffic ever


def test_too_little_traffic_holds_and_a_rerun_goes_on(world: World) -> None:
    quiet = Behaviour(per_minute=2)  # 20 requests in the 10-minute bake: inconclusive
    held = world.release(quiet)
    assert held.outcome == "held" and held.exit_code == 1
    assert "too little live traffic" in held.release.events[-1]["text"]
    stable, candidate = (_deployment(world, r) for r in (world.stable_run, world.candidate_run))
    assert world.serving() == {stable: 90, candidate: 10}  # nothing promoted
    # Run again: it bakes once more, the window still counting from the first shift.
    busier = Behaviour(per_minute=4)  # more users: 4 x 20 minutes = 80 >= 50
    world.memory.deployed[candidate] = busier
    resumed = world.release(busier)
    assert resumed.outcome == "done" and resumed.release.release_id == held.release.release_id
    texts = [e["text"] for e in resumed.release.events]
    assert "10% of live traffic to the candidate, baking again" in texts
    assert world.memory.history.count({candidate: 10, stable: 90}) == 1  # not shifted twice


@pytest.mark.parametrize(
    "fault", [KeyboardInterrupt(), ProviderError("UpdateEndpointWeights: throttled")]
)
def test_killed_or_failing_mid_shift_resumes(world: World, fault: BaseException) -> None:
    world.memory.fail["set_traffic"] = fault
    with pytest.raises(type(fault)):
        world.release(Behaviour())
    stable, candidate = (_deployment(world, r) for r in (world.stable_run, world.candidate_run))
    assert world.serving() == {stable: 100}  # nothing moved: stable serves
    (row,) = [r for r in Ledger().releases("tiny-triage") if r.run_id == world.candidate_run]
    assert row.state == "probed"
    result = world.release(Behaviour())
    assert result.outcome == "done" and world.serving() == {candidate: 100}
    assert world.memory.calls.count("deploy_candidate") == 1  # resumed, not restarted


def test_a_second_release_on_the_endpoint_is_refused_while_one_is_in_progress(
    world: World, write_recipe, small_data: Path, adapter_dir: Path
) -> None:
    world.release(Behaviour(per_minute=2))  # held: still in progress
    third = finished_run(
        world.home, world.recipe_file, adapter_dir, run_id="tiny-20261123-120000-0003"
    )
    # A different artifact: another run directory gives another deployment.
    with pytest.raises(RecipeInputError, match="has a release in progress"):
        world.release(Behaviour(), run=third)


def test_dry_run_reports_and_creates_nothing(world: World) -> None:
    result = world.release(Behaviour(), dry_run=True)
    assert result.outcome == "planned" and result.exit_code == 0
    assert result.release.shares == [10] and result.release.stable
    assert world.memory.calls == [] and world.memory.history == []
