"""Packing: bins are tight, and a packed batch computes exactly what the examples do alone."""

from __future__ import annotations

import json

import pytest

from tests.conftest import SUPPORT_DATA
from training_scripts.data import IGNORE_INDEX, Example, collate, encode
from training_scripts.packing import collate_packed, first_fit_decreasing, pack


def test_first_fit_decreasing_fills_bins() -> None:
    bins = first_fit_decreasing([5, 3, 8, 2, 2, 6], capacity=10)
    # Longest first (8, 6, 5, 3, 2, 2), each into the first bin with room.
    assert bins == [[2, 3], [5, 1], [0, 4]]


def test_oversized_example_is_refused() -> None:
    with pytest.raises(ValueError, match="over the capacity"):
        first_fit_decreasing([11], capacity=10)


def test_packed_rows_restart_positions_and_never_target_a_boundary() -> None:
    from training_scripts.data import Encoded

    a = Encoded(input_ids=[1, 2, 3], labels=[1, 2, 3])
    b = Encoded(input_ids=[4, 5], labels=[4, 5])
    (row,) = pack([a, b], capacity=8)
    assert row.input_ids == [1, 2, 3, 4, 5]
    assert row.position_ids == [0, 1, 2, 0, 1]
    assert row.labels == [IGNORE_INDEX, 2, 3, IGNORE_INDEX, 5]
    batch = collate_packed([row], pad_id=0)
    mask = batch["attention_mask"][0, 0]
    assert mask[2, 0] and mask[4, 3]  # causal within each example
    assert not mask[0, 1]  # never the future
    assert not mask[3, 2] and not mask[4, 0]  # b never sees a


@pytest.mark.parametrize("train_on", ["assistant", "all"])
def test_packed_loss_equals_one_by_one_loss(train_on: str) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from training_scripts.evaluate import token_loss_sum
    from training_scripts.modeling import BUILTIN_DIR

    directory = BUILTIN_DIR / "tiny-chat"
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    model.eval()
    rows = (SUPPORT_DATA / "train.jsonl").read_text().splitlines()[:6]
    encoded = [
        encode(Example(json.loads(r)["messages"], line=i), tokenizer, train_on)
        for i, r in enumerate(rows)
    ]
    packed = pack(encoded, capacity=sum(len(e) for e in encoded))
    assert len(packed) == 1  # all six share one sequence
    with torch.no_grad():
        packed_loss, packed_n = token_loss_sum(model, collate_packed(packed, 0))
        alone = [token_loss_sum(model, collate([e], 0)) for e in encoded]
    alone_loss = sum(float(loss) for loss, _ in alone)
    alone_n = sum(n for _, n in alone)
    assert packed_n == alone_n
    assert float(packed_loss) / packed_n == pytest.approx(alone_loss / alone_n, rel=1e-4)
