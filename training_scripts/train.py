"""The shared training script: every backend runs exactly this.

    python -m training_scripts.train --config recipe.json --output-dir OUT
    torchrun --nproc-per-node N -m training_scripts.train --config recipe.json ...

recipe.json is the one contract with the orchestrator (see contract.py):
{"contract": 1, "run": {...}, "recipe": {...}}.
Exit codes: 0 done, 1 an eval gate failed, 2 bad data, an impossible setup or a
contract mismatch, 143 stopped by SIGTERM after a checkpoint (resumable).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import random
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from training_scripts import checkpoints, contract, evaluate, modeling, platforms
from training_scripts.contract import FAILURE_FILE, REPORT_FILE, write_json
from training_scripts.data import DataError, Encoded, collate, micro_batches
from training_scripts.distributed import Dist, log
from training_scripts.gates import check_gates
from training_scripts.modeling import SetupError
from training_scripts.packing import check_isolation, collate_packed, pack
from training_scripts.packing import resolve as resolve_packing
from training_scripts.pipeline import Datasets, load_datasets
from training_scripts.tracking import Tracker

__all__ = [
    "FAILURE_FILE",
    "REPORT_FILE",
    "Datasets",
    "EarlyStopping",
    "StopSignal",
    "Stopped",
    "check_gates",
    "eval_kinds",
    "load_datasets",
    "log",
    "main",
    "run",
    "train_loop",
]


class Stopped(Exception):
    """Training stopped early on a signal (SIGTERM), after writing a checkpoint if it could."""

    def __init__(self, signum: int, step: int, total_steps: int, checkpoint: str | None):
        name = signal.Signals(signum).name
        if checkpoint:
            outcome = (
                f"checkpoint {checkpoint} written; a restart with training.resume: auto "
                "continues from it"
            )
        else:
            outcome = "no checkpoint (training.resume is never and save_every_steps unset)"
        super().__init__(f"stopped by {name} at step {step}/{total_steps}: {outcome}")
        self.step = step
        self.checkpoint = checkpoint


class StopSignal:
    """While active, SIGTERM only asks the training loop to stop: it finishes the current
    optimizer step, writes a checkpoint and exits EXIT_STOPPED (143). That is what a
    platform's stop, a spot interruption or a Kubernetes termination sends first,
    before a SIGKILL after a grace period."""

    def __init__(self, signals: tuple[signal.Signals, ...] = (signal.SIGTERM,)):
        self.signals = signals
        self.received: int | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():  # handlers live there only
            self._previous = {s: signal.signal(s, self._on_signal) for s in self.signals}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.received = signum


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="recipe.json written by the orchestrator")
    parser.add_argument("--output-dir", default=None, help="where outputs go (local, Azure ML)")
    args = parser.parse_args(argv)
    paths = platforms.resolve(args.output_dir)
    paths.output_dir.mkdir(parents=True, exist_ok=True)
    dist = Dist.init()
    try:
        config = contract.load_config(args.config)
        return run(config, paths, dist)
    except (DataError, SetupError) as exc:
        _fail(paths, dist, str(exc))
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return contract.EXIT_SETUP
    except Stopped as exc:
        _fail(paths, dist, str(exc))
        log(dist, str(exc))
        return contract.EXIT_STOPPED
    finally:
        dist.close()


def run(config: dict[str, Any], paths: platforms.Paths, dist: Dist) -> int:
    import torch

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
    try:
        with StopSignal() as stop_signal:
            train_stats = train_loop(
                model, data, recipe, paths, dist, device, pad_id, tracker, stop_signal
            )
    except Stopped:
        tracker.finish(exit_code=contract.EXIT_STOPPED)
        raise

    if dist.main:
        tracker.log({"phase": "eval_after"})
        inner = model.module if hasattr(model, "module") else model
        report["after"] = evaluate_model(inner, tokenizer, data, recipe, device, eval_batch)
        log(dist, f"after:  {_summary(report['after'])}")
        report["train"] = {
            **train_stats,
            "trainable_parameters": trainable,
            "runtime_s": round(time.time() - started, 1),
        }
        report["data"] = {
            "train_examples": len(data.train),
            "train_tokens": sum(len(e) for e in data.train),  # real tokens in one epoch
            "valid_examples": len(data.valid),
            "golden_examples": len(data.golden),
            "dropped_over_max_seq_len": data.dropped,
        }
        save_outputs(inner, tokenizer, recipe, paths)
        report["gates"] = check_gates(recipe["eval"]["gates"], report["after"])
        report["passed"] = all(g["passed"] for g in report["gates"])
        write_json(paths.output_dir / REPORT_FILE, report)
        tracker.summary(_flat_summary(report))
        tracker.artifact(f"{config['run']['id']}-adapter", "model", paths.model_dir / "adapter")
        tracker.finish(exit_code=0 if report["passed"] else 1)
        if not report["passed"]:
            failed = [g["text"] for g in report["gates"] if not g["passed"]]
            _fail(paths, dist, "eval gate failed: " + "; ".join(failed))
            log(dist, "eval gate failed: " + "; ".join(failed))
            return contract.EXIT_GATE_FAILED
    dist.barrier()
    log(dist, "done")
    return contract.EXIT_OK


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
    stop_signal: StopSignal | None = None,
) -> dict[str, Any]:
    import torch
    from transformers import get_scheduler

    spec = recipe["training"]
    micro = spec["micro_batch_size"]
    if spec["batch_size"] % (micro * dist.world):
        raise SetupError(
            f"training.batch_size {spec['batch_size']} is not a multiple of "
            f"micro_batch_size x processes ({micro} x {dist.world})"
        )
    accumulation = spec["batch_size"] // (micro * dist.world)
    per_step = accumulation * dist.world  # micro-batches per optimizer step, all processes
    units, collate_fn = training_units(data.train, recipe["data"], model, device, dist)
    lengths = [len(u) for u in units]
    per_epoch = len(micro_batches(lengths, micro, spec["seed"], 0))
    steps_per_epoch, skipped = epoch_steps(per_epoch, per_step, dist.world)
    if skipped:
        log(
            dist,
            f"each epoch skips its last {skipped} micro-batch(es): fewer than the "
            f"{dist.world} processes, so not every process would have one to train",
        )
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
            # Real (non-pad) tokens: each unit's length. Not attention_mask.sum(): packed
            # rows carry a 4-D block mask, whose sum counts token pairs.
            input_tokens += sum(len(item) for item in items)
            sync = contextlib.nullcontext()
            if dist.enabled and i < len(mine) - 1:
                sync = wrapped.no_sync()  # all-reduce gradients once per optimizer step
            with sync, autocast:
                loss_sum, _ = evaluate.token_loss_sum(wrapped, batch)
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
        # A signal stops every process together, whichever of them got it, before any
        # evaluation: the platform's grace period before SIGKILL is short.
        signalled = stop_signal is not None and stop_signal.received is not None
        interrupted = dist.sum(1.0 if signalled else 0.0, device) > 0
        stop = False
        kinds = ()
        if data.valid and not interrupted:
            kinds = eval_kinds(step, steps_per_epoch, total_steps, spec)
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
        resumable = bool(save_every) or spec["resume"] == "auto"
        saved = None
        if (
            stop
            or (interrupted and resumable)
            or (save_every and step % save_every == 0)
            or step == total_steps
        ):
            if dist.main:
                saved = checkpoints.save(
                    paths.checkpoint_dir,
                    step,
                    model,
                    optimizer,
                    scheduler,
                    {"total_steps": total_steps, "steps_per_epoch": steps_per_epoch},
                )
            dist.barrier()
        if interrupted:
            signum = stop_signal.received if signalled else signal.SIGTERM
            tracker.log({"phase": "stopped", "step": step})
            raise Stopped(signum, step, total_steps, saved.name if saved else None)
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
        "skipped_micro_batches_per_epoch": skipped,
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
    batch = spec["micro_batch_size"] * 2
    record: dict[str, float] = {}
    if "sample" in kinds:
        size = min(spec["eval_sample_size"], len(valid))
        sample = random.Random(spec["seed"]).sample(valid, size)  # the same sample every time
        metrics = evaluate.validation_metrics(model, sample, pad_id, batch, device) or {}
        record["valid_loss"] = round(metrics["loss"], 5)
        record["valid_token_accuracy"] = round(metrics["token_accuracy"], 5)
    if "full" in kinds:
        metrics = evaluate.validation_metrics(model, valid, pad_id, batch, device) or {}
        record["full_valid_loss"] = round(metrics["loss"], 5)
        record["full_valid_token_accuracy"] = round(metrics["token_accuracy"], 5)
    return record


def epoch_steps(micro_batches_per_epoch: int, per_step: int, world: int) -> tuple[int, int]:
    """Optimizer steps per epoch, and micro-batches an epoch cannot train.

    A last, partial accumulation step is trained (its loss is normalized by its own token
    count, like every step), so no example is dropped. Only with several processes, when
    that remainder is smaller than the number of processes, is it skipped: a process with
    no micro-batch would leave the others waiting at the gradient all-reduce.
    """
    full, rest = divmod(micro_batches_per_epoch, per_step)
    if rest and rest >= world:
        return full + 1, 0
    return full, rest


def training_units(
    examples: list[Encoded], data_spec: dict[str, Any], model: Any, device: Any, dist: Dist
) -> tuple[list[Any], Any]:
    """What a micro-batch is made of: examples, or packed sequences of several examples."""
    packing, why = resolve_packing(data_spec["packing"], model)
    if not packing:
        log(dist, f"packing: off ({why}); micro-batches group examples of similar length")
        return examples, collate
    check_isolation(model, examples, device)
    packed = pack(examples, data_spec["max_seq_len"])
    real = sum(len(p) for p in packed)
    log(
        dist,
        f"packing: {len(examples)} examples into {len(packed)} sequences of <= "
        f"{data_spec['max_seq_len']} tokens ({real / (len(packed) * data_spec['max_seq_len']):.1%} "
        f"full; {why})",
    )
    return packed, collate_packed


def _autocast(recipe: dict[str, Any], device: Any) -> Any:
    import torch

    dtype = modeling.pick_dtype(recipe, device)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# --- evaluation, outputs -----------------------------------------------------------------


def evaluate_model(
    model: Any, tokenizer: Any, data: Datasets, recipe: dict[str, Any], device: Any, batch: int
) -> dict[str, Any]:
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
    if name == "adapter" and (recipe.get("deploy") or {}).get("merge"):
        save_merged(recipe, target, tokenizer, paths.model_dir / "merged")


def save_merged(recipe: dict[str, Any], adapter: Path, tokenizer: Any, target: Path) -> None:
    """deploy.merge: the adapter folded into the base weights, what the endpoint serves.

    The base is reloaded unquantized (a 4-bit QLoRA base cannot hold the sum) in the
    recipe's dtype, on the CPU, so the training device's memory is not needed again."""
    import torch
    from peft import PeftModel

    dtype = recipe["model"]["dtype"] if recipe["model"]["dtype"] != "auto" else "bfloat16"
    plain = {
        **recipe,
        "method": {**recipe["method"], "kind": "lora"},
        "model": {**recipe["model"], "dtype": dtype},
    }
    base = modeling.resolve_base(recipe["model"]["base"])
    model = modeling.load_model(plain, base, torch.device("cpu"))
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    merged.save_pretrained(target)
    tokenizer.save_pretrained(target)


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


def _fail(paths: platforms.Paths, dist: Dist, message: str) -> None:
    if dist.main:
        contract.write_failure(paths.output_dir, message)


if __name__ == "__main__":
    sys.exit(main())
