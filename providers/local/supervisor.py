"""Watches one local training process and records how it ended.

Started by LocalRuns.submit in a session of its own, so the run outlives the
shell that launched it. The trainer (or torchrun and its workers) share the
supervisor's process group, so cancel signals the whole tree at once.

Usage: python -m providers.local.supervisor RUN_DIR
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from providers.local.runtime import (
    FAILURE,
    LAUNCH,
    TRAIN_LOG,
    read_json,
    update_state,
)

GRACE_SECONDS = 10.0


def main(run_dir: Path) -> int:
    launch = read_json(run_dir / LAUNCH)
    # Installed before the trainer starts, so an early cancel is not lost; exec resets
    # caught signals, so the trainer keeps the default (terminate on SIGTERM).
    cancel_requested: list[float] = []

    def on_term(signum: int, _frame: object) -> None:
        # The whole group got this signal; the main loop gives the tree a grace period.
        if not cancel_requested:
            cancel_requested.append(time.time())

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    env = {**os.environ, **launch["env"]}
    # compute.max_runtime holds here as on every cloud: past it the tree is stopped.
    deadline = time.time() + float(launch.get("max_runtime_s") or float("inf"))
    timed_out: list[float] = []
    update_state(
        run_dir,
        state="running",
        supervisor_pid=os.getpid(),
        pgid=os.getpgrp(),
        started_at=time.time(),
    )
    code = 0
    for argv in launch["steps"]:  # e.g. preprocess, then torchrun; stop at the first failure
        if cancel_requested:
            break
        code = _run_step(argv, run_dir, env, cancel_requested, deadline, timed_out)
        if code != 0:
            break
    if timed_out:
        state, message = (
            "failed",
            (
                f"max_runtime exceeded ({launch['max_runtime_s']} s); "
                "training.resume: auto continues from the newest checkpoint"
            ),
        )
    else:
        state, message = _outcome(run_dir, code, bool(cancel_requested))
    update_state(run_dir, state=state, message=message, exit_code=code, ended_at=time.time())
    return 0


def _run_step(
    argv: list[str],
    run_dir: Path,
    env: dict[str, str],
    cancel_requested: list[float],
    deadline: float,
    timed_out: list[float],
) -> int:
    with (run_dir / TRAIN_LOG).open("ab") as log:
        child = subprocess.Popen(argv, cwd=run_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    update_state(run_dir, trainer_pid=child.pid)
    while True:
        try:
            return child.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            now = time.time()
            if now > deadline and not cancel_requested:
                timed_out.append(now)
                os.killpg(os.getpgrp(), signal.SIGTERM)  # like a cancel; on_term records it
            if cancel_requested and now - cancel_requested[0] > GRACE_SECONDS:
                if timed_out:
                    update_state(run_dir, state="failed", message="max_runtime exceeded")
                else:
                    update_state(
                        run_dir, state="cancelled", message="cancelled (killed after grace)"
                    )
                os.killpg(os.getpgrp(), signal.SIGKILL)  # ends this supervisor too


def _outcome(run_dir: Path, code: int, cancelled: bool) -> tuple[str, str]:
    if cancelled:
        return "cancelled", "cancelled by request"
    if code == 0:
        return "succeeded", "finished"
    failure = read_json(run_dir / FAILURE)
    if failure.get("message"):
        return "failed", failure["message"]
    if code < 0:
        name = signal.Signals(-code).name
        return "failed", f"trainer was killed by {name}"
    return "failed", f"trainer exited with code {code}"


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
