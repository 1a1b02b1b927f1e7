"""A real local release, as CI runs it: two `recipe serve` processes behind the endpoint's
router, live traffic from the official OpenAI client throughout, `recipe release` from
the command line. A good candidate is promoted, a bad one rolled back, and no client
request fails either way."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import CLI, finished_run, tiny_recipe

CANARY = {
    "percent": 50,
    "min_requests": 8,
    "bake": "8s",
    "termination_wait": "1s",
    "gates": {"error_rate_max": 0.05},
}


@dataclass
class Load:
    """Clients calling the endpoint's stable URL until stopped."""

    url: str
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        from openai import OpenAI

        client = OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0, timeout=60)
        while not self.stop.is_set():
            try:
                client.chat.completions.create(
                    model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2
                )
                self.ok += 1
            except Exception as exc:  # every failure is a finding
                self.failed.append(repr(exc))


@dataclass
class Setup:
    cli: CLI
    stable: str
    candidate: str


@pytest.fixture
def setup(
    cli: CLI, home: Path, write_recipe, small_data: Path, adapter_dir: Path
) -> Iterator[Setup]:
    recipe = write_recipe(
        tiny_recipe(small_data, deploy={"endpoint": "tiny-triage", "canary": CANARY})
    )
    stable = finished_run(home, recipe, adapter_dir, run_id="tiny-20261123-100000-0001")
    candidate = finished_run(home, recipe, adapter_dir, run_id="tiny-20261123-110000-0002")
    first = cli("endpoint", "deploy", stable, timeout=300)
    assert first.returncode == 0, first.stderr
    yield Setup(cli, stable, candidate)
    cli("endpoint", "delete", "tiny-triage")


def release_under_load(setup: Setup, *overrides: str) -> tuple[dict, Load, dict]:
    status = setup.cli.json("endpoint", "status", "tiny-triage")
    load = Load(status["url"])
    threads = [threading.Thread(target=load.run) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        result = setup.cli("release", setup.candidate, *overrides, "--format", "json", timeout=300)
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert result.returncode in (0, 1), result.stderr
    after = setup.cli.json("endpoint", "status", "tiny-triage")
    return json.loads(result.stdout), load, after


@pytest.mark.slow
def test_a_good_candidate_is_promoted_under_load(setup: Setup) -> None:
    report, load, after = release_under_load(setup)
    assert report["outcome"] == "done" and report["exit_code"] == 0
    assert load.failed == [] and load.ok > 0
    assert after["traffic"] == {report["candidate"]: 100}
    assert [e["state"] for e in report["events"]][-2:] == ["promoted", "done"]


@pytest.mark.slow
def test_a_candidate_failing_its_gate_is_rolled_back_under_load(setup: Setup) -> None:
    # A latency gate no server can meet: the candidate's own p95 breaks it.
    report, load, after = release_under_load(setup, "deploy.canary.gates.p95_ms_max=0.001")
    assert report["outcome"] == "rolled_back" and report["exit_code"] == 1
    assert load.failed == []
    assert after["traffic"] == {report["stable"]: 100}
    failed = [v for v in report["events"][-1]["verdicts"] if v["outcome"] == "fail"]
    assert [v["gate"] for v in failed] == ["p95_ms_max"]
