"""A local canary release under a bounded client load: what the clients see, one run.

    python benchmarks/release_reliability.py [--run-dir runs/RUN_ID] [--quick] [--rps 20] [--seconds 60]

In a temporary RECIPE_HOME: a recipe on builtin:tiny-chat with a canary (20 %, error-rate
and p95 gates), three finished runs (a LoRA adapter each: the run's with --run-dir, else
a random one, saved the way peft saves), the first deployed with `recipe endpoint
deploy`. Then, as a user or CI would, `recipe release CANDIDATE --format json` twice
while an open-loop load (--rps requests/s from the official openai client, each request
sent on schedule whatever the earlier ones do) calls the endpoint's router URL:

1. a good candidate: expected promoted, with 0 failed client requests;
2. a bad candidate: expected rolled back, with only the requests the router sent to the
   candidate failing, and traffic back on the stable version a few seconds after the
   gate breach.

The bad candidate: a real `recipe serve` of a valid adapter whose server process dies
once the canary sends it live traffic (this script SIGKILLs it, as the kernel's
out-of-memory killer would a server that outgrows its memory). From then on the router
answers 502 for the requests it routes there, which is what the error-rate gate sees.
Why a crash and not a bad model: `recipe serve` turns every model-side problem we could
build without changing production code into a 4xx (a chat template that raises, a
prompt over max_model_len: client errors, not counted against a deployment) or into a
successful answer (NaN weights: sampling falls back to greedy), and a model that fails
to load never gets traffic (the release fails at its deploy step).

Each request is recorded with its start and end time, its status (ok, or the HTTP
code) and the deployment that served it (the router's `x-recipe-deployment` response
header). The release's own event timestamps give the canary window and the rollback.
Exit code 1 when a target is missed. Every server and router this script started is
stopped on any exit path (`recipe endpoint delete`, then a kill of what is left).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BASE = "builtin:tiny-chat"
DATA = REPO / "recipes/catalog/data/support"
ENDPOINT = "release-bench"
HEADER = "x-recipe-deployment"


# -- setup: a recipe and finished runs, as tests/conftest.py makes them -------------------


def recipe_body(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "name": "release-bench",
        "model": {"base": BASE},
        "data": {"train": str(DATA / "train.jsonl"), "validation": 0.1, "max_seq_len": 512},
        "method": {"kind": "lora", "r": 16, "alpha": 32},
        "training": {"epochs": 1, "max_steps": 4, "batch_size": 8, "micro_batch_size": 4},
        "eval": {"golden": str(DATA / "golden.jsonl"), "max_new_tokens": 4},
        "tags": {"project": "benchmarks", "owner": "release-reliability"},
        "deploy": {
            "endpoint": ENDPOINT,
            "canary": {
                "percent": args.percent,
                "min_requests": args.min_requests,
                "bake": f"{args.bake}s",
                "termination_wait": "2s",
                "gates": {"error_rate_max": 0.02, "p95_ms_max": args.p95_ms},
            },
        },
    }


def random_adapter(directory: Path, seed: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from training_scripts import modeling

    torch.manual_seed(seed)
    base = modeling.resolve_base(BASE)
    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear")
    config.init_lora_weights = False  # random B too: a candidate that really differs
    get_peft_model(model, config).save_pretrained(directory)
    modeling.load_tokenizer(base, None, False).save_pretrained(directory)
    return directory


def finished_run(home: Path, recipe_file: Path, adapter: Path, run_id: str) -> str:
    """A local run as the supervisor leaves it (succeeded, eval passed), in the ledger."""
    from providers.base import RunRef, State
    from recipes.app.ledger import Ledger
    from recipes.loader import load_recipe

    run_dir = home / run_id
    run_dir.mkdir(parents=True)
    recipe = load_recipe(recipe_file).resolved()
    (run_dir / "recipe.json").write_text(json.dumps({"recipe": recipe.model_dump(mode="json")}))
    (run_dir / "state.json").write_text(json.dumps({"state": "succeeded"}))
    (run_dir / "eval_report.json").write_text(json.dumps({"passed": True}))
    shutil.copytree(adapter, run_dir / "adapter")
    ref = RunRef("local", run_id, {"run_dir": str(run_dir)})
    Ledger(home / "ledger.sqlite").record(ref, recipe.name, str(recipe_file), State.SUCCEEDED)
    return run_id


class CLI:
    """`recipe ...` in a subprocess with the benchmark's RECIPE_HOME."""

    def __init__(self, home: Path, cwd: Path):
        self.env = {**os.environ, "RECIPE_HOME": str(home), "PYTHONPATH": str(REPO)}
        self.cwd = cwd

    def __call__(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "recipes", *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.cwd,
            timeout=timeout,
        )

    def json(self, *args: str) -> dict[str, Any]:
        result = self(*args, "--format", "json")
        if result.returncode not in (0, 1):
            raise SystemExit(f"recipe {' '.join(args)} failed:\n{result.stderr}")
        return json.loads(result.stdout)


# -- the load: open loop, official openai client -------------------------------------------


@dataclass
class Sent:
    start: float
    end: float
    status: str  # "ok", or the HTTP code, or "conn" (no HTTP answer)
    deployment: str | None


@dataclass
class Load:
    url: str
    model: str
    messages: list[list[dict[str, str]]]
    rps: float
    seconds: float
    max_tokens: int
    sent: list[Sent] = field(default_factory=list)
    release_done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = 0.0
    ended: float = 0.0
    hard_limit_s: float = 600.0

    def one(self, client: Any, i: int) -> None:
        import openai

        start = time.time()
        status, deployment = "ok", None
        try:
            raw = client.chat.completions.with_raw_response.create(
                model=self.model,
                messages=self.messages[i % len(self.messages)],
                max_tokens=self.max_tokens,
                temperature=0,
            )
            raw.parse()
            deployment = raw.headers.get(HEADER)
        except openai.APIStatusError as exc:
            status, deployment = str(exc.status_code), exc.response.headers.get(HEADER)
        except openai.APIConnectionError:
            status = "conn"
        with self.lock:
            self.sent.append(Sent(start, time.time(), status, deployment))

    def run(self) -> None:
        """Sends request i at started + i / rps, until --seconds passed and the release
        ended (a release needs live traffic to its end), within hard_limit_s."""
        from openai import OpenAI

        client = OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0, timeout=120)
        self.started = time.time()
        with ThreadPoolExecutor(max_workers=128) as pool:
            i = 0
            while True:
                due = self.started + i / self.rps
                if due - self.started >= self.seconds and self.release_done.is_set():
                    break
                if due - self.started >= self.hard_limit_s:
                    break
                time.sleep(max(0.0, due - time.time()))
                pool.submit(self.one, client, i)
                i += 1
            self.ended = time.time()


def golden_messages() -> list[list[dict[str, str]]]:
    rows = [json.loads(line) for line in (DATA / "golden.jsonl").read_text().splitlines()]
    # The ticket alone (no 68-token system prompt): prefill is most of the work on this
    # CPU, and 20 requests/s of full classification prompts overload two cores.
    return [[m for m in r["messages"] if m["role"] == "user"] for r in rows]


# -- the bad candidate: its server dies once it has live traffic ---------------------------


def kill_candidate_when_live(
    home: Path, url: str, stable: str, stop: threading.Event, killed: dict[str, Any]
) -> None:
    from providers.local.router import RouterClient, RouterError

    router = RouterClient(url)
    while not stop.is_set():
        with contextlib.suppress(RouterError):
            weights = router.state().get("weights", {})
            live = [name for name, w in weights.items() if w > 0 and name != stable]
            if live:
                state = home / "endpoints" / ENDPOINT / live[0] / "state.json"
                pid = json.loads(state.read_text())["pid"]
                os.kill(int(pid), signal.SIGKILL)
                killed.update(deployment=live[0], pid=pid, at=time.time())
                return
        time.sleep(0.2)


# -- one release under load ------------------------------------------------------------------


def release_under_load(
    cli: CLI, home: Path, candidate: str, args: argparse.Namespace, bad: bool
) -> dict[str, Any]:
    status = cli.json("endpoint", "status", ENDPOINT)
    stable = status["deployment"]
    load = Load(
        status["url"], args.model, golden_messages(), args.rps, args.seconds, args.max_tokens
    )
    loader = threading.Thread(target=load.run)
    stop, killed = threading.Event(), {}
    killer = threading.Thread(
        target=kill_candidate_when_live, args=(home, status["url"], stable, stop, killed)
    )
    loader.start()
    if bad:
        killer.start()
    try:
        began = time.time()
        result = cli("release", candidate, "--format", "json")
        took = time.time() - began
    finally:
        load.release_done.set()
        stop.set()
        loader.join()
        if bad:
            killer.join()
    if result.returncode not in (0, 1):
        raise SystemExit(f"recipe release failed ({result.returncode}):\n{result.stderr}")
    report = json.loads(result.stdout)
    if report["outcome"] == "held":  # too little evidence: roll it back so the next can run
        cli("release", candidate, "--abort", "--format", "json")
    after = cli.json("endpoint", "status", ENDPOINT)
    return {**summarize(report, load, stable, after, killed, bad), "release_s": took}


def summarize(
    report: dict[str, Any],
    load: Load,
    stable: str,
    after: dict[str, Any],
    killed: dict[str, Any],
    bad: bool,
) -> dict[str, Any]:
    events = {e["state"]: e["at"] for e in report["events"]}
    first_event = report["events"][0]["at"]
    last_event = report["events"][-1]["at"]
    canary_from = events.get("baking")
    canary_to = events.get("promoted") or events.get("rolled_back") or last_event
    sent = sorted(load.sent, key=lambda s: s.start)
    candidate = report["candidate"]
    failed = [s for s in sent if s.status != "ok"]
    window = [s for s in sent if canary_from and canary_from <= s.start < canary_to]
    on_candidate = [s for s in window if s.deployment == candidate]
    latency = sorted((s.end - s.start) * 1000 for s in sent if s.status == "ok")
    out: dict[str, Any] = {
        "outcome": report["outcome"],
        "canary_s": (canary_to - canary_from) if canary_from else None,
        "load_s": load.ended - load.started,
        "sent": len(sent),
        "failed": len(failed),
        "failed_codes": sorted({s.status for s in failed}),
        "failed_before_canary": len([s for s in failed if canary_from and s.start < canary_from]),
        "failed_elsewhere": len([s for s in failed if s.deployment != candidate]),
        "window": len(window),
        "on_candidate": len(on_candidate),
        "p95_ms": latency[int(0.95 * (len(latency) - 1))] if latency else None,
        "traffic_after": after.get("traffic"),
        "stable": stable,
        "candidate": candidate,
        "verdicts": [
            f"{v['gate']}={v['outcome']}({v['value'] if v['value'] is None else round(v['value'], 3)})"
            for v in report["events"][-1].get("verdicts", [])
        ],
        "events": [(e["state"], e["at"] - first_event) for e in report["events"]],
    }
    if bad:
        # The breach: the first failed request the candidate served (after the kill).
        breach = min((s.end for s in failed if s.deployment == candidate), default=None)
        rolled = events.get("rolled_back")
        last_on_candidate = max((s.start for s in sent if s.deployment == candidate), default=None)
        out.update(
            killed_at=killed.get("at"),
            breach_to_rollback_s=(rolled - breach) if breach and rolled else None,
            breach_to_last_candidate_request_s=(
                (last_on_candidate - breach) if breach and last_on_candidate else None
            ),
            kill_to_breach_s=(breach - killed["at"]) if breach and killed.get("at") else None,
        )
    return out


# -- cleanup: nothing this script started may outlive it ---------------------------------------


def cleanup(cli: CLI | None, home: Path) -> list[int]:
    """`recipe endpoint delete`, then a kill of any server or router still recorded."""
    if cli is not None:
        with contextlib.suppress(Exception):
            cli("endpoint", "delete", ENDPOINT, timeout=120)
    left = []
    for path in list(home.glob("endpoints/**/*.json")):
        with contextlib.suppress(Exception):
            pid = int(json.loads(path.read_text()).get("pid") or 0)
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                    left.append(pid)
    return left


def fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, help="take this run's adapter (else random ones)")
    parser.add_argument("--quick", action="store_true", help="about 20 s of load, a 10 s bake")
    parser.add_argument("--rps", type=float, default=20.0, help="requests per second (open loop)")
    parser.add_argument("--seconds", type=float, help="load duration (default 60, quick 20)")
    parser.add_argument("--max-tokens", type=int, default=4)
    parser.add_argument("--percent", type=int, default=20, help="canary share")
    parser.add_argument("--bake", type=float, help="bake seconds (default 25, quick 10)")
    parser.add_argument(
        "--min-requests", type=int, help="default: 80%% of what the canary gets in one bake"
    )
    parser.add_argument("--p95-ms", type=float, default=2000.0, help="the latency gate")
    parser.add_argument("--keep", action="store_true", help="keep the temporary RECIPE_HOME")
    args = parser.parse_args()
    args.seconds = args.seconds or (20.0 if args.quick else 60.0)
    args.bake = args.bake or (10.0 if args.quick else 25.0)
    # 20 req/s, 20 %, 25 s: 80 (quick: 32); held, not promoted, when a bake gets fewer.
    args.min_requests = args.min_requests or max(
        1, int(0.8 * args.rps * args.percent / 100 * args.bake)
    )

    tmp = Path(tempfile.mkdtemp(prefix="release-bench-"))
    home = tmp / "runs"
    os.environ["RECIPE_HOME"] = str(home)
    cli: CLI | None = None

    def terminated(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminated)
    signal.signal(signal.SIGHUP, terminated)
    try:
        import yaml

        recipe_file = tmp / "recipe.yaml"
        recipe_file.write_text(yaml.safe_dump(recipe_body(args), sort_keys=False))
        runs = []
        for n, name in enumerate(("stable", "good", "bad")):
            if args.run_dir:
                adapter = args.run_dir / "adapter"
            else:
                adapter = random_adapter(tmp / f"adapter-{name}", seed=n)
            run_id = f"release-bench-20260101-00000{n}-000{n}"
            runs.append(finished_run(home, recipe_file, adapter, run_id))
        cli = CLI(home, tmp)
        t0 = time.time()
        deployed = cli("endpoint", "deploy", runs[0])
        if deployed.returncode != 0:
            raise SystemExit(f"recipe endpoint deploy failed:\n{deployed.stderr}")
        deploy_s = time.time() - t0
        status = cli.json("endpoint", "status", ENDPOINT)
        from openai import OpenAI

        models = OpenAI(base_url=status["url"] + "/v1", api_key="unused").models.list()
        args.model = models.data[0].id

        good = release_under_load(cli, home, runs[1], args, bad=False)
        bad = release_under_load(cli, home, runs[2], args, bad=True)
    finally:
        left = cleanup(cli, home)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    adapters = f"run {args.run_dir.name}'s adapter" if args.run_dir else "random LoRA adapters"
    print(
        f"{BASE} + {adapters}; open-loop load {args.rps:g} req/s (openai client, "
        f"{args.max_tokens} tokens, golden-set tickets, user message only), >= {args.seconds:g} s per release; "
        f"canary {args.percent}%, min_requests {args.min_requests}, bake {args.bake:g} s, "
        f"gates error_rate <= 0.02, p95 <= {args.p95_ms:g} ms; {os.cpu_count()} CPU cores "
        f"(shared); stable deployed in {deploy_s:.0f} s"
    )
    rows = [
        ("outcome", good["outcome"], bad["outcome"]),
        ("release duration", fmt_s(good["release_s"]), fmt_s(bad["release_s"])),
        ("canary (bake) duration", fmt_s(good["canary_s"]), fmt_s(bad["canary_s"])),
        ("load duration", fmt_s(good["load_s"]), fmt_s(bad["load_s"])),
        ("requests sent", good["sent"], bad["sent"]),
        (
            "failed requests (HTTP codes)",
            f"{good['failed']} {','.join(good['failed_codes'])}",
            f"{bad['failed']} {','.join(bad['failed_codes'])}",
        ),
        (
            "  sent before the canary began",
            good["failed_before_canary"],
            bad["failed_before_canary"],
        ),
        ("  of them not on the candidate", good["failed_elsewhere"], bad["failed_elsewhere"]),
        (
            "share of all requests failed",
            pct(good["failed"], good["sent"]),
            pct(bad["failed"], bad["sent"]),
        ),
        ("requests during the canary", good["window"], bad["window"]),
        (
            "  served by the candidate",
            f"{good['on_candidate']} ({pct(good['on_candidate'], good['window'])})",
            f"{bad['on_candidate']} ({pct(bad['on_candidate'], bad['window'])})",
        ),
        ("client p95 of ok requests", ms(good["p95_ms"]), ms(bad["p95_ms"])),
        ("kill -> first failed request", "-", fmt_s(bad.get("kill_to_breach_s"))),
        ("breach -> rolled_back event", "-", fmt_s(bad.get("breach_to_rollback_s"))),
        (
            "breach -> last request to candidate",
            "-",
            fmt_s(bad.get("breach_to_last_candidate_request_s")),
        ),
        ("traffic after", json.dumps(good["traffic_after"]), json.dumps(bad["traffic_after"])),
        ("last verdicts", " ".join(good["verdicts"]), " ".join(bad["verdicts"])),
    ]
    width = max(len(r[0]) for r in rows)
    widths = [max(len(str(r[1])) for r in rows), max(len(str(r[2])) for r in rows)]
    print(f"{'':<{width}} | {'good candidate':<{widths[0]}} | bad candidate (server killed)")
    print("-" * (width + widths[0] + widths[1] + 6))
    for name, a, b in rows:
        print(f"{name:<{width}} | {str(a):<{widths[0]}} | {b}")
    for label, r in (("good", good), ("bad", bad)):
        print(f"events ({label}): " + ", ".join(f"{s} +{t:.1f}s" for s, t in r["events"]))
    if left:
        print(f"killed {len(left)} process(es) left after `recipe endpoint delete`: {left}")

    misses = []
    if good["outcome"] != "done" or good["failed"]:
        misses.append("good candidate: promoted with 0 failed requests")
    if bad["outcome"] != "rolled_back" or bad["failed_elsewhere"]:
        misses.append("bad candidate: rolled back, failures on the candidate only")
    print("targets: " + ("met" if not misses else "MISSED: " + "; ".join(misses)))
    return 1 if misses else 0


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


if __name__ == "__main__":
    sys.exit(main())
