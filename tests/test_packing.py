"""Packing: bins are tight, and a packed batch computes exactly what the examples do alone."""

from __future__ import annotations

import json

import pytest

from tests.conftest import SUPPORT_DATA, tiny_chat_and_tickets
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
    batch = collate_packed([row, pack([b], capacity=8)[0]], pad_id=0)
    # No mask: transformers reads the boundaries from where the positions restart, and
    # each pad (position 0) is a sequence of its own.
    assert "attention_mask" not in batch
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 0, 0, 0]]
    assert batch["labels"][1].tolist() == [IGNORE_INDEX, 5] + [IGNORE_INDEX] * 3


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


class SeesAcrossExamples:
    """A model that ignores where packed examples start: what packing must refuse."""

    def __init__(self, inner):
        self.inner = inner
        self.config = inner.config
        self.training = False

    def __call__(self, input_ids, attention_mask=None, position_ids=None, logits_to_keep=0, **_):
        return self.inner(input_ids=input_ids, logits_to_keep=logits_to_keep)

    def forward(self, input_ids, attention_mask=None, position_ids=None, logits_to_keep=0, **_):
        return self(input_ids, attention_mask, position_ids, logits_to_keep)

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def parameters(self):
        return self.inner.parameters()


def test_packing_is_refused_for_a_model_that_mixes_examples() -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from training_scripts.modeling import SetupError
    from training_scripts.packing import check_isolation

    model, _, encoded = tiny_chat_and_tickets(3)
    check_isolation(model, encoded, torch.device("cpu"))  # transformers' Llama: isolated
    with pytest.raises(SetupError, match="attend to each other.*data.packing: false"):
        check_isolation(SeesAcrossExamples(model), encoded, torch.device("cpu"))


@pytest.mark.parametrize(
    ("setting", "attention", "expected"),
    [
        ("auto", "sdpa", False),  # CPU and most GPUs: length-grouped padding
        ("auto", "eager", False),
        ("auto", None, False),
        ("auto", "flash_attention_2", True),  # varlen kernel: packed rows need no mask
        ("auto", "flash_attention_3", True),
        (True, "sdpa", True),  # what the recipe says, when it says it
        (False, "flash_attention_2", False),
    ],
)
def test_auto_packs_only_where_attention_needs_no_mask(
    setting: object, attention: str | None, expected: bool
) -> None:
    from types import SimpleNamespace

    from training_scripts.packing import resolve

    model = SimpleNamespace(config=SimpleNamespace(_attn_implementation=attention))
    packing, why = resolve(setting, model)
    assert packing is expected
    assert why.startswith("auto:" if setting == "auto" else "data.packing:")
