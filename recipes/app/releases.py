"""`recipe release`: a run's endpoint promoted by a canary, gates on the candidate alone,
and an automatic rollback. A use case a CI job, a notebook or the CLI can call.

    started   -> the candidate deployed beside the stable version, with no live traffic
    deployed  -> probed: the golden set sent to the candidate alone (and to stable when a
                 regression gate compares them); quality gates decide
    probed    -> baking at each share of deploy.canary (steps), gates on the candidate's
                 own live traffic; a certain breach rolls back at once
    baking    -> promoted: 100 % to the candidate; the old version stays, without traffic,
                 for termination_wait, then it is removed -> done
    any gate failed -> rolled_back: 0 % to the candidate, candidate removed
    too little evidence when a bake ends -> held: nothing promoted; run again to go on baking

Every transition is saved in the ledger before the next begins, with its evidence, so a
killed release resumes where it stopped, and the stable version serves throughout: it
never loses traffic before the candidate passed. One release at a time per endpoint.
"""

from __future__ import annotations

import getpass
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from providers.base import EndpointPlan, EndpointRef, ReleaseBackend
from recipes.app import endpoints
from recipes.app.canary import Verdict, decide, golden_scores, quality_verdicts, traffic_verdicts
from recipes.app.ledger import Ledger
from recipes.errors import Problem, RecipeInputError
from recipes.schema import Recipe
from recipes.schema.deploy import CanarySpec

ENDED = ("done", "rolled_back")
EXIT = {"done": 0, "promoted": 0, "rolled_back": 1, "held": 1, "planned": 0}


@dataclass
class Release:
    release_id: str
    provider: str
    endpoint: str
    run_id: str
    candidate: str
    stable: str | None
    shares: list[int]
    who: str
    recipe_hash: str = ""  # the recipe file's content hash when the release began (audit)
    state: str = "started"
    step: int = 0  # index into shares
    step_started: float | None = None  # the window the gates read starts here
    bake_until: float | None = None  # a held release, run again, bakes until here
    promoted_at: float | None = None
    ref: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Release:
        return cls(**data)

    def endpoint_ref(self) -> EndpointRef:
        return EndpointRef(**self.ref)


@dataclass(frozen=True)
class Event:
    at: float
    state: str
    text: str
    verdicts: tuple[Verdict, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "state": self.state,
            "text": self.text,
            "verdicts": [v.to_dict() for v in self.verdicts],
        }


@dataclass
class Clock:
    """Time, injected so tests can bake for minutes in milliseconds."""

    now: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    poll_s: float = 5.0


@dataclass(frozen=True)
class ReleaseResult:
    release: Release
    outcome: str  # done, promoted, rolled_back, held, planned (dry run)

    @property
    def exit_code(self) -> int:
        return EXIT[self.outcome]

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "exit_code": self.exit_code, **self.release.to_dict()}


def release(
    run_id: str,
    provider: str | None = None,
    recipe_file: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    dry_run: bool = False,
    abort: bool = False,
    on_event: Callable[[Event], None] = lambda _: None,
    backend: ReleaseBackend | None = None,
    clock: Clock | None = None,
) -> ReleaseResult:
    """Release the run's endpoint, or resume the release in progress for it."""
    clock = clock or Clock()
    prepared = endpoints.prepare(run_id, provider, recipe_file, overrides, backend)  # type: ignore[arg-type]
    plan, recipe = prepared.plan, prepared.loaded.resolved()
    target = prepared.backend
    if not isinstance(target, ReleaseBackend):
        raise RecipeInputError(
            Problem(
                f"{plan.provider} endpoints cannot be released with a canary yet",
                field="--provider",
                hint="`recipe endpoint deploy` replaces the version at once",
            )
        )
    canary = (recipe.deploy.canary if recipe.deploy else None) or CanarySpec()
    _check_probes(target, canary, plan.provider)
    ledger = Ledger()
    found = _in_progress(ledger, plan)
    if abort:
        if found is None or found.state == "started":
            raise RecipeInputError(
                Problem(
                    f"no release of run {run_id} is in progress on {plan.endpoint}",
                    field="--abort",
                )
            )
        run = _Runner(found, plan, recipe, canary, target, ledger, clock, on_event)
        return ReleaseResult(found, run.roll_back(f"aborted by {_who()}", []))
    current = found or _new(ledger, plan, canary, prepared.loaded.content_hash)
    if dry_run:
        return ReleaseResult(current, "planned")
    run = _Runner(current, plan, recipe, canary, target, ledger, clock, on_event)
    return ReleaseResult(current, run.go())


QUALITY_GATES = ("macro_f1_min", "exact_match_min", "max_regression")


def _check_probes(backend: ReleaseBackend, canary: CanarySpec, provider: str) -> None:
    """Quality gates need the golden set sent to the candidate alone; say so up front
    where the backend cannot, rather than roll back on probes that cannot be answered."""
    if getattr(backend, "probes_one_deployment", True):
        return
    asked = [g for g in QUALITY_GATES if getattr(canary.gates, g) is not None]
    if asked:
        raise RecipeInputError(
            Problem(
                f"{provider} endpoints cannot send a request to one deployment alone, so "
                f"the golden-set gates ({', '.join(asked)}) cannot judge the candidate there",
                field=f"deploy.canary.gates.{asked[0]}",
                hint="keep quality in the training gates (eval.gates) for this backend, and "
                "error_rate_max / p95_ms_max for the canary",
            )
        )


def _in_progress(ledger: Ledger, plan: EndpointPlan) -> Release | None:
    for row in ledger.releases(plan.endpoint, plan.provider):
        if row.state in ENDED:
            continue
        found = Release.from_dict(row.data)
        if found.candidate != plan.deployment:
            raise RecipeInputError(
                Problem(
                    f"endpoint {plan.endpoint} has a release in progress ({found.release_id}: "
                    f"run {found.run_id}, {found.state})",
                    field="--endpoint",
                    hint=f"finish it with `recipe release {found.run_id}`, or roll it back "
                    f"with `recipe release {found.run_id} --abort`",
                )
            )
        return found
    return None


def _new(ledger: Ledger, plan: EndpointPlan, canary: CanarySpec, recipe_hash: str) -> Release:
    try:
        stable = ledger.find_endpoint(plan.endpoint, plan.provider).ref.deployment
    except RecipeInputError:
        stable = None  # the endpoint's first version
    return Release(
        release_id=f"{plan.endpoint}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}",
        provider=plan.provider,
        endpoint=plan.endpoint,
        run_id=plan.artifact.run_id,
        candidate=plan.deployment,
        stable=stable if stable != plan.deployment else None,
        shares=canary.shares() if stable and stable != plan.deployment else [],
        who=_who(),
        recipe_hash=recipe_hash,
    )


def _who() -> str:
    import os

    user = os.environ.get("GITHUB_ACTOR") or getpass.getuser()
    return f"{user}@{socket.gethostname()}"


class _Runner:
    """Drives one release from its saved state to an outcome, saving every step."""

    def __init__(
        self,
        current: Release,
        plan: EndpointPlan,
        recipe: Recipe,
        canary: CanarySpec,
        backend: ReleaseBackend,
        ledger: Ledger,
        clock: Clock,
        on_event: Callable[[Event], None],
    ):
        self.r, self.plan, self.recipe, self.canary = current, plan, recipe, canary
        self.backend, self.ledger, self.clock, self.on_event = backend, ledger, clock, on_event

    def go(self) -> str:
        steps = {
            "started": self.deploy,
            "deployed": self.probe,
            "probed": self.shift,
            "held": self.shift,
            "baking": self.bake,
            "promoted": self.finish,
        }
        while self.r.state in steps:
            outcome = steps[self.r.state]()
            if outcome:
                return outcome
        return self.r.state

    # --- steps: each ends by saving the next state ---------------------------------------

    def deploy(self) -> str | None:
        stable = self._stable_ref()
        ref = self.backend.deploy_candidate(self.plan, stable)
        self.r.ref = asdict(ref)
        where = f"beside {self.r.stable}" if self.r.stable else "as the endpoint's first version"
        self.save("deployed", f"candidate {self.r.candidate} ready {where}, no live traffic")
        return None

    def probe(self) -> str | None:
        verdicts = self._quality()
        decision = decide(verdicts)
        if decision == "rollback":
            return self.roll_back("the golden set failed a quality gate", verdicts)
        if decision == "hold":
            return self.hold("too few golden answers to judge the candidate", verdicts)
        self.save("probed", "golden set passed" if verdicts else "no quality gate", verdicts)
        return None

    def shift(self) -> str | None:
        if self.r.step >= len(self.r.shares):
            return self.promote()
        share = self.r.shares[self.r.step]
        now = self.clock.now()
        if self.r.state == "held" and self.r.step_started is not None:
            # Run again after a hold: bake once more, counting the evidence gathered so far.
            text = f"{share}% of live traffic to the candidate, baking again"
        else:
            self._weights(share)
            self.r.step_started = now
            text = f"{share}% of live traffic to the candidate"
        self.r.bake_until = now + self.canary.bake
        self.save("baking", text)
        return None

    def bake(self) -> str | None:
        assert self.r.step_started is not None
        deadline = self.r.bake_until or self.r.step_started + self.canary.bake
        while True:
            sample = self.backend.traffic(
                self.r.endpoint_ref(), self.r.candidate, self.r.step_started
            )
            verdicts = traffic_verdicts(self.canary, sample)
            decision = decide(verdicts)
            if decision == "rollback":
                return self.roll_back("a canary gate failed on the candidate's traffic", verdicts)
            if self.clock.now() >= deadline:
                if decision == "hold":
                    return self.hold("too little live traffic when the bake ended", verdicts)
                self.r.step += 1
                self.save("probed", f"step {self.r.step} passed", verdicts)
                return None
            self.clock.sleep(self.clock.poll_s)

    def promote(self) -> str | None:
        self.backend.set_traffic(self.r.endpoint_ref(), self._split(100))
        self.r.promoted_at = self.clock.now()
        self.ledger.record_endpoint(self._candidate_ref(), self.r.run_id, self.plan.to_dict())
        self.save("promoted", f"100% to {self.r.candidate}")
        return None

    def finish(self) -> str | None:
        if self.r.stable:
            assert self.r.promoted_at is not None
            left = self.r.promoted_at + self.canary.termination_wait - self.clock.now()
            if left > 0:
                self.clock.sleep(left)
            self.backend.retire(self.r.endpoint_ref(), self.r.stable)
        self.save("done", f"{self.r.stable or 'nothing'} retired")
        return "done"

    def roll_back(self, why: str, verdicts: list[Verdict]) -> str:
        ref = self.r.endpoint_ref()
        if self.r.stable:
            self.backend.set_traffic(ref, {self.r.stable: 100, self.r.candidate: 0})
        self.backend.retire(ref, self.r.candidate)
        self.save("rolled_back", f"{why}; {self.r.stable or 'no version'} keeps serving", verdicts)
        return "rolled_back"

    def hold(self, why: str, verdicts: list[Verdict]) -> str:
        self.save("held", f"{why}; nothing promoted, run again to go on", verdicts)
        return "held"

    # --- helpers --------------------------------------------------------------------------

    def _quality(self) -> list[Verdict]:
        gates = self.canary.gates
        asked = (gates.macro_f1_min, gates.exact_match_min, gates.max_regression)
        if all(g is None for g in asked) or not self.recipe.eval.golden:
            return []
        rows = _golden_rows(self.recipe.eval.golden)
        ref = self.r.endpoint_ref()
        candidate = self._answers(ref, self.r.candidate, self.plan.serving.served_name, rows)
        stable = None
        if gates.max_regression is not None and self.r.stable:
            stable = self._answers(ref, self.r.stable, self.plan.serving.served_name, rows)
        return quality_verdicts(self.canary, candidate, stable)

    def _answers(self, ref: EndpointRef, deployment: str, model: str, rows: list[Any]) -> Any:
        targets, answers = [], []
        for messages, expected in rows:
            body = {
                "model": model,
                "messages": messages,
                "max_tokens": self.recipe.eval.max_new_tokens,
                "temperature": 0,
            }
            try:
                reply = self.backend.invoke_deployment(ref, deployment, body)
                answers.append(str(reply["choices"][0]["message"]["content"] or ""))
            except Exception:  # a failed request is a wrong answer, not a crashed release
                answers.append("")
            targets.append(expected)
        return golden_scores(self.recipe.eval.task, targets, answers)

    def _weights(self, share: int) -> None:
        self.backend.set_traffic(self.r.endpoint_ref(), self._split(share))

    def _split(self, share: int) -> dict[str, int]:
        weights = {self.r.candidate: share}
        if self.r.stable:
            weights[self.r.stable] = 100 - share
        return weights

    def _stable_ref(self) -> EndpointRef | None:
        if not self.r.stable:
            return None
        return self.ledger.find_endpoint(self.r.endpoint, self.r.provider).ref

    def _candidate_ref(self) -> EndpointRef:
        ref = self.r.endpoint_ref()
        return EndpointRef(ref.provider, ref.endpoint, self.r.candidate, ref.ids)

    def save(self, state: str, text: str, verdicts: list[Verdict] | None = None) -> None:
        self.r.state = state
        event = Event(self.clock.now(), state, text, tuple(verdicts or ()))
        self.r.events.append(event.to_dict())
        self.ledger.save_release(
            self.r.release_id,
            self.r.provider,
            self.r.endpoint,
            self.r.run_id,
            state,
            self.r.to_dict(),
        )
        self.on_event(event)


def _golden_rows(path: str) -> list[tuple[list[dict[str, Any]], str]]:
    """(messages without the answer, the expected answer) of each golden example."""
    from training_scripts.rows import read_examples

    rows = []
    for example in read_examples(Path(path), "chat"):
        messages = list(example.messages)
        expected = str(messages[-1].get("content") or "")
        rows.append((messages[:-1], expected))
    return rows
