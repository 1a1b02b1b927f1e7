"""The shared training script: every backend runs exactly this.

    python -m training_scripts.train --config recipe.json --output-dir OUT
    torchrun --nproc-per-node N -m training_scripts.train --config recipe.json ...

recipe.json is the one contract with the orchestrator: {"run": {...}, "recipe": {...}}.
Exit codes: 0 done, 1 an eval gate failed, 2 bad data or an impossible setup.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training_scripts import checkpoints, pii, platforms
from training_scripts.data import (
    DataError,
    Encoded,
    Example,
    collate,
    dedupe,
    encode,
    micro_batches,
    read_examples,
    split,
)
from training_scripts.distributed import Dist
from training_scripts.modeling import SetupError

FAILURE_FILE = "failure.json"
REPORT_FILE = "eval_report.json"


def log(dist: Dist, message: str) -> None:
    if dist.main:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Datasets:
    train: list[Encoded]
    valid: list[Encoded]
    golden: list[Example]
    dropped: int


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="recipe.json written by the orchestrator")
    parser.add_argument("--output-dir", default=None, help="where outputs go (local, Azure ML)")
    args = parser.parse_args(argv)
    config = json.loads(Path(args.config).read_text())
    paths = platforms.resolve(args.output_dir)
    paths.output_dir.mkdir(parents=True, exist_ok=True)
    dist = Dist.init()
    try:
        return run(config, paths, dist)
    except (DataError, SetupError) as exc:
        _fail(paths, dist, str(exc))
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        dist.close()


def run(config: dict[str, Any], paths: platforms.Paths, dist: Dist) -> int:
    import torch

    from training_scripts import modeling
    from training_scripts.tracking import Tracker

    recipe = config["recipe"]
    spec = recipe["training"]
    torch.manual_seed(spec["seed"])
    started = time.time()
    device = modeling.pick_device(recipe["compute"]["local"]["device"])
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    base = modeling.resolve_base(recipe["model"]["base"])
    log(dist, f"run {config['run']['id']} on {paths.platform}: {dist.world} process(es), {device}")
    tokenizer = modeling.load_tokenizer(
        base, recipe["model"]["revision"], recipe["model"]["trust_remote_code"]
    )
    data = load_datasets(recipe, paths, dist, tokenizer)
    tracker = Tracker(paths.output_dir, config, enabled=dist.main)
    model = modeling.load_model(recipe, base, device)
    pad_id = tokenizer.pad_token_id
    eval_batch = spec["micro_batch_size"] * 2

    report: dict[str, Any] = {"run_id": config["run"]["id"], "model": recipe["model"]["base"]}
    if dist.main:
        tracker.log({"phase": "eval_before"})
        report["before"] = evaluate_model(model, tokenizer, data, recipe, device, eval_batch)
        log(dist, f"before: {_summary(report['before'])}")
    dist.barrier()

    model = modeling.attach_method(model, recipe)
    trainable, total = modeling.count_parameters(model)
    log(dist, f"{recipe['method']['kind']}: training {trainable:,} of {total:,} parameters")
    train_stats = train_loop(model, data, recipe, paths, dist, device, pad_id, tracker)

    if dist.main:
        tracker.log({"phase": "eval_after"})
        inner = model.module if hasattr(model, "module") else model
        report["after"] = evaluate_model(inner, tokenizer, data, recipe, device, eval_batch)
        log(dist, f"after:  {_summary(report['after'])}")
        report["train"] = {**train_stats, "runtime_s": round(time.time() - started, 1)}
        report["data"] = {
            "train_examples": len(data.train),
            "valid_examples": len(data.valid),
            "golden_examples": len(data.golden),
            "dropped_over_max_seq_len": data.dropped,
        }
        save_outputs(inner, tokenizer, recipe, paths)
        report["gates"] = check_gates(recipe["eval"]["gates"], report["after"])
        report["passed"] = all(g["passed"] for g in report["gates"])
        _write_json(paths.output_dir / REPORT_FILE, report)
        tracker.summary(_flat_summary(report))
        tracker.artifact(f"{config['run']['id']}-adapter", "model", paths.model_dir / "adapter")
        tracker.finish(exit_code=0 if report["passed"] else 1)
        if not report["passed"]:
            failed = [g["text"] for g in report["gates"] if not g["passed"]]
            _fail(paths, dist, "eval gate failed: " + "; ".join(failed))
            log(dist, "eval gate failed: " + "; ".join(failed))
            return 1
    dist.barrier()
    log(dist, "done")
    return 0


# --- data --------------------------------------------------------------------------------


def load_datasets(
    recipe: dict[str, Any], paths: platforms.Paths, dist: Dist, tokenizer: Any | None = None
) -> Datasets:
    """Tokenized datasets from the preprocessing cache, or made now and cached."""
    from training_scripts import modeling, preprocess

    base = modeling.resolve_base(recipe["model"]["base"])
    key = preprocess.cache_key(recipe, paths, base)
    directory = preprocess.cache_dir(paths)
    cached = preprocess.load(directory, key)
    if cached is not None:
        log(
            dist,
            f"data: {len(cached.train)} train, {len(cached.valid)} validation, "
            f"{len(cached.golden)} golden (cached {key})",
        )
        return cached
    if tokenizer is None:
        tokenizer = modeling.load_tokenizer(
            base, recipe["model"]["revision"], recipe["model"]["trust_remote_code"]
        )
    data = load_data(recipe, paths, tokenizer, dist)
    if dist.main:
        preprocess.save(directory, key, data)
    return data


def load_data(
    recipe: dict[str, Any], paths: platforms.Paths, tokenizer: Any, dist: Dist
) -> Datasets:
    spec = recipe["data"]
    seed = recipe["training"]["seed"]
    fmt, policy = spec["format"], spec["pii"]
    train_path = platforms.data_path("train", spec["train"], paths)
    train_examples, flagged = pii.apply_policy(
        read_examples(train_path, fmt), policy, str(train_path)
    )
    if flagged:
        log(dist, f"pii: {flagged} rows with personal data ({policy})")
    train_examples, exact, normal = dedupe(train_examples)
    if exact or normal:
        log(dist, f"dedupe: dropped {exact} exact and {normal} normalized duplicates")
    validation = spec["validation"]
    if isinstance(validation, float):
        train_examples, valid_examples = split(train_examples, validation, seed)
    elif isinstance(validation, str):
        valid_path = platforms.data_path("validation", validation, paths)
        valid_examples, _ = pii.apply_policy(
            read_examples(valid_path, fmt), policy, str(valid_path)
        )
    else:
        valid_examples = []
    golden_path = recipe["eval"]["golden"]
    golden = read_examples(platforms.data_path("golden", golden_path, paths)) if golden_path else []

    limit = spec["max_seq_len"]
    train = [encode(e, tokenizer, spec["train_on"]) for e in train_examples]
    valid = [encode(e, tokenizer, spec["train_on"]) for e in valid_examples]
    kept_train = [e for e in train if len(e) <= limit and e.trained_tokens]
    kept_valid = [e for e in valid if len(e) <= limit and e.trained_tokens]
    dropped = len(train) - len(kept_train) + len(valid) - len(kept_valid)
    if not kept_train:
        raise DataError([f"data.train: no example fits max_seq_len={limit} with tokens to train"])
    log(
        dist,
        f"data: {len(kept_train)} train, {len(kept_valid)} validation, {len(golden)} golden"
        + (f"; dropped {dropped} over max_seq_len={limit}" if dropped else ""),
    )
    return Datasets(train=kept_train, valid=kept_valid, golden=golden, dropped=dropped)


# --- training ----------------------------------------------------------------------------


def train_loop(
    model: Any,
    data: Datasets,
    recipe: dict[str, Any],
    paths: platforms.Paths,
    dist: Dist,
    device: Any,
    pad_id: int,
    tracker: Any,
) -> dict[str, Any]:
    import torch
    from transformers import get_scheduler

    from training_scripts.evaluate import token_loss_sum

    spec = recipe["training"]
    micro = spec["micro_batch_size"]
    if spec["batch_size"] % (micro * dist.world):
        raise SetupError(
            f"training.batch_size {spec['batch_size']} is not a multiple of "
            f"micro_batch_size x processes ({micro} x {dist.world})"
        )
    accumulation = spec["batch_size"] // (micro * dist.world)
    per_step = accumulation * dist.world  # micro-batches per optimizer step, all processes
    units, collate_fn = training_units(data.train, recipe["data"], dist)
    lengths = [len(u) for u in units]
    steps_per_epoch = len(micro_batches(lengths, micro, spec["seed"], 0)) // per_step
    if steps_per_epoch == 0:
        raise DataError(
            [
                f"data.train: {len(units)} sequences are fewer than one batch "
                f"(batch_size {spec['batch_size']})"
            ]
        )
    total_steps = max(1, math.floor(spec["epochs"] * steps_per_epoch))
    if spec["max_steps"]:
        total_steps = min(total_steps, spec["max_steps"])
    warmup = spec["warmup_steps"]
    if warmup is None:
        ratio = 0.03 if spec["warmup_ratio"] is None else spec["warmup_ratio"]
        warmup = math.ceil(ratio * total_steps)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=spec["learning_rate"], weight_decay=spec["weight_decay"]
    )
    scheduler = get_scheduler(spec["lr_scheduler"], optimizer, warmup, total_steps)
    step = 0
    if spec["resume"] == "auto":
        found = checkpoints.latest(paths.checkpoint_dir)
        if found is not None:
            meta = checkpoints.load(found, model, optimizer, scheduler)
            step = int(meta["step"])
            log(dist, f"resumed from {found.name}: continuing at step {step}/{total_steps}")
    wrapped = model
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        wrapped = DistributedDataParallel(model, device_ids=ids)
    autocast = _autocast(recipe, device)
    log(
        dist,
        f"training: {total_steps} steps ({steps_per_epoch}/epoch), global batch "
        f"{spec['batch_size']} = {micro} micro x {accumulation} accumulation x {dist.world} "
        f"process(es), warmup {warmup}",
    )
    wrapped.train()
    tokens_seen, train_seconds = 0.0, 0.0
    window_tokens, window_start = 0.0, time.time()
    stopper = EarlyStopping(spec["early_stopping_patience"])
    while step < total_steps:
        tick = time.time()
        epoch, index = divmod(step, steps_per_epoch)
        batches = micro_batches(lengths, micro, spec["seed"], epoch)
        group = batches[index * per_step : (index + 1) * per_step]
        mine = [[units[i] for i in batch] for batch in group[dist.rank :: dist.world]]
        local_targets = sum(e.trained_tokens for batch in mine for e in batch)
        global_targets = dist.sum(float(local_targets), device)
        loss_total, input_tokens = 0.0, 0
        for i, items in enumerate(mine):
            batch = {k: v.to(device) for k, v in collate_fn(items, pad_id).items()}
            input_tokens += int(batch["attention_mask"].sum())
            sync = contextlib.nullcontext()
            if dist.enabled and i < len(mine) - 1:
                sync = wrapped.no_sync()  # all-reduce gradients once per optimizer step
            with sync, autocast:
                loss_sum, _ = token_loss_sum(wrapped, batch)
                # Sum over tokens / global token count: every token weighs the same,
                # whatever its micro-batch; DDP's mean over processes is undone by x world.
                (loss_sum * dist.world / global_targets).backward()
            loss_total += float(loss_sum.detach())
        torch.nn.utils.clip_grad_norm_(params, spec["max_grad_norm"])
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        step_tokens = dist.sum(float(input_tokens), device)
        loss = dist.sum(loss_total, device) / global_targets
        tokens_seen += step_tokens
        window_tokens += step_tokens
        train_seconds += time.time() - tick

        if step % spec["log_every_steps"] == 0 or step == total_steps:
            rate = window_tokens / max(time.time() - window_start, 1e-9)
            window_tokens, window_start = 0.0, time.time()
            record = {
                "phase": "train",
                "step": step,
                "total_steps": total_steps,
                "epoch": round(step / steps_per_epoch, 3),
                "loss": round(loss, 5),
                "lr": scheduler.get_last_lr()[0],
                "tokens_per_s": round(rate, 1),
            }
            tracker.log(record)
            log(
                dist,
                f"step {step}/{total_steps} epoch {record['epoch']:.2f} loss {loss:.4f} "
                f"lr {record['lr']:.2e} {rate:,.0f} tok/s",
            )
        stop = False
        kinds = eval_kinds(step, steps_per_epoch, total_steps, spec) if data.valid else ()
        if kinds:
            if dist.main:
                record = periodic_eval(model, data.valid, kinds, spec, pad_id, device)
                tracker.log(
                    {"phase": "train", "step": step, **record}
                )  # no total_steps: not progress
                log(dist, f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in record.items()))
                watched = record.get("valid_loss", record.get("full_valid_loss"))
                stop = stopper.update(watched)
            stop = dist.sum(1.0 if stop else 0.0, device) > 0  # every process stops together
            wrapped.train()
        save_every = spec["save_every_steps"]
        save_every = spec["save_every_steps"]
        if stop or (save_every and step % save_every == 0) or step == total_steps:
            if dist.main:
                checkpoints.save(
                    paths.checkpoint_dir,
                    step,
                    model,
                    optimizer,
                    scheduler,
                    {"total_steps": total_steps, "steps_per_epoch": steps_per_epoch},
                )
            dist.barrier()
        if stop:
            log(
                dist,
                f"early stopping at step {step}: no better validation loss in "
                f"{spec['early_stopping_patience']} evaluations (best {stopper.best:.4f})",
            )
            break
    return {
        "steps": step,
        "planned_steps": total_steps,
        "early_stopped": step < total_steps,
        "tokens": int(tokens_seen),
        "tokens_per_s": round(tokens_seen / max(train_seconds, 1e-9), 1),
        "train_seconds": round(train_seconds, 1),
        "world_size": dist.world,
        "global_batch": spec["batch_size"],
    }


class EarlyStopping:
    """Stop when the watched validation loss has not improved for `patience` evaluations."""

    def __init__(self, patience: int | None):
        self.patience = patience
        self.best = float("inf")
        self.bad = 0

    def update(self, value: float | None) -> bool:
        if value is None:
            return False
        if value < self.best - 1e-6:
            self.best, self.bad = value, 0
        else:
            self.bad += 1
        return self.patience is not None and self.bad >= self.patience


def eval_kinds(step: int, steps_per_epoch: int, total_steps: int, spec: dict[str, Any]) -> tuple:
    """Which validation runs now: a sample every eval_every_steps, all of it at epoch ends."""
    kinds = []
    every = spec["eval_every_steps"]
    if every and step % every == 0:
        kinds.append("sample")
    if step % steps_per_epoch == 0 or step == total_steps:
        kinds.append("full")
    return tuple(kinds)


def periodic_eval(
    model: Any, valid: list[Encoded], kinds: tuple, spec: dict[str, Any], pad_id: int, device: Any
) -> dict[str, float]:
    import random

    from training_scripts.evaluate import validation_metrics

    batch = spec["micro_batch_size"] * 2
    record: dict[str, float] = {}
    if "sample" in kinds:
        size = min(spec["eval_sample_size"], len(valid))
        sample = random.Random(spec["seed"]).sample(valid, size)  # the same sample every time
        metrics = validation_metrics(model, sample, pad_id, batch, device) or {}
        record["valid_loss"] = round(metrics["loss"], 5)
        record["valid_token_accuracy"] = round(metrics["token_accuracy"], 5)
    if "full" in kinds:
        metrics = validation_metrics(model, valid, pad_id, batch, device) or {}
        record["full_valid_loss"] = round(metrics["loss"], 5)
        record["full_valid_token_accuracy"] = round(metrics["token_accuracy"], 5)
    return record


def training_units(
    examples: list[Encoded], data_spec: dict[str, Any], dist: Dist
) -> tuple[list[Any], Any]:
    """What a micro-batch is made of: examples, or packed sequences of several examples."""
    from training_scripts.packing import collate_packed, pack

    if not data_spec["packing"]:
        return examples, collate
    packed = pack(examples, data_spec["max_seq_len"])
    real = sum(len(p) for p in packed)
    log(
        dist,
        f"packing: {len(examples)} examples into {len(packed)} sequences of <= "
        f"{data_spec['max_seq_len']} tokens ({real / (len(packed) * data_spec['max_seq_len']):.1%} full)",
    )
    return packed, collate_packed


def _autocast(recipe: dict[str, Any], device: Any) -> Any:
    import torch

    from training_scripts.modeling import pick_dtype

    dtype = pick_dtype(recipe, device)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# --- evaluation, outputs -----------------------------------------------------------------


def evaluate_model(
    model: Any, tokenizer: Any, data: Datasets, recipe: dict[str, Any], device: Any, batch: int
) -> dict[str, Any]:
    from training_scripts import evaluate

    metrics = evaluate.validation_metrics(model, data.valid, tokenizer.pad_token_id, batch, device)
    result: dict[str, Any] = {
        "valid_loss": metrics["loss"] if metrics else None,
        "valid_token_accuracy": metrics["token_accuracy"] if metrics else None,
    }
    if data.golden:
        result["golden"] = evaluate.golden(model, tokenizer, data.golden, recipe["eval"], device)
    return result


def save_outputs(
    model: Any, tokenizer: Any, recipe: dict[str, Any], paths: platforms.Paths
) -> None:
    name = "model" if recipe["method"]["kind"] == "full" else "adapter"
    target = paths.model_dir / name
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


def check_gates(gates: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    golden = after.get("golden", {})
    checks = [
        ("macro_f1_min", golden.get("macro_f1"), ">="),
        ("exact_match_min", golden.get("exact_match"), ">="),
        ("json_valid_min", golden.get("json_valid"), ">="),
        ("valid_loss_max", after.get("valid_loss"), "<="),
    ]
    results = []
    for name, value, op in checks:
        threshold = gates.get(name)
        if threshold is None:
            continue
        passed = value is not None and (value >= threshold if op == ">=" else value <= threshold)
        shown = "n/a" if value is None else f"{value:.4f}"
        results.append(
            {
                "gate": name,
                "value": value,
                "threshold": threshold,
                "passed": passed,
                "text": f"{name.rsplit('_', 1)[0]} {shown} {op} {threshold}",
            }
        )
    return results


def _summary(result: dict[str, Any]) -> str:
    parts = []
    if result.get("valid_loss") is not None:
        parts.append(f"valid_loss {result['valid_loss']:.4f}")
    golden = result.get("golden")
    if golden:
        metric = "macro_f1" if "macro_f1" in golden else "exact_match"
        parts.append(f"golden {metric} {golden[metric]:.3f}")
    return ", ".join(parts) or "no validation or golden data"


def _flat_summary(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for phase in ("before", "after"):
        result = report.get(phase, {})
        if result.get("valid_loss") is not None:
            out[f"{phase}/valid_loss"] = result["valid_loss"]
        for key in ("macro_f1", "exact_match"):
            if key in result.get("golden", {}):
                out[f"{phase}/golden_{key}"] = result["golden"][key]
    return out


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _fail(paths: platforms.Paths, dist: Dist, message: str) -> None:
    if dist.main:
        _write_json(paths.output_dir / FAILURE_FILE, {"message": message})


if __name__ == "__main__":
    sys.exit(main())
