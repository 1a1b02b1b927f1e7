"""Streaming text, token by token: the incremental detokenizer must give exactly the full
decode, and stop strings must cut the text at the same place whether it is streamed or
not, also when a stop string spans tokens or a character spans tokens."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.local.server.text import IncrementalText
from training_scripts.modeling import BUILTIN_DIR


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(BUILTIN_DIR / "tiny-chat")


def streamed(tokenizer, ids: list[int], stop: list[str]) -> tuple[str, bool]:
    text = IncrementalText(tokenizer, stop)
    out = []
    for token in ids:
        out.append(text.add(token))
        if text.stopped:
            break
    out.append(text.finish())
    return "".join(out), text.stopped


def test_multibyte_characters_split_across_tokens(tokenizer) -> None:
    sample = "Zahlung für Ärztin — 東京 ✓ 😀 fin"
    ids = tokenizer(sample, add_special_tokens=False)["input_ids"]
    text = IncrementalText(tokenizer)
    pieces = [text.add(token) for token in ids] + [text.finish()]
    assert "".join(pieces) == tokenizer.decode(ids, skip_special_tokens=True)
    assert not any("\ufffd" in p for p in pieces)  # no half character was ever sent


def test_a_stop_string_spanning_tokens_is_held_back_then_cut(tokenizer) -> None:
    ids = tokenizer("the refund was approved today", add_special_tokens=False)["input_ids"]
    text = IncrementalText(tokenizer, ["approved"])
    sent = ""
    for token in ids:
        sent += text.add(token)
        assert "appr" not in sent  # a stop's prefix never leaves before it is decided
        if text.stopped:
            break
    sent += text.finish()
    assert sent == "the refund was "
    assert text.stopped


@settings(max_examples=200, deadline=None)
@given(
    ids=st.lists(st.integers(0, 4095), max_size=40),
    stop=st.lists(st.text(max_size=4), max_size=3),
)
def test_streaming_equals_the_full_decode_cut_at_the_first_stop(
    tokenizer, ids: list[int], stop: list[str]
) -> None:
    full = tokenizer.decode(ids, skip_special_tokens=True)
    got, stopped = streamed(tokenizer, ids, stop)
    cuts = [full.find(s) for s in stop if s and s in full]
    if not cuts:
        assert got == full and not stopped
    else:
        # Stopping at the first token that completes a stop string: the text before it.
        assert stopped
        assert got == full[: min(cuts)]
