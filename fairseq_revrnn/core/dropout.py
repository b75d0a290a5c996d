"""Dropout masks drawn once per batch (appendix E).

Every mask is fixed for the whole sequence, so the forward, the exact reverse
and the recomputation in the backward all see the same one. A stack's masks
are not even kept: each is drawn from its own seed (taken from torch's global
generator, so ``torch.manual_seed`` reproduces it) and regenerated from that
seed wherever it is needed; 64 bits per mask instead of one float per unit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

Tensor = torch.Tensor


def variational_mask(shape: tuple[int, ...], p: float, like: Tensor) -> Optional[Tensor]:
    """Inverted-dropout mask (0 or 1/(1-p)), or None when nothing is dropped."""
    if p <= 0:
        return None
    keep = torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(1 - p)
    return keep.div_(1 - p)


@dataclass(frozen=True)
class SeededMask:
    """An inverted-dropout mask (0 or 1/(1-p)) that is regenerated, not stored."""

    seed: int
    shape: tuple[int, ...]
    p: float

    @classmethod
    def draw(cls, shape: tuple[int, ...], p: float) -> Optional[SeededMask]:
        if p <= 0:
            return None
        return cls(int(torch.randint(0, 2**62, (1,)).item()), tuple(shape), p)

    def materialize(self, device: torch.device, dtype: torch.dtype) -> Tensor:
        gen = torch.Generator(device=device)
        gen.manual_seed(self.seed)
        keep = torch.empty(self.shape, dtype=dtype, device=device).bernoulli_(1 - self.p, generator=gen)
        return keep.div_(1 - self.p)


def _make(mask: Optional[SeededMask], device, dtype) -> Optional[Tensor]:
    return None if mask is None else mask.materialize(device, dtype)


@dataclass
class StackMasks:
    """Per-layer masks: ``inputs[l]`` on layer l's input, ``outputs[l]`` on its
    output, ``hidden[l]`` (DropConnect) on its two hidden-to-hidden matrices."""

    inputs: list[Optional[SeededMask]] = field(default_factory=list)
    outputs: list[Optional[SeededMask]] = field(default_factory=list)
    hidden: list[Optional[tuple[SeededMask, SeededMask]]] = field(default_factory=list)

    def layer(self, index: int, device, dtype) -> tuple[Optional[Tensor], Optional[Tensor], Optional[tuple]]:
        """Layer ``index``'s input, output and DropConnect masks as tensors."""
        pair = self.hidden[index]
        hidden = None if pair is None else tuple(_make(m, device, dtype) for m in pair)
        return _make(self.inputs[index], device, dtype), _make(self.outputs[index], device, dtype), hidden

    def layer_bits(self, layer: int) -> int:
        """What is stored for layer ``layer``'s masks: one 64-bit seed each."""
        ms = [self.inputs[layer], self.outputs[layer], *(self.hidden[layer] or ())]
        return 64 * sum(m is not None for m in ms)
