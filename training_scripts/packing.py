"""Packing several examples into one sequence without letting them see each other.

First-fit-decreasing puts examples into bins of at most `max_seq_len` tokens. Inside a
bin, position ids restart at 0 for every example and attention is a block-diagonal
causal mask, so each example is computed exactly as if it were alone; the first token
of every example is never a target, so no example learns from its neighbour's end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from training_scripts.data import IGNORE_INDEX, Encoded


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
    """Tensors plus a 4D boolean mask (batch, 1, L, L): True where a query may attend."""
    import torch

    width = max(len(item) for item in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
    positions = torch.zeros((len(items), width), dtype=torch.long)
    mask = torch.zeros((len(items), 1, width, width), dtype=torch.bool)
    causal = torch.tril(torch.ones(width, width, dtype=torch.bool))
    for row, item in enumerate(items):
        n = len(item)
        input_ids[row, :n] = torch.tensor(item.input_ids)
        labels[row, :n] = torch.tensor(item.labels)
        positions[row, :n] = torch.tensor(item.position_ids)
        start = 0
        for length in (*item.lengths, width - n):  # padding is one block of its own
            end = start + length
            mask[row, 0, start:end, start:end] = causal[:length, :length]
            start = end
    return {
        "input_ids": input_ids,
        "labels": labels,
        "position_ids": positions,
        "attention_mask": mask,
    }
