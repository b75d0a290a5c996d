"""Dropout masks drawn once per batch (appendix E).

Every mask is fixed for the whole sequence, so the forward, the exact reverse
and the recomputation in the backward all see the same one and only the mask
itself has to be kept.
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


@dataclass
class StackMasks:
    """Per-layer masks: ``inputs[l]`` on layer l's input, ``outputs[l]`` on its
    output, ``hidden[l]`` (DropConnect) on its two hidden-to-hidden matrices."""

    inputs: list[Optional[Tensor]] = field(default_factory=list)
    outputs: list[Optional[Tensor]] = field(default_factory=list)
    hidden: list[Optional[tuple[Tensor, Tensor]]] = field(default_factory=list)

    def tensors(self) -> list[Tensor]:
        out = [m for m in self.inputs + self.outputs if m is not None]
        for pair in self.hidden:
            if pair is not None:
                out.extend(pair)
        return out

    def layer_bits(self, layer: int) -> int:
        ms = [self.inputs[layer], self.outputs[layer], *(self.hidden[layer] or ())]
        return sum(m.numel() * m.element_size() * 8 for m in ms if m is not None)

    def bind(self, tensors: list[Tensor]) -> StackMasks:
        it = iter(tensors)
        pick = lambda m: None if m is None else next(it)  # noqa: E731
        inputs = [pick(m) for m in self.inputs]
        outputs = [pick(m) for m in self.outputs]
        hidden = [None if p is None else (next(it), next(it)) for p in self.hidden]
        return StackMasks(inputs, outputs, hidden)
