"""Our trainer against Hugging Face TRL's SFTTrainer: the same work, measured in one run.

    python benchmarks/trl_compare.py [--examples 1024] [--runs 2]

The work: the builtin tiny-chat model, the first `--examples` quickstart tickets (the
next 128 are the validation set), max_seq_len 512, LoRA r 16 (alpha 32, dropout 0.05)
on every linear layer, loss on the assistant turn only, effective batch 16 (micro-batch
8 x accumulation 2), one epoch, learning rate 2e-3 with cosine decay and 4 warm-up
steps, no gradient checkpointing (TRL turns it on by default; ours does not), fp32 on
the CPU, 2 torch threads. Everything else is each trainer's default.

Ours runs as every job does (`python -m training_scripts.train`). TRL runs in its own
virtual environment (`.venv-trl`, made on first use: TRL is a benchmark tool, not a
project dependency) with this environment's torch, transformers, peft and accelerate
versions, and is given our tokenized examples (input ids and labels), so both train the
same tokens with the same loss mask. Checked, not assumed: examples, non-pad tokens,
loss tokens and trainable parameters are equal on every row; optimizer steps on every
row that trains one example per sequence; TRL's own token counter against the data.

Speed is non-pad tokens over the training loop's seconds (ours: `train_seconds` in
eval_report.json, collation, forward, backward and optimizer steps; TRL: its
`train_runtime`, which also holds its set-up and per-step logging, under a second
here). The validation loss of every row is computed by one function
(`training_scripts.evaluate.validation_metrics`) after training. Each configuration
runs `--runs` times in fresh processes, interleaved; the median run by speed is shown.

Validation loss moves with batch order and dropout draws alone (TRL's unpacked rows
differ in nothing else, and spread by several percent after one epoch), so the loss is
compared where both are the same: TRL given our micro-batches in our order (the data
written in that order, read by its sequential sampler) and our dropout module drawing
from the random state ours trains from. The LoRA weights start from the same seeded
draw on every row.

Target: ours, as configured by default, at >= 1.5x the tokens/s of TRL's fastest own
configuration (the row with our dropout module is not one), on the same tokens, and a
validation loss within 1% of TRL's on the same batches and dropout draws. Exit code 1
when it is not met.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TRL_VERSION = "1.16.0"
TRL_VENV = REPO / ".venv-trl"
SAME_STACK = ("torch", "transformers", "peft", "accelerate")  # pinned to this venv's versions
VALID_EXAMPLES = 128
THREADS = "2"
MICRO, ACCUMULATION = 8, 2
TARGET_SPEEDUP, LOSS_TOLERANCE = 1.5, 0.01

# name -> (label, overrides). Ours: the recipe's data section; TRL: SFTConfig fields.
OURS = {
    "ours": ("ours (default: auto, no packing on a CPU)", {}),
    "ours-packing": ("ours, data.packing: true", {"packing": True}),
}
TRL = {
    "trl": ("TRL, no packing (pads to the longest)", {}),
    "trl-packing": ("TRL, packing=True (bfd, padding-free)", {"packing": True}),
    # Padding-free without packing refuses max_length (it cannot truncate); every
    # example here is within max_seq_len already.
    "trl-padding-free": ("TRL, padding_free=True", {"padding_free": True, "max_length": None}),
    "trl-grouped": (
        "TRL, group_by_length",
        {"train_sampling_strategy": "group_by_length"},
    ),
    # Our micro-batches in our order (the data in that order, read sequentially) and our
    # dropout masks (our dropout module, its random numbers drawn from the state ours
    # starts training from): the two trainers' arithmetic on identical inputs, where the
    # loss must agree. The other rows keep TRL's own dropout.
    "trl-our-batches": (
        "TRL, our batches and dropout draws",
        {"train_sampling_strategy": "sequential"},
    ),
}
PACKED = {"ours-packing", "trl-packing"}  # rows that train several examples per sequence
TWIN = "trl-our-batches"  # not one of TRL's own configurations: it runs our dropout module


# --- the work ----------------------------------------------------------------------------


def recipe(work: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """The quickstart recipe, cut to the benchmark's work (see the module docstring)."""
    import yaml

    base = yaml.safe_load((REPO / "recipes/catalog/quickstart.yaml").read_text())
    base["data"] = {
        **base["data"],
        "train": str(work / "train.jsonl"),
        "validation": str(work / "valid.jsonl"),
        **overrides,
    }
    base["training"] = {
        **base["training"],
        "epochs": 1,
        "batch_size": MICRO * ACCUMULATION,
        "micro_batch_size": MICRO,
        "warmup_ratio": None,
        "warmup_steps": 4,
        "log_every_steps": 1,
        "resume": "never",
    }
    base["eval"] = {"golden": None}
    base.pop("tracking", None)
    base.pop("deploy", None)
    return base


def prepare(work: Path, examples: int) -> dict[str, Any]:
    """Data files, and our tokenized split written for TRL (tokens.json)."""
    from training_scripts.distributed import Dist
    from training_scripts.modeling import load_tokenizer, resolve_base
    from training_scripts.pipeline import load_data
    from training_scripts.platforms import Paths

    rows = (REPO / "recipes/catalog/data/support/train.jsonl").read_text().splitlines()
    if examples + VALID_EXAMPLES > len(rows):
        sys.exit(
            f"--examples: at most {len(rows) - VALID_EXAMPLES} (the quickstart has {len(rows)})"
        )
    (work / "train.jsonl").write_text("\n".join(rows[:examples]) + "\n")
    (work / "valid.jsonl").write_text("\n".join(rows[examples : examples + VALID_EXAMPLES]) + "\n")
    config = write_config(work, "tokens", {})
    resolved = json.loads(config.read_text())["recipe"]
    paths = Paths("local", work, work, work, {})
    dist = Dist()
    tokenizer = load_tokenizer(resolve_base(resolved["model"]["base"]), None, False)
    data = load_data(resolved, paths, tokenizer, dist)
    from training_scripts.data import micro_batches

    seed = resolved["training"]["seed"]
    batches = micro_batches([len(e) for e in data.train], MICRO, seed, epoch=0)
    tokens = {
        "train": [{"input_ids": e.input_ids, "labels": e.labels} for e in data.train],
        "order": [i for batch in batches for i in batch],
        "whole_batches": all(len(b) == MICRO for b in batches[:-1]),
        "valid": [{"input_ids": e.input_ids, "labels": e.labels} for e in data.valid],
        "recipe": resolved,
    }
    (work / "tokens.json").write_text(json.dumps(tokens))
    return {
        "examples": len(data.train),
        "tokens": sum(len(e) for e in data.train),
        "loss_tokens": sum(e.trained_tokens for e in data.train),
        "whole_batches": tokens["whole_batches"],
    }


def write_config(work: Path, name: str, overrides: dict[str, Any]) -> Path:
    import yaml

    from recipes.loader import load_recipe
    from training_scripts.contract import SUPPORTED_CONTRACT

    directory = work / name
    directory.mkdir(exist_ok=True)
    (directory / "recipe.yaml").write_text(yaml.safe_dump(recipe(work, overrides)))
    loaded = load_recipe(directory / "recipe.yaml")
    config = {
        "contract": SUPPORTED_CONTRACT,
        "run": {"id": name, "provider": "local", "recipe_name": "trl-compare", "tags": {}},
        "recipe": loaded.resolved().model_dump(mode="json"),
    }
    (directory / "recipe.json").write_text(json.dumps(config))
    return directory / "recipe.json"


# --- ours ------------------------------------------------------------------------------


def run_ours(work: Path, name: str, overrides: dict[str, Any], attempt: int) -> dict[str, Any]:
    config = write_config(work, f"{name}-{attempt}", overrides)
    directory = config.parent
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": THREADS,
        "RECIPE_CACHE_DIR": str(work / "cache"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "training_scripts.train", "--config", "recipe.json",
         "--output-dir", "."],
        cwd=directory, capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"{name}: training failed\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    report = json.loads((directory / "eval_report.json").read_text())
    train, data = report["train"], report["data"]
    losses = [
        json.loads(line)
        for line in (directory / "metrics.jsonl").read_text().splitlines()
        if '"loss"' in line
    ]
    packing = next((line for line in done.stdout.splitlines() if "packing" in line), "packing: off")
    return {
        "examples": data["train_examples"],
        "tokens": train["tokens"],
        "counted_tokens": train["tokens"],  # the trainer's own counter
        "loss_tokens": None,  # same tokenized data as tokens.json: checked through `tokens`
        "steps": train["steps"],
        "trainable": train["trainable_parameters"],
        "seconds": train["train_seconds"],
        "tokens_per_s": train["tokens"] / train["train_seconds"],
        "final_loss": losses[-1]["loss"],
        "valid_loss": report["after"]["valid_loss"],
        "note": packing.split("] ", 1)[-1],
    }


# --- TRL (runs in .venv-trl) -------------------------------------------------------------


def ensure_trl_venv() -> Path:
    python = TRL_VENV / "bin" / "python"
    marker = TRL_VENV / f".trl-{TRL_VERSION}"
    if marker.exists():
        return python
    from importlib.metadata import version

    pins = [f"{name}=={version(name).split('+')[0]}" for name in SAME_STACK]
    print(f"making {TRL_VENV.name}: trl=={TRL_VERSION} with {', '.join(pins)} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(TRL_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-U", "pip"], check=True)
    subprocess.run(
        [*pip, "-c", str(REPO / "constraints.txt"), *pins, f"trl=={TRL_VERSION}", "datasets",
         "pyyaml"],
        check=True,
    )  # fmt: skip
    marker.touch()
    return python


def run_trl(python: Path, work: Path, name: str, attempt: int) -> dict[str, Any]:
    out = work / f"{name}-{attempt}"
    env = {**os.environ, "OMP_NUM_THREADS": THREADS, "PYTHONPATH": str(REPO),
           "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    done = subprocess.run(
        [str(python), __file__, "--trl-one", name, "--work", str(work), "--out", str(out)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"{name}: TRL failed\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def trl_one(name: str, work: Path, out: Path) -> dict[str, Any]:
    """One TRL configuration, in this (TRL venv) process."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from training_scripts.data import Encoded
    from training_scripts.dropout import use_cheap_dropout
    from training_scripts.evaluate import validation_metrics

    RestoreRandomState = restore_random_state_callback()

    torch.set_num_threads(int(THREADS))
    tokens = json.loads((work / "tokens.json").read_text())
    spec = tokens["recipe"]
    training, method = spec["training"], spec["method"]
    directory = REPO / "training_scripts/builtin/tiny-chat"
    tokenizer = AutoTokenizer.from_pretrained(directory)
    # Seeded, then loaded and wrapped in the order our trainer does it, so the LoRA
    # weights start from the same random draw on every row.
    torch.manual_seed(training["seed"])
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    config = SFTConfig(
        output_dir=str(out),
        per_device_train_batch_size=training["micro_batch_size"],
        gradient_accumulation_steps=training["batch_size"] // training["micro_batch_size"],
        num_train_epochs=training["epochs"],
        learning_rate=training["learning_rate"],
        lr_scheduler_type=training["lr_scheduler"],
        warmup_steps=training["warmup_steps"],
        weight_decay=training["weight_decay"],
        max_grad_norm=training["max_grad_norm"],
        seed=training["seed"],
        logging_steps=1,
        gradient_checkpointing=False,  # TRL's default is on; ours is off: the same for both
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        fp16=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
        **{"max_length": spec["data"]["max_seq_len"], **TRL[name][1]},
    )
    lora = LoraConfig(
        r=method["r"],
        lora_alpha=method["alpha"],
        lora_dropout=method["dropout"],
        target_modules=method["target_modules"],
        task_type="CAUSAL_LM",
    )
    train = tokens["train"]
    model = get_peft_model(model, lora)
    callbacks = []
    if name == "trl-our-batches":
        train = [train[i] for i in tokens["order"]]
        use_cheap_dropout(model)
        # Ours draws its first dropout mask from the generator's state right after the
        # LoRA weights are drawn; TRL reseeds and draws in between, so that state is put
        # back just before its first forward pass.
        callbacks.append(RestoreRandomState(torch.get_rng_state()))
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(train),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    prepared = trainer.train_dataset
    result = trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    valid = [Encoded(e["input_ids"], e["labels"]) for e in tokens["valid"]]
    metrics = validation_metrics(
        trainer.model, valid, tokenizer.pad_token_id, 2 * MICRO, torch.device("cpu")
    )
    real = sum(len(ids) for ids in prepared["input_ids"])
    seconds = result.metrics["train_runtime"]
    return {
        "examples": len(tokens["train"]),
        "tokens": real,
        "counted_tokens": int(logs[-1].get("num_tokens", 0)),  # TRL's own counter
        "loss_tokens": sum(sum(1 for t in row if t != -100) for row in prepared["labels"]),
        "steps": trainer.state.global_step,
        "trainable": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "seconds": seconds,
        "tokens_per_s": real / seconds,
        "final_loss": logs[-1]["loss"],
        "valid_loss": metrics["loss"] if metrics else None,
        "note": f"{len(prepared)} rows",
        "trl": __import__("trl").__version__,
    }


def restore_random_state_callback() -> type:
    """A TrainerCallback that sets torch's random state once, before the first step."""
    import torch
    from transformers import TrainerCallback

    class RestoreRandomState(TrainerCallback):
        def __init__(self, state: Any):
            self.state = state

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.state is not None:
                torch.set_rng_state(self.state)
                self.state = None

    return RestoreRandomState


# --- the table ----------------------------------------------------------------------------


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    speeds = sorted(runs, key=lambda r: r["tokens_per_s"])
    middle = speeds[(len(speeds) - 1) // 2]
    return {**middle, "all_tokens_per_s": [round(r["tokens_per_s"]) for r in runs]}


def check_same_work(results: dict[str, dict[str, Any]], expected: dict[str, Any]) -> list[str]:
    problems = []
    for name, r in results.items():
        if r["examples"] != expected["examples"]:
            problems.append(f"{name}: {r['examples']} examples, expected {expected['examples']}")
        for key in ("tokens", "counted_tokens"):
            if r[key] != expected["tokens"]:
                problems.append(f"{name}: {key} {r[key]:,}, expected {expected['tokens']:,}")
        if r["loss_tokens"] is not None and r["loss_tokens"] != expected["loss_tokens"]:
            problems.append(
                f"{name}: {r['loss_tokens']:,} loss tokens, expected {expected['loss_tokens']:,}"
            )
    trainable = {r["trainable"] for r in results.values()}
    if len(trainable) > 1:
        problems.append(f"trainable parameters differ: {sorted(trainable)}")
    steps = {r["steps"] for name, r in results.items() if name not in PACKED}
    want = math.ceil(math.ceil(expected["examples"] / MICRO) / ACCUMULATION)
    if steps != {want}:
        problems.append(f"optimizer steps {sorted(steps)}, expected {want} on unpacked rows")
    return problems


def print_table(results: dict[str, dict[str, Any]], expected: dict[str, Any]) -> bool:
    labels = {name: label for name, (label, _) in {**TRL, **OURS}.items()}
    trl_default = results["trl"]["tokens_per_s"]
    best_trl = max((n for n in TRL if n != TWIN), key=lambda n: results[n]["tokens_per_s"])
    best = results[best_trl]["tokens_per_s"]
    print(
        f"\n{expected['examples']:,} examples, {expected['tokens']:,} non-pad tokens "
        f"({expected['loss_tokens']:,} with loss); TRL {results['trl'].get('trl')}; "
        f"{THREADS} threads, fp32\n"
    )
    header = (
        f"{'configuration':<44}{'tok/s':>7}{'vs TRL':>8}{'vs best':>9}{'steps':>7}"
        f"{'final loss':>12}{'valid loss':>12}   runs tok/s"
    )
    print(header)
    print("-" * len(header))
    for name in (*TRL, *OURS):
        r = results[name]
        print(
            f"{labels[name]:<44}{r['tokens_per_s']:>7,.0f}{r['tokens_per_s'] / trl_default:>8.2f}"
            f"{r['tokens_per_s'] / best:>9.2f}{r['steps']:>7}{r['final_loss']:>12.4f}"
            f"{r['valid_loss']:>12.4f}   {r['all_tokens_per_s']}"
        )
    print(
        f"\nvs TRL: to TRL's default; vs best: to TRL's fastest own configuration, "
        f"'{labels[best_trl]}'\nours (default): {results['ours']['note']}"
    )
    problems = check_same_work(results, expected)
    print(
        "same work (examples, tokens, loss tokens, trainable parameters, steps): "
        + ("checked" if not problems else "NOT the same")
    )
    for problem in problems:
        print(f"  {problem}")
    ours, twin = results["ours"], results[TWIN]
    speedup = ours["tokens_per_s"] / best
    drift = abs(ours["valid_loss"] - twin["valid_loss"]) / twin["valid_loss"]
    spread = [results[n]["valid_loss"] for n in TRL if n not in PACKED | {TWIN}]
    print(
        f"valid loss: ours {ours['valid_loss']:.4f}, TRL on the same batches and dropout "
        f"draws {twin['valid_loss']:.4f} ({drift:.4%} apart; "
        + ("the same batches" if expected["whole_batches"] else "NOT the same batches")
        + f"); TRL's own unpacked configurations, which differ only in batch order, span "
        f"{min(spread):.4f}-{max(spread):.4f}"
    )
    met = (
        not problems
        and expected["whole_batches"]
        and speedup >= TARGET_SPEEDUP
        and drift <= LOSS_TOLERANCE
    )
    print(
        f"target (ours >= {TARGET_SPEEDUP}x TRL's fastest configuration, '{labels[best_trl]}', "
        f"on the same tokens; valid loss within {LOSS_TOLERANCE:.0%} of TRL's on the same "
        f"batches and dropout draws): "
        f"{speedup:.2f}x, {drift:.2%}: " + ("met" if met else "NOT met")
    )
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1024, help="training examples (1024)")
    parser.add_argument("--runs", type=int, default=2, help="runs per configuration (2)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--trl-one", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trl_one:
        print(json.dumps(trl_one(args.trl_one, args.work, args.out)))
        return
    if args.examples < MICRO * ACCUMULATION or args.runs < 1:
        parser.error(f"--examples must be at least {MICRO * ACCUMULATION} and --runs at least 1")
    python = ensure_trl_venv()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="trl-compare-") as tmp:
        work = Path(tmp)
        expected = prepare(work, args.examples)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in (*TRL, *OURS)}
        for attempt in range(args.runs):  # interleaved: a slow minute hits every row alike
            for name in runs:
                print(f"run {attempt + 1}/{args.runs}: {name} ...", flush=True)
                if name in OURS:
                    runs[name].append(run_ours(work, name, OURS[name][1], attempt))
                else:
                    runs[name].append(run_trl(python, work, name, attempt))
        results = {name: median_run(r) for name, r in runs.items()}
    met = print_table(results, expected)
    print(f"({time.time() - started:,.0f} s in all)")
    if args.json:
        args.json.write_text(json.dumps({"expected": expected, "results": results}, indent=2))
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
