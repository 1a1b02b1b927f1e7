"""The files a local run directory holds, shared by the provider and its supervisor.

state.json is the single source of truth for a local run's state; it is always
replaced atomically so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

STATE = "state.json"
LAUNCH = "launch.json"
TRAIN_LOG = "train.log"
METRICS = "metrics.jsonl"
REPORT = "eval_report.json"
FAILURE = "failure.json"  # written by the training script when it fails knowingly


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def update_state(run_dir: Path, **fields: Any) -> dict[str, Any]:
    state = read_json(run_dir / STATE)
    state.update(fields, updated_at=time.time())
    write_json_atomic(run_dir / STATE, state)
    return state


def tail(path: Path, lines: int = 20) -> list[str]:
    """The last lines of a text file, reading only its end."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return data.splitlines()[-lines:]
