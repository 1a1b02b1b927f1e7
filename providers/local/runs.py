"""The embedded default backend: train on this machine, fully offline.

plan() describes one process launch (python, or torchrun for several processes)
in a run directory; submit() creates that directory and starts a supervisor
that outlives the shell. Everything about the run lives in `runs/<run-id>/`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from providers import capabilities, staging
from providers.base import (
    Capabilities,
    ErrorKind,
    Estimate,
    Plan,
    ProviderError,
    Request,
    RunIdentity,
    RunRef,
    RunStatus,
    State,
    Submitted,
)
from providers.contract import (
    ENTRY_MODULE,
    PREPROCESS_MODULE,
    check_global_batch,
    job_config,
    run_tags,
)
from providers.local import runtime as rt
from recipes.errors import Problem, RecipeInputError
from recipes.home import HOME_ENV, runs_dir
from recipes.schema import Recipe

# Variables the job always gets. Credentials (WANDB_API_KEY, HF_TOKEN...) are
# inherited from the user's environment at submit time and never written down.
_BASE_ENV = {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}


CAPABILITIES = Capabilities(
    methods=("lora", "qlora", "full"),
    accelerators=(),  # whatever this machine has; the abstract ask is noted, not enforced
    spot=False,
    multi_node=False,
    max_processes_per_node=64,
    targets=("process",),
    why_not={
        "spot": "this machine has no spot market; use aws, azure or gcp",
        "multi_node": "local runs use this one machine; use a cloud for several nodes",
        "remote_data": "local jobs read local files; copy the data here or use its cloud",
        "clusters": "no cluster: each run is a supervised process on this machine",
        "idempotent": "each local run gets a new run id and directory",
    },
)


class LocalRuns:
    """A training run as a supervised process tree on this machine."""

    name = "local"
    target = "process"
    capabilities = CAPABILITIES

    def __init__(self, root: Path | None = None, python: str | None = None):
        self.root = root or runs_dir()
        self.python = python or sys.executable

    # --- plan ------------------------------------------------------------------------

    def plan(self, recipe: Recipe, identity: RunIdentity) -> Plan:
        capabilities.check(self.name, self.capabilities, recipe, self.target)
        local = recipe.compute.local
        processes = local.processes
        check_global_batch(recipe, processes, field="compute.local.processes")
        threads = local.threads or max(1, (os.cpu_count() or 1) // processes)
        job_args = ["--config", "recipe.json", "--output-dir", "."]
        entry = ["-m", ENTRY_MODULE, *job_args]
        if processes > 1:
            launcher = [
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc-per-node={processes}",
            ]
            # Tokenize once into the cache, then every process loads it.
            steps = [
                [self.python, "-m", PREPROCESS_MODULE, *job_args],
                [self.python, *launcher, *entry],
            ]
        else:
            steps = [[self.python, *entry]]
        env = {
            **_BASE_ENV,
            "OMP_NUM_THREADS": str(threads),
            "RECIPE_RUN_ID": identity.run_id,
            "RECIPE_CACHE_DIR": str(self.root / "cache"),  # shared by the runs of this machine
        }
        wandb = recipe.tracking.wandb
        if wandb is not None:
            env["WANDB_DIR"] = "."
        body = {
            "run_dir": str(self.root / identity.run_id),
            "steps": steps,
            "env": env,
            "max_runtime_s": recipe.compute.max_runtime,  # the supervisor stops the run past it
            "files": {"recipe.json": job_config(recipe, identity, self.name)},
        }
        notes = []
        if recipe.compute.accelerator != "cpu":
            notes.append(
                f"compute asks for {recipe.compute.gpus_per_node}x {recipe.compute.accelerator}; "
                f"the local provider uses this machine's devices (device: {local.device})"
            )
        return Plan(
            provider=self.name,
            identity=identity,
            requests=(Request(api="local:spawn", body=body),),
            compute={
                "device": local.device,
                "processes": processes,
                "threads_per_process": threads,
                "world_size": processes,
                "launcher": "torchrun" if processes > 1 else "python",
            },
            tags=run_tags(recipe, identity),
            estimate=Estimate(hours=None, on_demand_usd=0.0, basis="this machine: no cloud charge"),
            notes=tuple(notes),
        )

    # --- submit ----------------------------------------------------------------------

    def submit(self, plan: Plan) -> Submitted:
        (request,) = plan.requests
        body = request.body
        run_dir = Path(body["run_dir"])
        try:
            run_dir.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise ProviderError(f"run directory already exists: {run_dir}") from None
        except OSError as exc:
            raise RecipeInputError(
                Problem(
                    f"cannot create the run directory {run_dir}: {exc.strerror}",
                    file=HOME_ENV,
                    hint="point RECIPE_HOME at a writable directory",
                )
            ) from None
        try:
            for name, content in body["files"].items():
                rt.write_json_atomic(run_dir / name, content)
            rt.write_json_atomic(
                run_dir / rt.LAUNCH,
                {
                    "steps": body["steps"],
                    "env": body["env"],
                    "max_runtime_s": body["max_runtime_s"],
                },
            )
            rt.update_state(run_dir, state="queued", submitted_at=time.time())
            supervisor = subprocess.Popen(
                [self.python, "-m", "providers.local.supervisor", str(run_dir)],
                cwd=run_dir,
                env={**os.environ, **body["env"]},
                stdin=subprocess.DEVNULL,
                stdout=(run_dir / "supervisor.log").open("ab"),
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives this shell; cancel signals its group
            )
        except OSError as exc:
            shutil.rmtree(run_dir, ignore_errors=True)  # leave nothing half-created
            raise ProviderError(f"could not start the local run: {exc}") from None
        rt.update_state(run_dir, supervisor_pid=supervisor.pid, pgid=supervisor.pid)
        ref = RunRef(provider=self.name, run_id=plan.identity.run_id, ids={"run_dir": str(run_dir)})
        return Submitted(ref)

    def latest_attempt(self, plan: Plan) -> int:
        return 0  # every local run is new: run ids carry a timestamp

    # --- status / logs / cancel ------------------------------------------------------

    def status(self, ref: RunRef) -> RunStatus:
        run_dir = Path(ref.ids["run_dir"])
        if not run_dir.is_dir():
            raise ProviderError(f"run directory is gone: {run_dir}", ErrorKind.NOT_FOUND)
        state_data = rt.read_json(run_dir / rt.STATE)
        state = State(state_data.get("state", "queued"))
        message = state_data.get("message", "")
        if not state.terminal and not _alive(state_data.get("supervisor_pid")):
            # The supervisor died without recording an end (machine reboot, kill -9).
            state_data = rt.update_state(
                run_dir, state="failed", message="the run's supervisor exited unexpectedly"
            )
            state, message = State.FAILED, state_data["message"]
        status = RunStatus(run_id=ref.run_id, provider=self.name, state=state, message=message)
        _fill_progress(status, run_dir)
        status.artifacts = _artifacts(run_dir)
        if state == State.FAILED:
            status.log_tail = rt.tail(run_dir / rt.TRAIN_LOG, 20)
        return status

    # --- logs and cancel: the shared methods, with this machine's calls --------------

    logs = staging.job_logs
    cancel = staging.cancel_job
    log_poll_s = 0.5
    cancel_timeout_s = 30.0

    def new_log_lines(self, ref: RunRef, cursor: dict[str, Any]) -> list[str]:
        path = Path(ref.ids["run_dir"]) / rt.TRAIN_LOG
        if not path.exists():
            return []
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            fh.seek(cursor.get("position", 0))
            chunk = fh.read()
            cursor["position"] = fh.tell()
        return chunk.splitlines(keepends=True)

    def stop(self, ref: RunRef) -> None:
        """SIGTERM to the whole process group, then wait for the supervisor to record it."""
        run_dir = Path(ref.ids["run_dir"])
        pgid = rt.read_json(run_dir / rt.STATE).get("pgid")
        if pgid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(pgid), signal.SIGTERM)
        deadline = time.time() + self.cancel_timeout_s
        while time.time() < deadline:
            if self.status(ref).state.terminal:
                return
            time.sleep(0.2)
        rt.update_state(run_dir, state="cancelled", message="cancelled (did not stop in time)")


def _alive(pid: Any) -> bool:
    if not pid:
        return True  # not started yet: nothing to judge
    pid = int(pid)
    try:
        # Reap it if it is our own child (a finished child stays a zombie until reaped).
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fill_progress(status: RunStatus, run_dir: Path) -> None:
    """Progress from the newest step record; the phase from the newest record of all."""
    records = [r for r in map(_json_line, rt.tail(run_dir / rt.METRICS, 50)) if r]
    for record in reversed(records):
        if "step" in record and "total_steps" in record:
            status.step = record["step"]
            status.total_steps = record["total_steps"]
            status.metrics = {k: v for k, v in record.items() if k not in ("step", "total_steps")}
            break
    if records and "phase" in records[-1]:
        status.metrics["phase"] = records[-1]["phase"]
    report = rt.read_json(run_dir / rt.REPORT)
    if report:
        phase = status.metrics.get("phase")
        status.metrics = report
        if not status.state.terminal and phase:
            status.metrics = {**report, "phase": phase}


def _artifacts(run_dir: Path) -> dict[str, str]:
    names = {
        "run_dir": ".",
        "recipe": "recipe.json",
        "log": rt.TRAIN_LOG,
        "metrics": rt.METRICS,
        "eval_report": rt.REPORT,
        "adapter": "adapter",
        "model": "model",
        "checkpoints": "checkpoints",
    }
    return {
        key: str((run_dir / rel).resolve())
        for key, rel in names.items()
        if (run_dir / rel).exists()
    }


def _json_line(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
