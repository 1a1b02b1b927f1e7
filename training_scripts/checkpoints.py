"""Checkpoints that are complete or ignored, and found again on resume.

A checkpoint is the directory step-NNNNNNNN/; it counts once its meta.json exists, and
meta.json is written last (a file replaced into place). No directory is ever renamed:
on Vertex AI the checkpoint directory is Cloud Storage FUSE (/gcs), where gcsfuse's
rename-dir-limit defaults to 0 and Vertex's guidance is "Avoid renaming directories"
(gcsfuse docs; Vertex AI "Use Cloud Storage FUSE"); file writes and renames work there.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

PREFIX = "step-"
META = "meta.json"
KEEP = 2


def save(
    directory: Path, step: int, model: Any, optimizer: Any, scheduler: Any, extra: dict[str, Any]
) -> Path:
    import torch

    final = directory / f"{PREFIX}{step:08d}"
    final.mkdir(parents=True, exist_ok=True)
    (final / META).unlink(missing_ok=True)  # incomplete until meta.json is back
    trainable = {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}
    torch.save(trainable, final / "trainable.pt")
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "python_rng": random.getstate(),
        },
        final / "state.pt",
    )
    meta = final / f".{META}.{os.getpid()}"
    meta.write_text(json.dumps({"step": step, **extra}, indent=2))
    os.replace(meta, final / META)  # last: the checkpoint is complete from here on
    _prune(directory)
    return final


def latest(directory: Path) -> Path | None:
    if not directory.is_dir():
        return None
    complete = sorted(
        p for p in directory.iterdir() if p.name.startswith(PREFIX) and (p / META).exists()
    )
    return complete[-1] if complete else None


def load(path: Path, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    import torch

    trainable = torch.load(path / "trainable.pt", map_location="cpu")
    params = dict(model.named_parameters())
    missing = [name for name in trainable if name not in params]
    if missing:
        raise RuntimeError(f"checkpoint {path} does not match the model (e.g. {missing[0]})")
    with torch.no_grad():
        for name, value in trainable.items():
            params[name].copy_(value.to(params[name].device))
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    random.setstate(state["python_rng"])
    return json.loads((path / "meta.json").read_text())


def _prune(directory: Path) -> None:
    """Keep the newest KEEP complete checkpoints; drop older ones, complete or not."""
    steps = sorted(p for p in directory.iterdir() if p.name.startswith(PREFIX))
    complete = [p for p in steps if (p / META).exists()]
    if len(complete) <= KEEP:
        return
    oldest_kept = complete[-KEEP]
    for old in steps:
        if old < oldest_kept:
            shutil.rmtree(old, ignore_errors=True)
