"""The one contract with the orchestrator: recipe.json in, exit codes and files out.

recipe.json is {"contract": N, "run": {...}, "recipe": {...}}, written by the
orchestrator (providers/job.py, CONTRACT_VERSION). Every entry point (train,
preprocess, export, launch) reads it through `load_config`, which refuses a file
written for another contract version instead of failing later on a missing key.

Exit codes of the training script: 0 done, 1 an eval gate failed, 2 bad data, an
impossible setup or a contract mismatch, 143 (128 + SIGTERM) stopped by a signal
after writing a checkpoint: a restart with `training.resume: auto` continues.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training_scripts.modeling import SetupError

SUPPORTED_CONTRACT = 1  # bump together with providers/job.py's CONTRACT_VERSION

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_SETUP = 2
EXIT_STOPPED = 143  # 128 + SIGTERM, the shell's convention for "terminated by signal 15"

FAILURE_FILE = "failure.json"
REPORT_FILE = "eval_report.json"


class ContractError(SetupError):
    """recipe.json was written for another contract version. Exit code 2."""


def check_contract(config: dict[str, Any], source: str) -> None:
    found = config.get("contract") if isinstance(config, dict) else None
    if found != SUPPORTED_CONTRACT:
        shown = "no contract version" if found is None else f"contract {found!r}"
        raise ContractError(
            f"{source}: found {shown}, these training scripts support contract "
            f"{SUPPORTED_CONTRACT}: the orchestrator and the training scripts come from "
            "different versions"
        )


def load_config(path: str | Path) -> dict[str, Any]:
    """recipe.json, checked against SUPPORTED_CONTRACT (ContractError when it differs)."""
    path = Path(path)
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SetupError(f"{path}: cannot read the job config: {exc}") from None
    check_contract(config, str(path))
    return config


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Written whole or not at all (temp file, then rename)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def write_failure(output_dir: Path, message: str) -> None:
    """failure.json: the one-line reason the orchestrator shows for a failed run."""
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json(output_dir / FAILURE_FILE, {"message": message})
