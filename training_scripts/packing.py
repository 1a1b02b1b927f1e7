"""Packing several examples into one sequence without letting them see each other.

First-fit-decreasing puts examples into bins of at most `max_seq_len` tokens. Inside a
bin, position ids restart at 0 for every example; a packed batch carries those position
ids and no attention mask, from which transformers (masking_utils,
`find_packed_sequence_indices`) builds a block-diagonal causal mask for SDPA and eager
attention, and hands flash-attention its variable-length kernel, which needs no mask.
So each example is computed exactly as if it were alone (`check_isolation` proves it
for the model at hand before training); the first token of every example is never a
target, so no example learns from its neighbour's end.

When packing pays (`data.packing: auto`, `resolve`): only where attention takes packed
rows without a mask, i.e. flash-attention's varlen kernel on a GPU. Elsewhere the
trainer's length-grouped micro-batches already carry little padding and a packed row
needs a block mask: on this project's 2-core CPU, packing trained at 0.87x to 1.01x
the tokens/s of length grouping (two runs, on the quickstart data and on a long-tailed
length mix), with 1.1x to 1.5x its peak memory (`benchmarks/packing.py`), and packing
changes what a batch is (fewer, fuller optimizer steps).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from training_scripts.data import IGNORE_INDEX, Encoded, collate
from training_scripts.evaluate import token_loss_sum
from training_scripts.modeling import SetupError


@dataclass(frozen=True)
class Packed:
    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    lengths: tuple[int, ...]  # the examples it holds, in order

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def trained_tokens(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE_INDEX)


def first_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Bins of example indices, longest examples first, each into the first bin with room."""
    bins: list[list[int]] = []
    room: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        size = lengths[index]
        if size > capacity:
            raise ValueError(f"example {index} has {size} tokens, over the capacity {capacity}")
        for b, free in enumerate(room):
            if size <= free:
                bins[b].append(index)
                room[b] -= size
                break
        else:
            bins.append([index])
            room.append(capacity - size)
    return bins


def pack(examples: Sequence[Encoded], capacity: int) -> list[Packed]:
    packed = []
    for members in first_fit_decreasing([len(e) for e in examples], capacity):
        input_ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for i in members:
            example = examples[i]
            input_ids += example.input_ids
            # The first token is predicted from the previous example's last one: never a target.
            labels += [IGNORE_INDEX] + example.labels[1:]
            positions += list(range(len(example)))
        packed.append(
            Packed(input_ids, labels, positions, tuple(len(examples[i]) for i in members))
        )
    return packed


def collate_packed(items: Sequence[Packed], pad_id: int) -> dict[str, Any]:
    """Tensors with position ids that restart per example, and no attention mask.

    Without a mask, transformers reads example boundaries from where the position ids
    restart; each pad token (position 0) is then a sequence of its own, never attended to.
    """
    import torch

    width = max(len(item) for item in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
    positions = torch.zeros((len(items), width), dtype=torch.long)
    for row, item in enumerate(items):
        n = len(item)
        input_ids[row, :n] = torch.tensor(item.input_ids)
        labels[row, :n] = torch.tensor(item.labels)
        positions[row, :n] = torch.tensor(item.position_ids)
    return {"input_ids": input_ids, "labels": labels, "position_ids": positions}


VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3")  # transformers' names


def resolve(setting: bool | str, model: Any) -> tuple[bool, str]:
    """Whether to pack (`data.packing`: true, false or auto), and why, for the log."""
    if setting is True:
        return True, "data.packing: true"
    if setting is False:
        return False, "data.packing: false"
    attention = getattr(model.config, "_attn_implementation", None) or "default"
    if attention in VARLEN_ATTENTION:
        return True, f"auto: {attention} trains packed rows without a mask"
    return False, (
        f"auto: {attention} attention needs a block mask for packed rows, no faster than "
        "length-grouped padding and more memory (benchmarks/packing.py); set data.packing: "
        "true to pack"
    )


def check_isolation(model: Any, examples: Sequence[Encoded], device: Any) -> None:
    """Refuse to pack for a model that lets packed examples attend to each other.

    Packing relies on the model reading example boundaries from the position ids
    (transformers' masking utilities); a model with its own attention code may not. Two
    or three examples, packed and alone, must have the same loss.
    """
    import torch

    sample = [e for e in examples if e.trained_tokens][:3]
    if len(sample) < 2:
        return
    was_training = model.training
    model.eval()
    with torch.no_grad():
        packed = collate_packed(pack(sample, sum(len(e) for e in sample)), 0)
        together, n = token_loss_sum(model, {k: v.to(device) for k, v in packed.items()})
        alone = [
            token_loss_sum(model, {k: v.to(device) for k, v in collate([e], 0).items()})
            for e in sample
        ]
    model.train(was_training)
    separate = sum(float(loss) for loss, _ in alone) / max(sum(c for _, c in alone), 1)
    joint = float(together) / max(n, 1)
    if not math.isclose(joint, separate, rel_tol=2e-2, abs_tol=1e-3):
        raise SetupError(
            f"data.packing: this model lets packed examples attend to each other (loss "
            f"{joint:.4f} packed vs {separate:.4f} alone); set data.packing: false"
        )
