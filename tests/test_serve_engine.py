"""The engine's data structures on their own: the growing KV cache (join, keep rows, trim),
the prefix cache (exact chains, per adapter, LRU within a byte budget) and prefill
grouping (bounded padding)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.local.server import kvcache
from providers.local.server.engine import prefill_groups
from providers.local.server.prefixcache import BLOCK, PrefixCache
from training_scripts.modeling import BUILTIN_DIR


@pytest.fixture(scope="module")
def config():
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(BUILTIN_DIR / "tiny-chat")


def filled(config, rows: int, columns: int, start: float) -> tuple[object, torch.Tensor]:
    """A cache whose every entry says which row and column it is (for checking moves)."""
    cache = kvcache.new_cache(config)
    heads, dim = config.num_key_value_heads, config.head_dim
    values = torch.arange(rows * columns, dtype=torch.float32).reshape(rows, 1, columns, 1)
    keys = (values + start).expand(rows, heads, columns, dim)
    for layer in cache.layers:
        layer.update(keys.clone(), keys.clone() * -1)
    return cache, torch.ones(rows, columns, dtype=torch.long)


def test_growing_layer_appends_in_place_and_matches_cat(config) -> None:
    cache, _ = filled(config, 2, 5, 0)
    layer = cache.layers[0]
    expected = layer.keys.clone()
    buffer = layer._k.data_ptr()
    for step in range(10):
        new = torch.full((2, config.num_key_value_heads, 1, config.head_dim), float(step))
        keys, _values = layer.update(new, new)
        expected = torch.cat([expected, new], dim=-2)
        assert torch.equal(keys, expected)
    assert layer._k.data_ptr() == buffer  # no reallocation within the spare columns
    assert layer.get_seq_length() == 15


def test_join_left_pads_and_keep_rows_trims(config) -> None:
    a, mask_a = filled(config, 2, 3, 100)
    b, mask_b = filled(config, 1, 6, 200)
    mask = kvcache.join(a, mask_a, b, mask_b)
    assert mask.tolist() == [[0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]]
    keys = a.layers[0].keys
    assert keys.shape[:3] == (3, config.num_key_value_heads, 6)
    assert keys[0, 0, :3, 0].tolist() == [0, 0, 0]  # padding
    assert keys[1, 0, 3:, 0].tolist() == [103, 104, 105]
    assert keys[2, 0, :, 0].tolist() == [200, 201, 202, 203, 204, 205]
    # The long row leaves: the three leading columns are padding in every row left.
    mask = kvcache.keep_rows(a, mask, [0, 1])
    assert mask.tolist() == [[1, 1, 1], [1, 1, 1]]
    assert a.layers[3].keys[1, 0, :, 0].tolist() == [103, 104, 105]
    assert a.layers[3].values[1, 0, :, 0].tolist() == [-103, -104, -105]


def block(value: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    tensor = torch.full((1, BLOCK, 1), float(value))
    return [(tensor, tensor)]


def test_prefix_cache_returns_the_longest_exact_chain_per_adapter() -> None:
    cache = PrefixCache(max_bytes=10**9)
    prompt = list(range(3 * BLOCK + 5))
    cache.store("a0", prompt, 0, lambda j: block(j))
    assert len(cache) == 3
    assert [b[0][0][0, 0, 0].item() for b in cache.lookup("a0", prompt)] == [0, 1, 2]
    assert cache.lookup("a1", prompt) == []  # another adapter: other K and V
    other = prompt[:BLOCK] + [9999] + prompt[BLOCK + 1 :]
    assert len(cache.lookup("a0", other)) == 1  # diverges inside block 1
    # At least the last token is left to compute, even when every block is cached.
    exact = list(range(2 * BLOCK))
    cache.store("a0", exact, 0, lambda j: block(j))
    assert len(cache.lookup("a0", exact)) == 1


def test_prefix_cache_evicts_least_recent_children_first() -> None:
    size = block(0)[0][0].numel() * 4 * 2
    cache = PrefixCache(max_bytes=3 * size)
    first = list(range(3 * BLOCK))
    cache.store("a0", first, 0, lambda j: block(j))
    second = [7] * (2 * BLOCK)
    cache.store("a0", second, 0, lambda j: block(10 + j))
    assert cache.bytes <= 3 * size
    assert len(cache.lookup("a0", second + [1])) == 2
    # The first prompt lost its deepest blocks, not its root.
    assert len(cache.lookup("a0", first + [1])) == 1


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 600), min_size=1, max_size=32))
def test_prefill_groups_keep_every_row_once_with_bounded_padding(lengths: list[int]) -> None:
    rows = [SimpleNamespace(prompt_len=n) for n in lengths]
    groups = prefill_groups(rows, mergeable=True)
    assert sorted(id(r) for g in groups for r in g) == sorted(id(r) for r in rows)
    for group in groups:
        padded = max(r.prompt_len for r in group) * len(group)
        assert len(group) == 1 or padded <= 1.25 * sum(r.prompt_len for r in group)
    assert prefill_groups(rows, mergeable=False) == [rows]
