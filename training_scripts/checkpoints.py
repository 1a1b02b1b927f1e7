"""Checkpoints written atomically (temp directory, then rename), and found again on resume."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

PREFIX = "step-"
KEEP = 2


def save(
    directory: Path, step: int, model: Any, optimizer: Any, scheduler: Any, extra: dict[str, Any]
) -> Path:
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{PREFIX}{step:08d}"
    tmp = directory / f".tmp-{PREFIX}{step:08d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    trainable = {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}
    torch.save(trainable, tmp / "trainable.pt")
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "python_rng": random.getstate(),
        },
        tmp / "state.pt",
    )
    (tmp / "meta.json").write_text(json.dumps({"step": step, **extra}, indent=2))
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)  # atomic: a checkpoint directory is complete or absent
    _prune(directory)
    return final


def latest(directory: Path) -> Path | None:
    if not directory.is_dir():
        return None
    complete = sorted(
        p for p in directory.iterdir() if p.name.startswith(PREFIX) and (p / "meta.json").exists()
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
    complete = sorted(p for p in directory.iterdir() if p.name.startswith(PREFIX))
    for old in complete[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
