"""Validation loss and the golden-set task metric."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from training_scripts.data import IGNORE_INDEX, Encoded, Example, collate, iter_chunks


def trained_logits(model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """Logits at the positions that predict a trained token, and those tokens' labels.

    Only those positions go through the output layer: with loss on the assistant turn,
    that is a few percent of a chat example's tokens, and the vocabulary-wide logits of
    the rest were a fifth of a step's time on the builtin model. Models whose forward
    takes `logits_to_keep` (transformers' causal LMs) compute just those columns (the
    union over the batch's rows); any other model computes them all and they are
    selected after. Returns (n, vocab) float logits and (n,) labels.
    """
    labels = batch["labels"][:, 1:]  # position t predicts token t + 1
    trained = labels != IGNORE_INDEX
    inputs = {
        "input_ids": batch["input_ids"],
        "attention_mask": batch.get("attention_mask"),  # none for packed rows: see packing.py
        "position_ids": batch.get("position_ids"),
        # No KV cache: nothing is generated, and transformers reads packed rows' example
        # boundaries from the position ids only when there is none.
        "use_cache": False,
    }
    if takes_logits_to_keep(model):
        columns = trained.any(dim=0).nonzero().flatten()
        logits = model(**inputs, logits_to_keep=columns).logits
        return logits[trained[:, columns]].float(), labels[:, columns][trained[:, columns]]
    logits = model(**inputs).logits[:, :-1, :]
    return logits[trained].float(), labels[trained]


def takes_logits_to_keep(model: Any) -> bool:
    """Whether the (possibly peft- or DDP-wrapped) model's forward has `logits_to_keep`."""
    import inspect

    inner = getattr(model, "module", model)  # DistributedDataParallel
    if hasattr(inner, "get_base_model"):  # peft
        inner = inner.get_base_model()
    return "logits_to_keep" in inspect.signature(inner.forward).parameters


def token_loss_sum(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """Summed next-token cross-entropy over trained tokens, and how many there were."""
    import torch.nn.functional as F

    logits, labels = trained_logits(model, batch)
    return F.cross_entropy(logits, labels, reduction="sum"), int(labels.numel())


def validation_metrics(
    model: Any, encoded: Sequence[Encoded], pad_id: int, batch_size: int, device: Any
) -> dict[str, float] | None:
    """Mean token loss and next-token accuracy over the trained tokens of `encoded`."""
    import torch
    import torch.nn.functional as F

    if not encoded:
        return None
    was_training = model.training
    model.eval()
    total, count, correct = 0.0, 0, 0
    with torch.no_grad():
        for chunk in iter_chunks(sorted(encoded, key=len), batch_size):
            batch = {k: v.to(device) for k, v in collate(chunk, pad_id).items()}
            logits, labels = trained_logits(model, batch)
            total += float(F.cross_entropy(logits, labels, reduction="sum"))
            correct += int((logits.argmax(-1) == labels).sum())
            count += int(labels.numel())
    model.train(was_training)
    return {"loss": total / max(count, 1), "token_accuracy": correct / max(count, 1)}


def validation_loss(
    model: Any, encoded: Sequence[Encoded], pad_id: int, batch_size: int, device: Any
) -> float | None:
    metrics = validation_metrics(model, encoded, pad_id, batch_size, device)
    return None if metrics is None else metrics["loss"]


def generate_answers(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    max_new_tokens: int,
    device: Any,
    batch_size: int = 32,
) -> list[str]:
    """Greedy answers to each example's prompt (left-padded batches)."""
    import torch

    was_training = model.training
    model.eval()
    tokenizer.padding_side = "left"
    answers: list[str] = []
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": m["role"], "content": m["content"]} for m in e.prompt_messages],
            tokenize=False,
            add_generation_prompt=True,
        )
        for e in examples
    ]
    with torch.no_grad():
        for chunk in iter_chunks(prompts, batch_size):
            enc = tokenizer(
                list(chunk), return_tensors="pt", padding=True, add_special_tokens=False
            )
            enc = {k: v.to(device) for k, v in enc.items()}
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
            new = out[:, enc["input_ids"].shape[1] :]
            answers += tokenizer.batch_decode(new, skip_special_tokens=True)
    tokenizer.padding_side = "right"
    model.train(was_training)
    return [a.strip() for a in answers]


def golden(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    spec: dict[str, Any],
    device: Any,
) -> dict[str, Any]:
    """Answer every golden prompt and score the answers, overall and per slice."""
    import json
    from pathlib import Path

    targets = [e.target for e in examples]
    task = choose_task(spec["task"], targets)
    schema = json.loads(Path(spec["json_schema"]).read_text()) if spec.get("json_schema") else None
    budget = generation_budget(tokenizer, targets, spec["max_new_tokens"])
    answers = generate_answers(model, tokenizer, examples, budget, device)
    result = score(task, targets, answers, schema)
    result["max_new_tokens"] = budget
    result["slices"] = slices(examples, targets, answers)
    result["errors"] = [
        {"line": e.line, "expected": t, "answer": a}
        for e, t, a in zip(examples, targets, answers, strict=True)
        if normalize(t) != normalize(a)
    ][:10]
    return result


def generation_budget(tokenizer: Any, targets: Sequence[str], configured: int) -> int:
    """Enough new tokens for the longest expected answer and its end-of-turn token.

    A budget shorter than a label silently scores that label as always wrong, which is
    a measurement error, not a model error.
    """
    longest = max(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in targets)
    return max(configured, longest + 1)


def slices(
    examples: Sequence[Example], targets: Sequence[str], answers: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Exact-match accuracy per value of each example's `meta` (e.g. edge=long_ticket)."""
    hits: dict[str, list[bool]] = {}
    for example, target, answer in zip(examples, targets, answers, strict=True):
        for key, value in example.meta.items():
            values = value if isinstance(value, list) else [value]
            for item in values:
                if isinstance(item, str | int | bool):
                    hits.setdefault(f"{key}={item}", []).append(
                        normalize(target) == normalize(answer)
                    )
    return {
        name: {"examples": len(flags), "exact_match": round(sum(flags) / len(flags), 4)}
        for name, flags in sorted(hits.items())
    }


def normalize(text: str) -> str:
    text = text.strip().splitlines()[0] if text.strip() else ""
    return re.sub(r"[\s.!,;:]+$", "", text.strip().lower())


def choose_task(task: str, targets: Sequence[str]) -> str:
    """auto -> classification when answers come from a small, repeated label set."""
    if task != "auto":
        return task
    labels = {normalize(t) for t in targets}
    short = all(len(t) <= 64 and "\n" not in t.strip() for t in targets)
    if short and len(labels) <= 50 and len(labels) <= len(targets) / 2:
        return "classification"
    return "exact_match"


def score(
    task: str, targets: Sequence[str], predictions: Sequence[str], schema: dict | None = None
) -> dict[str, Any]:
    if task == "json":
        return json_scores(targets, predictions, schema)
    gold = [normalize(t) for t in targets]
    pred = [normalize(p) for p in predictions]
    exact = sum(g == p for g, p in zip(gold, pred, strict=True)) / max(len(gold), 1)
    result: dict[str, Any] = {"task": task, "examples": len(gold), "exact_match": exact}
    if task == "classification":
        result.update(macro_f1(gold, pred))
    return result


_INVALID = object()  # a parse failure, distinct from any JSON value (even null)


def json_scores(
    targets: Sequence[str], predictions: Sequence[str], schema: dict | None
) -> dict[str, Any]:
    """Extraction tasks: is each answer JSON, does it match the schema, is it the same JSON."""
    import json

    parsed = []
    for text in predictions:
        try:
            parsed.append(json.loads(text))
        except json.JSONDecodeError:
            parsed.append(_INVALID)
    valid = [p is not _INVALID for p in parsed]
    same = [ok and _as_json(t) == p for t, p, ok in zip(targets, parsed, valid, strict=True)]
    n = max(len(targets), 1)
    result: dict[str, Any] = {
        "task": "json",
        "examples": len(targets),
        "json_valid": sum(valid) / n,
        "exact_match": sum(same) / n,
    }
    if schema is not None:
        from jsonschema import Draft202012Validator

        validator = Draft202012Validator(schema)
        result["schema_valid"] = (
            sum(ok and validator.is_valid(p) for p, ok in zip(parsed, valid, strict=True)) / n
        )
    return result


def _as_json(text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return _INVALID


def macro_f1(gold: Sequence[str], pred: Sequence[str]) -> dict[str, Any]:
    """Macro-F1 over the gold label set; an answer outside the set is simply wrong."""
    labels = sorted(set(gold))
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for g, p in zip(gold, pred, strict=True):
        if g == p:
            tp[g] += 1
        else:
            fn[g] += 1
            if p in labels:
                fp[p] += 1
    per_label: dict[str, float] = {}
    for label in labels:
        precision = tp[label] / (tp[label] + fp[label]) if tp[label] + fp[label] else 0.0
        recall = tp[label] / (tp[label] + fn[label]) if tp[label] + fn[label] else 0.0
        per_label[label] = (
            2 * precision * recall / (precision + recall) if precision + recall else 0.0
        )
    invalid = sum(1 for p in pred if p not in labels)
    return {
        "macro_f1": sum(per_label.values()) / max(len(labels), 1),
        "per_label_f1": {label: round(f1, 4) for label, f1 in per_label.items()},
        "invalid_answers": invalid,
    }
