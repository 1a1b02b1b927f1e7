"""What makes a training step fast must not change what it computes.

- Only the positions that predict a trained token go through the output layer
  (`evaluate.trained_logits`): the loss, the validation metrics and the gradients equal
  those of the full vocabulary-wide logits.
- LoRA's dropout on a CPU draws four 16-bit numbers per 64-bit draw
  (`dropout.CheapDropout`): still inverted dropout with probability p.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import tiny_chat_and_tickets
from training_scripts.data import IGNORE_INDEX, Encoded, collate

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from training_scripts.dropout import LEVELS, module_type, use_cheap_dropout  # noqa: E402
from training_scripts.evaluate import (  # noqa: E402
    takes_logits_to_keep,
    token_loss_sum,
    trained_logits,
    validation_metrics,
)
from training_scripts.modeling import BUILTIN_DIR  # noqa: E402

CheapDropout = module_type()


@pytest.fixture(scope="module")
def tiny() -> tuple:
    return tiny_chat_and_tickets(12)


def reference_loss(model, batch):
    """The textbook loss: every position's logits, shifted, ignore_index for the rest."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)),
        batch["labels"][:, 1:].reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


class NoLogitsToKeep(torch.nn.Module):
    """A model whose forward lacks `logits_to_keep`: every logit is computed, then chosen."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=None):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask)


def test_only_trained_positions_reach_the_output_layer_with_the_same_loss_and_gradients(
    tiny,
) -> None:
    model, _, encoded = tiny
    assert takes_logits_to_keep(model)
    batch = collate(encoded[:8], 0)
    trained = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    assert trained < batch["attention_mask"].sum() / 5  # the case this is for: few loss tokens

    model.zero_grad()
    ours, count = token_loss_sum(model, batch)
    ours.backward()
    ours_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    expected = reference_loss(model, batch)
    expected.backward()
    assert count == trained
    assert ours.item() == pytest.approx(expected.item(), rel=1e-5)
    for mine, theirs in zip(ours_grads, (p.grad for p in model.parameters()), strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6)

    fallback, _ = token_loss_sum(NoLogitsToKeep(model), batch)
    assert not takes_logits_to_keep(NoLogitsToKeep(model))
    assert fallback.item() == pytest.approx(expected.item(), rel=1e-5)


def test_rows_without_trained_tokens_and_batches_without_any(tiny) -> None:
    model, _, encoded = tiny
    silent = Encoded(encoded[0].input_ids, [IGNORE_INDEX] * len(encoded[0]))
    batch = collate([silent, encoded[1]], 0)
    loss, count = token_loss_sum(model, batch)
    assert count == encoded[1].trained_tokens - (encoded[1].labels[0] != IGNORE_INDEX)
    assert loss.item() == pytest.approx(reference_loss(model, batch).item(), rel=1e-5)
    loss, count = token_loss_sum(model, collate([silent], 0))
    assert count == 0 and loss.item() == 0.0
    loss.backward()  # an empty step still back-propagates (to nothing)


def test_validation_metrics_are_unchanged(tiny) -> None:
    model, _, encoded = tiny
    metrics = validation_metrics(model, encoded, 0, 4, torch.device("cpu"))
    loss_sum = count = correct = 0
    with torch.no_grad():
        for example in encoded:
            batch = collate([example], 0)
            logits = model(input_ids=batch["input_ids"]).logits[0, :-1]
            labels = batch["labels"][0, 1:]
            keep = labels != IGNORE_INDEX
            loss_sum += float(
                torch.nn.functional.cross_entropy(logits[keep], labels[keep], reduction="sum")
            )
            correct += int((logits[keep].argmax(-1) == labels[keep]).sum())
            count += int(keep.sum())
    assert metrics["loss"] == pytest.approx(loss_sum / count, rel=1e-5)
    assert metrics["token_accuracy"] == correct / count


def test_trained_logits_shapes(tiny) -> None:
    model, _, encoded = tiny
    batch = collate(encoded[:3], 0)
    logits, labels = trained_logits(model, batch)
    assert logits.shape == (labels.numel(), model.config.vocab_size)
    assert logits.dtype == torch.float32


# --- dropout -------------------------------------------------------------------------------


def test_cheap_dropout_drops_p_and_keeps_the_expectation() -> None:
    torch.manual_seed(0)
    layer = CheapDropout(0.05)
    x = torch.ones(400, 1000, requires_grad=True)
    y = layer(x)
    kept = y != 0
    n = x.numel()
    share = float(kept.float().mean())
    sigma = math.sqrt(0.05 * 0.95 / n)
    assert abs((1 - share) - layer.p) < 5 * sigma  # a binomial count, five sigmas
    values = y.detach()[kept]
    torch.testing.assert_close(values, torch.full_like(values, 1 / (1 - layer.p)))
    assert float(y.detach().mean()) == pytest.approx(1.0, abs=5 * sigma / 0.95)
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())  # d/dx of x * mask * scale


def test_cheap_dropout_is_the_identity_when_evaluating_or_at_zero() -> None:
    x = torch.randn(3, 5, 7)
    layer = CheapDropout(0.3)
    layer.eval()
    assert layer(x) is x
    assert CheapDropout(0.0)(x) is x
    with pytest.raises(ValueError, match="outside"):
        CheapDropout(1.0)


@settings(max_examples=60, deadline=None)
@given(p=st.floats(min_value=0.0, max_value=0.95), shape=st.lists(st.integers(1, 9), max_size=3))
def test_cheap_dropout_any_p_any_shape(p: float, shape: list[int]) -> None:
    layer = CheapDropout(p)
    assert abs(layer.p - p) <= 0.5 / LEVELS  # p rounded to the nearest 1/65,536
    assert layer.scale * (1 - layer.p) == pytest.approx(1.0)
    x = torch.randn(*shape) if shape else torch.randn(())
    y = layer(x)
    assert y.shape == x.shape
    assert torch.all((y == 0) | torch.isclose(y, x * layer.scale))


def test_lora_layers_get_cheap_dropout_on_the_cpu(tiny) -> None:
    from training_scripts.modeling import attach_method

    model = transformers.AutoModelForCausalLM.from_pretrained(
        BUILTIN_DIR / "tiny-chat", dtype=torch.float32
    )
    recipe = {
        "method": {
            "kind": "lora", "r": 4, "alpha": 8, "dropout": 0.1, "target_modules": "all-linear",
            "modules_to_save": [], "dora": False, "rslora": False,
        },
        "training": {"gradient_checkpointing": False},
    }  # fmt: skip
    peft_model = attach_method(model, recipe)
    dropouts = [m for m in peft_model.modules() if isinstance(m, CheapDropout)]
    assert len(dropouts) == 4 * 7  # 4 layers x (q, k, v, o, gate, up, down)
    assert not [m for m in peft_model.modules() if isinstance(m, torch.nn.Dropout)]
    assert use_cheap_dropout(peft_model) == 0  # nothing left to swap
