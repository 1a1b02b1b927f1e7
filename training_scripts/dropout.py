"""Dropout whose random mask is cheap on a CPU.

LoRA applies dropout to the input of every adapted layer (peft's `lora_dropout`). On a
CPU, torch draws one Mersenne-Twister number per element for it: with LoRA on every
linear layer of the builtin model that was a quarter of a training step's time
(profiled on this project's 2-core CI machine; `benchmarks/trl_compare.py` measures the
step). One 64-bit draw gives four 16-bit numbers instead, and an element is kept when
its number clears a threshold: the same inverted dropout, with p rounded to 1/65,536
and the scale computed from the rounded p, so the expected output still equals the
input. GPUs keep torch's fused kernel, which is already fast.
"""

from __future__ import annotations

import functools
from typing import Any

LEVELS = 1 << 16  # the values one 16-bit draw can take


@functools.cache
def module_type() -> type:
    """The CheapDropout class, made on first use: this module is torch-free at import
    (modeling.py imports it, and the data pipeline imports modeling without torch)."""
    import torch

    class CheapDropout(torch.nn.Module):
        """Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p)."""

        def __init__(self, p: float):
            super().__init__()
            if not 0.0 <= p < 1.0:
                raise ValueError(f"dropout probability {p} is outside [0, 1)")
            self.dropped_levels = round(p * LEVELS)  # an element is dropped below this
            self.p = self.dropped_levels / LEVELS
            self.scale = 1.0 / (1.0 - self.p)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training or self.dropped_levels == 0:
                return x
            n = x.numel()
            words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device)
            words.random_(-(1 << 63), None)  # every 64-bit pattern equally likely
            draws = words.view(torch.int16)[:n].view(x.shape)  # uniform over [-32768, 32767]
            keep = draws >= self.dropped_levels - LEVELS // 2
            return x * (keep.to(x.dtype) * self.scale)

        def extra_repr(self) -> str:
            return f"p={self.p:.6f}"

    return CheapDropout


def cheap_dropout(p: float) -> Any:
    """A CheapDropout module with probability p."""
    return module_type()(p)


def use_cheap_dropout(model: Any) -> int:
    """Swap every nn.Dropout inside peft's LoRA layers for CheapDropout; returns how many."""
    import torch

    swapped = 0
    for module in model.modules():
        table = getattr(module, "lora_dropout", None)
        if not isinstance(table, torch.nn.ModuleDict):
            continue
        for name, dropout in list(table.items()):
            if isinstance(dropout, torch.nn.Dropout) and dropout.p > 0:
                table[name] = cheap_dropout(dropout.p)
                swapped += 1
    return swapped
