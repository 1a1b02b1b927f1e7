"""Automatic prefix caching: KV of prompt blocks seen before is reused, not recomputed.

The idea of vLLM's automatic prefix caching (docs: "Automatic Prefix Caching"), kept
simple: prompts are cut into blocks of BLOCK tokens; a block is identified by itself
and every block before it (its whole prefix) and by the adapter (LoRA changes K and V),
so a hit is exact, never a hash collision. Under causal attention the KV of the first n
tokens depend on those tokens only, so any earlier prompt's blocks can be reused.

Requests of one recipe share a long system prompt (the quickstart's lists the ten
queues: 68 of ~180 tokens), and prefill is compute-bound, so this cuts prefill work by
about a third there. Blocks are evicted least recently used, children before parents.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

BLOCK = 16

Key = tuple[Any, ...]
Block = list[tuple[Any, Any]]  # per layer: (keys [heads, BLOCK, dim], values [...])


class PrefixCache:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._blocks: OrderedDict[Key, tuple[Block, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    @staticmethod
    def chain(adapter: str, ids: list[int], tokens: int) -> list[Key]:
        """Keys of the full blocks among the first `tokens` ids."""
        key: Key = (adapter,)
        keys = []
        for start in range(0, tokens - BLOCK + 1, BLOCK):
            key = (key, tuple(ids[start : start + BLOCK]))
            keys.append(key)
        return keys

    def lookup(self, adapter: str, ids: list[int]) -> list[Block]:
        """The cached blocks that start this prompt (at least its last token is left to
        compute: its logits give the first generated token)."""
        found: list[Block] = []
        keys = []
        for key in self.chain(adapter, ids, len(ids) - 1):
            entry = self._blocks.get(key)
            if entry is None:
                break
            found.append(entry[0])
            keys.append(key)
        for key in reversed(keys):  # parents end up most recent: evicted after children
            self._blocks.move_to_end(key)
        return found

    def store(self, adapter: str, ids: list[int], first: int, get: Any) -> None:
        """Cache the prompt's full blocks from block index `first` on; get(j) gives
        block j's tensors (copies: they must not pin the batch's buffers)."""
        keys = self.chain(adapter, ids, len(ids))
        for j in range(first, len(keys)):
            if keys[j] not in self._blocks:
                block = get(j)
                size = sum(k.numel() * k.element_size() * 2 for k, _v in block)
                self._blocks[keys[j]] = (block, size)
                self.bytes += size
        for key in reversed(keys):
            if key in self._blocks:
                self._blocks.move_to_end(key)
        while self.bytes > self.max_bytes and self._blocks:
            _key, (_block, size) = self._blocks.popitem(last=False)
            self.bytes -= size
