"""Metrics out of the job: metrics.jsonl always, Weights & Biases when the recipe asks.

The W&B key is read by wandb itself from the environment (or injected by the
platform's secret store); this module never sees, logs or stores it.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

_SECRETISH = re.compile(r"(key|token|secret|password|credential)", re.IGNORECASE)


def strip_secrets(value: Any) -> Any:
    """Drop any field whose name looks like a secret, at any depth."""
    if isinstance(value, dict):
        return {k: strip_secrets(v) for k, v in value.items() if not _SECRETISH.search(str(k))}
    if isinstance(value, list):
        return [strip_secrets(v) for v in value]
    return value


class Tracker:
    def __init__(self, output_dir: Path, config: dict[str, Any], enabled: bool = True):
        self.enabled = enabled  # only the first process writes
        self.path = output_dir / "metrics.jsonl"
        self.wandb_run: Any = None
        if not enabled:
            return
        wandb_spec = config["recipe"]["tracking"].get("wandb")
        if wandb_spec and wandb_spec["mode"] != "disabled":
            self.wandb_run = _start_wandb(wandb_spec, config, output_dir)

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {**record, "time": round(time.time(), 3)}
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.wandb_run is not None:
            numbers = {
                k: v for k, v in record.items() if isinstance(v, int | float) and k != "step"
            }
            self.wandb_run.log(numbers, step=record.get("step"))

    def summary(self, values: dict[str, Any]) -> None:
        if self.wandb_run is not None:
            for key, value in values.items():
                self.wandb_run.summary[key] = value

    def artifact(self, name: str, kind: str, directory: Path) -> None:
        if self.wandb_run is None or not directory.exists():
            return
        import wandb

        artifact = wandb.Artifact(name=name, type=kind)
        artifact.add_dir(str(directory))
        self.wandb_run.log_artifact(artifact)

    def finish(self, exit_code: int = 0) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish(exit_code=exit_code)
            self.wandb_run = None


def _start_wandb(spec: dict[str, Any], config: dict[str, Any], output_dir: Path) -> Any:
    import wandb

    run = config["run"]
    return wandb.init(
        project=spec["project"],
        entity=spec.get("entity"),
        group=spec.get("group"),
        mode=spec["mode"],
        name=run["id"],
        id=run["id"],
        dir=str(output_dir),
        config=strip_secrets(config["recipe"]),
        tags=[f"{k}:{v}"[:64] for k, v in run["tags"].items()],
        resume="allow",
    )
