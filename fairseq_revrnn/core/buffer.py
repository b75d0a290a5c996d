"""Exact reversible multiplication with an integer information buffer.

Maclaurin et al. (2015), appendix C of the reversible-RNN paper: multiplying
``h*`` by ``z*/2**RZ`` destroys bits; they go into a per-unit non-negative
integer buffer, and ``B mod z*`` is moved back into ``h*`` so that the buffer
grows by only ``-log2 z`` bits per step. When an entry could overflow int64
the whole buffer is pushed onto a stack and restarted (algorithm 3); the
reverse pops it at the same step.
"""

from __future__ import annotations

from typing import Optional

import torch

from .fixed_point import RZ

_LOW = 2**RZ - 1
# B * 2**RZ + (2**RZ - 1) must stay below 2**63.
OVERFLOW_AT = 2 ** (63 - RZ)


def _where(valid: Optional[torch.Tensor], new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    return new if valid is None else torch.where(valid, new, old)


class InfoBuffer:
    """Per-unit buffer for one state tensor of shape ``(batch, units)``."""

    def __init__(self, shape: tuple[int, int], device: torch.device) -> None:
        self.buf = torch.zeros(shape, dtype=torch.int64, device=device)
        self.stack: list[torch.Tensor] = []
        self.push_steps: list[int] = []
        self.ideal_bits = torch.zeros((), dtype=torch.float64, device=device)

    def multiply(
        self, h: torch.Tensor, z: torch.Tensor, step: int, valid: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Return ``h* z* / 2**RZ`` exactly invertible, storing lost bits."""
        if bool((self.buf >= OVERFLOW_AT).any()):
            self.stack.append(self.buf)
            self.push_steps.append(step)
            self.buf = torch.zeros_like(self.buf)
        b_old = self.buf
        b = torch.bitwise_left_shift(b_old, RZ) | (h & _LOW)
        q = torch.div(b, z, rounding_mode="floor")
        out = torch.bitwise_right_shift(h, RZ) * z + (b - q * z)
        lost = RZ - torch.log2(z.to(torch.float64))
        if valid is not None:
            lost = lost * valid
        self.ideal_bits = self.ideal_bits + lost.sum()
        self.buf = _where(valid, q, b_old)
        return _where(valid, out, h)

    def divide(self, h: torch.Tensor, z: torch.Tensor, step: int, valid: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Exact inverse of :meth:`multiply` at the same step."""
        b_old = self.buf
        q = torch.div(h, z, rounding_mode="floor")
        b = b_old * z + (h - q * z)
        out = torch.bitwise_left_shift(q, RZ) | (b & _LOW)
        self.buf = _where(valid, torch.bitwise_right_shift(b, RZ), b_old)
        if self.push_steps and self.push_steps[-1] == step:
            self.push_steps.pop()
            self.buf = self.stack.pop()
        return _where(valid, out, h)

    def tensors(self) -> list[torch.Tensor]:
        """Everything this buffer holds (for saving between forward and backward)."""
        return [self.buf, *self.stack]

    @classmethod
    def restore(cls, tensors: list[torch.Tensor], push_steps: list[int]) -> InfoBuffer:
        obj = cls.__new__(cls)
        obj.buf = tensors[0]
        obj.stack = list(tensors[1:])
        obj.push_steps = list(push_steps)
        obj.ideal_bits = torch.zeros((), dtype=torch.float64, device=tensors[0].device)
        return obj

    def copy(self) -> InfoBuffer:
        """An independent buffer with the same contents (tensors are never
        modified in place, so they can be shared)."""
        obj = InfoBuffer.restore(self.tensors(), self.push_steps)
        obj.ideal_bits = self.ideal_bits
        return obj

    def index_select(self, order: torch.Tensor) -> InfoBuffer:
        """A copy holding only the batch rows ``order`` (beam search reordering)."""
        obj = InfoBuffer.restore([t.index_select(0, order) for t in self.tensors()], self.push_steps)
        obj.ideal_bits = self.ideal_bits
        return obj

    def actual_bits(self) -> int:
        """Whole int64 words held (current buffer and stack) plus push bookkeeping."""
        return 64 * self.buf.numel() * (1 + len(self.stack)) + 64 * len(self.push_steps)
