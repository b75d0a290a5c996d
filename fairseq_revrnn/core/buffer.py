"""Exact reversible multiplication with an integer information buffer.

Maclaurin et al. (2015), appendix C of the reversible-RNN paper: multiplying
``h*`` by ``z*/2**RZ`` destroys bits; they go into a per-unit non-negative
integer buffer, and ``B mod z*`` is moved back into ``h*`` so that the buffer
grows by only ``-log2 z`` bits per step. When an entry could overflow int64
the whole buffer is pushed onto a stack and restarted (algorithm 3); the
reverse pops it at the same step.

The arithmetic (:func:`multiply`, :func:`divide`) is pure tensor code, so a
half-step can run it inside one compiled kernel. The stack is bookkeeping on
the host: deciding a push needs the buffer's largest entry, a read from the
device (a host sync on a GPU). A buffer therefore keeps a bound on its
entries' bits: a multiplication adds at most ``growth_bits`` (``-log2`` of
the smallest forget value), so the device is read only when the bound says an
entry might have reached the limit. The pushes are the same as reading every
step; the reads are rare.
"""

from __future__ import annotations

from typing import Optional

import torch

from .fixed_point import RZ

Tensor = torch.Tensor

_LOW = 2**RZ - 1
# B * 2**RZ + (2**RZ - 1) must stay below 2**63.
OVERFLOW_BITS = 63 - RZ
OVERFLOW_AT = 2**OVERFLOW_BITS


def _where(valid: Optional[Tensor], new: Tensor, old: Tensor) -> Tensor:
    return new if valid is None else torch.where(valid, new, old)


def multiply(h: Tensor, z: Tensor, buf: Tensor, valid: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor]:
    """``h* z* / 2**RZ``, exactly invertible: the product, the new buffer and the
    bits destroyed (summed over real positions: the ideal cost)."""
    b = torch.bitwise_left_shift(buf, RZ) | (h & _LOW)
    q = torch.div(b, z, rounding_mode="floor")
    out = torch.bitwise_right_shift(h, RZ) * z + (b - q * z)
    lost = RZ - torch.log2(z.to(torch.float64))
    if valid is not None:
        lost = lost * valid
    return _where(valid, out, h), _where(valid, q, buf), lost.sum()


def divide(h: Tensor, z: Tensor, buf: Tensor, valid: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """Exact inverse of :func:`multiply`: the state and buffer before it."""
    q = torch.div(h, z, rounding_mode="floor")
    b = buf * z + (h - q * z)
    out = torch.bitwise_left_shift(q, RZ) | (b & _LOW)
    return _where(valid, out, h), _where(valid, torch.bitwise_right_shift(b, RZ), buf)


class InfoBuffer:
    """Per-unit buffer for one state tensor of shape ``(batch, units)``: the
    current entries ``buf`` and the stack of full buffers pushed on overflow."""

    def __init__(self, shape: tuple[int, int], device: torch.device, growth_bits: int = RZ) -> None:
        self.buf = torch.zeros(shape, dtype=torch.int64, device=device)
        self.stack: list[Tensor] = []
        self.push_steps: list[int] = []
        self.growth_bits = growth_bits
        self.bound_bits = 0  # every entry is below 2**bound_bits
        self.reads = 0  # device reads made to decide an overflow

    def _might_overflow(self) -> bool:
        """Whether an entry has reached ``OVERFLOW_AT``, reading the device only
        when the host-side bound cannot rule it out."""
        if self.bound_bits <= OVERFLOW_BITS:
            return False
        self.reads += 1
        top = int(self.buf.max()) if self.buf.numel() else 0
        self.bound_bits = top.bit_length()
        return top >= OVERFLOW_AT

    def before_multiply(self, step: int) -> Tensor:
        """Push a buffer that could overflow (restarting from zeros); the entries
        the multiplication at ``step`` extends."""
        if self._might_overflow():
            self.stack.append(self.buf)
            self.push_steps.append(step)
            self.buf = torch.zeros_like(self.buf)
            self.bound_bits = 0
        self.bound_bits += self.growth_bits
        return self.buf

    def after_divide(self, step: int, buf: Tensor) -> None:
        """Take the entries left by the division at ``step``, popping the buffer
        pushed at that step."""
        self.buf = buf
        if self.push_steps and self.push_steps[-1] == step:
            self.push_steps.pop()
            self.buf = self.stack.pop()

    def multiply(self, h: Tensor, z: Tensor, step: int, valid: Optional[Tensor] = None) -> Tensor:
        """Return ``h* z* / 2**RZ`` exactly invertible, storing lost bits."""
        out, self.buf, _ = multiply(h, z, self.before_multiply(step), valid)
        return out

    def divide(self, h: Tensor, z: Tensor, step: int, valid: Optional[Tensor] = None) -> Tensor:
        """Exact inverse of :meth:`multiply` at the same step."""
        out, buf = divide(h, z, self.buf, valid)
        self.after_divide(step, buf)
        return out

    def tensors(self) -> list[Tensor]:
        """Everything this buffer holds (for saving between forward and backward)."""
        return [self.buf, *self.stack]

    @classmethod
    def restore(
        cls, tensors: list[Tensor], push_steps: list[int], growth_bits: int = RZ, bound_bits: int = 64
    ) -> InfoBuffer:
        """A buffer over saved tensors; without ``bound_bits`` its entries are
        unknown, so the next multiplication reads them."""
        obj = cls.__new__(cls)
        obj.buf = tensors[0]
        obj.stack = list(tensors[1:])
        obj.push_steps = list(push_steps)
        obj.growth_bits, obj.bound_bits, obj.reads = growth_bits, bound_bits, 0
        return obj

    def copy(self) -> InfoBuffer:
        """An independent buffer with the same contents (tensors are never
        modified in place, so they can be shared)."""
        return InfoBuffer.restore(self.tensors(), self.push_steps, self.growth_bits, self.bound_bits)

    def index_select(self, order: Tensor) -> InfoBuffer:
        """A copy holding only the batch rows ``order`` (beam search reordering)."""
        tensors = [t.index_select(0, order) for t in self.tensors()]
        return InfoBuffer.restore(tensors, self.push_steps, self.growth_bits, self.bound_bits)

    def actual_bits(self) -> int:
        """Whole int64 words held (current buffer and stack) plus push bookkeeping."""
        return 64 * self.buf.numel() * (1 + len(self.stack)) + 64 * len(self.push_steps)
