"""Examples: deduplication, splits, tokens and loss masks, micro-batches.

Reading and checking rows lives in rows.py (torch-free, shared with the `recipe`
CLI); tokenization takes any tokenizer with a chat template.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from training_scripts.rows import DataError, Example, RowProblem, read_examples

__all__ = ["DataError", "Example", "RowProblem", "read_examples"]

IGNORE_INDEX = -100


def exact_key(example: Example) -> str:
    return json.dumps([[m["role"], m["content"]] for m in example.messages], ensure_ascii=False)


def normalized_key(example: Example) -> str:
    """Case, punctuation and spacing do not make a different example."""
    text = " \x1f ".join(f"{m['role']}: {m['content']}" for m in example.messages)
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def dedupe(examples: list[Example]) -> tuple[list[Example], int, int]:
    """Keep the first of each group of duplicates: (kept, exact dropped, normalized dropped)."""
    seen_exact: set[str] = set()
    seen_normal: set[str] = set()
    kept: list[Example] = []
    exact = normal = 0
    for example in examples:
        key, loose = exact_key(example), normalized_key(example)
        if key in seen_exact:
            exact += 1
        elif loose in seen_normal:
            normal += 1
        else:
            kept.append(example)
        seen_exact.add(key)
        seen_normal.add(loose)
    return kept, exact, normal


def split(
    examples: list[Example], fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Deterministic (seeded) split of `fraction` into validation, stratified by label.

    Dedupe first (see `dedupe`): a duplicate on both sides would leak. Rows without a
    `label` are split as one group.
    """
    groups: dict[str, list[int]] = {}
    for index, example in enumerate(examples):
        groups.setdefault(str(example.label), []).append(index)
    valid_idx: set[int] = set()
    for label in sorted(groups):
        members = groups[label]
        random.Random(f"{seed}:{label}").shuffle(members)
        valid_idx.update(members[: round(len(members) * fraction)])
    if not valid_idx and len(examples) > 1:
        valid_idx.add(random.Random(seed).randrange(len(examples)))
    train = [e for i, e in enumerate(examples) if i not in valid_idx]
    valid = [e for i, e in enumerate(examples) if i in valid_idx]
    return train, valid


# --- tokenization ------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX where no loss is taken

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def trained_tokens(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE_INDEX)


def render(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    generation_prompt: bool,
    tools: list[dict[str, Any]] | None = None,
) -> list[int]:
    """Token ids of a conversation as the model's chat template writes it."""
    clean = [{k: v for k, v in m.items() if k != "weight"} for m in messages]
    kwargs = {"tools": tools} if tools else {}
    text = tokenizer.apply_chat_template(
        clean, tokenize=False, add_generation_prompt=generation_prompt, **kwargs
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode(example: Example, tokenizer: Any, train_on: str) -> Encoded:
    """Tokens and labels, with loss taken from message boundaries, not template markers.

    Each message's tokens are found by rendering the conversation up to it; an
    assistant message is trained from after its header (the generation prompt)
    to the end of its turn, so the model learns to answer and to stop.
    """
    messages = example.messages
    assistant_idx = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    ids: list[int] = []
    labels: list[int] = []
    for i, message in enumerate(messages):
        full = render(tokenizer, messages[: i + 1], False, example.tools)
        trained = _is_trained(message, i, assistant_idx, train_on)
        if message["role"] == "assistant":
            # The header ("<|im_start|>assistant\n") is prompt, trained only with train_on: all.
            header = render(tokenizer, messages[:i], True, example.tools)
            _check_prefix(ids, header, example)
            new = header[len(ids) :]
            labels += list(new) if trained and train_on == "all" else [IGNORE_INDEX] * len(new)
            ids = header
        _check_prefix(ids, full, example)
        new = full[len(ids) :]
        labels += list(new) if trained else [IGNORE_INDEX] * len(new)
        ids = full
    return Encoded(input_ids=ids, labels=labels)


def _is_trained(
    message: dict[str, Any], index: int, assistant_idx: list[int], train_on: str
) -> bool:
    if message.get("weight", 1) == 0:
        return False
    if train_on == "all":
        return True
    if message["role"] != "assistant":
        return False
    return train_on == "assistant" or index == assistant_idx[-1]


def _check_prefix(prefix: list[int], full: list[int], example: Example) -> None:
    if full[: len(prefix)] != prefix:
        raise DataError(
            [
                f"line {example.line}: the chat template does not render conversations "
                "prefix-stably, so message boundaries cannot be found for loss masking"
            ]
        )


# --- batching ----------------------------------------------------------------------------


def micro_batches(
    lengths: Sequence[int], micro_batch_size: int, seed: int, epoch: int
) -> list[list[int]]:
    """Shuffled micro-batches of indices, grouping similar lengths to waste less padding.

    Deterministic in (seed, epoch), which is what lets a resumed run skip exactly
    the batches it had already trained on.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    group = micro_batch_size * 32
    batches: list[list[int]] = []
    for start in range(0, len(order), group):
        chunk = sorted(order[start : start + group], key=lambda i: lengths[i])
        batches += [chunk[j : j + micro_batch_size] for j in range(0, len(chunk), micro_batch_size)]
    rng.shuffle(batches)
    return batches


def collate(items: Sequence[Encoded], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(item) for item in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(items), width), dtype=torch.long)
    for row, item in enumerate(items):
        n = len(item)
        input_ids[row, :n] = torch.tensor(item.input_ids)
        labels[row, :n] = torch.tensor(item.labels)
        attention[row, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}


def iter_chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
