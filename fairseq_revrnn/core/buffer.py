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
the smallest forget value). :func:`make_room` reads only when a bound says an
entry might reach the limit within the next ``steps`` multiplications, reads
all of a stack's buffers in one transfer, and pushes those whose entries
really might; or, without reads, pushes on the bound alone. A stack follows
an :class:`OverflowPlan` (docs/design.md, section 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .fixed_point import RZ

Tensor = torch.Tensor

# B * 2**RZ + (2**RZ - 1) must stay below 2**63 (here for the default RZ; a
# buffer's own limit is InfoBuffer.overflow_bits).
OVERFLOW_BITS = 63 - RZ
OVERFLOW_AT = 2**OVERFLOW_BITS
# Under the margin plan a stack's buffers are pushed when fewer than about this
# many bits of room are left: the price of reading the device only once per
# interval.
MARGIN_BITS = 16


OVERFLOW_MODES = ("auto", "read", "margin", "bound")


@dataclass(frozen=True)
class OverflowPlan:
    """How a stack keeps its buffers from overflowing: plan ``steps``
    multiplications at a time and, when a bound leaves no room, ``read`` the
    entries (a host sync) or push on the bound alone."""

    steps: int = 1
    read: bool = True


def check_overflow_mode(mode: str) -> str:
    if mode not in OVERFLOW_MODES:
        raise ValueError(f"overflow must be one of {', '.join(OVERFLOW_MODES)}; got {mode!r}")
    return mode


def overflow_plan(mode: str, growth_bits: int, device: torch.device) -> OverflowPlan:
    """The plan for ``mode``:

    * ``read``: one step at a time; a buffer is pushed only when full (the
      fewest pushes, a read whenever a bound runs out);
    * ``margin``: ``MARGIN_BITS // growth_bits`` steps at a time, so at most
      one read per interval, for buffers pushed with up to ``MARGIN_BITS``
      bits of room left;
    * ``bound``: never read; push whenever the worst case could overflow (no
      host sync at all, more pushes);
    * ``auto``: ``read`` on a CPU, where a read costs nothing, else ``margin``.

    Measured in docs/benchmarks.md ("Host syncs for buffer overflows").
    """
    check_overflow_mode(mode)
    if mode == "auto":
        mode = "read" if device.type == "cpu" else "margin"
    if mode == "margin":
        return OverflowPlan(max(1, MARGIN_BITS // growth_bits))
    return OverflowPlan(1, read=mode == "read")


def where_valid(valid: Optional[Tensor], new: Tensor, old: Tensor) -> Tensor:
    """``new`` at real positions, ``old`` at padding (``valid`` None: no padding)."""
    return new if valid is None else torch.where(valid, new, old)


def multiply(
    h: Tensor, z: Tensor, buf: Tensor, valid: Optional[Tensor] = None, radix: int = RZ
) -> tuple[Tensor, Tensor, Tensor]:
    """``h* z* / 2**radix``, exactly invertible: the product, the new buffer and the
    bits destroyed (summed over real positions: the ideal cost)."""
    b = torch.bitwise_left_shift(buf, radix) | (h & (2**radix - 1))
    q = torch.div(b, z, rounding_mode="floor")
    out = torch.bitwise_right_shift(h, radix) * z + (b - q * z)
    lost = radix - torch.log2(z.to(torch.float64))
    if valid is not None:
        lost = lost * valid
    return where_valid(valid, out, h), where_valid(valid, q, buf), lost.sum()


def divide(h: Tensor, z: Tensor, buf: Tensor, valid: Optional[Tensor] = None, radix: int = RZ) -> tuple[Tensor, Tensor]:
    """Exact inverse of :func:`multiply`: the state and buffer before it."""
    q = torch.div(h, z, rounding_mode="floor")
    b = buf * z + (h - q * z)
    out = torch.bitwise_left_shift(q, radix) | (b & (2**radix - 1))
    return where_valid(valid, out, h), where_valid(valid, torch.bitwise_right_shift(b, radix), buf)


class InfoBuffer:
    """Per-unit buffer for one state tensor of shape ``(batch, units)``: the
    current entries ``buf`` and the stack of full buffers pushed on overflow.
    ``radix`` is the forget values' RZ: entries must stay below
    ``2**(63 - radix)``."""

    def __init__(
        self,
        shape: tuple[int, int],
        device: torch.device,
        growth_bits: int = RZ,
        radix: int = RZ,
        entries: Optional[Tensor] = None,
    ) -> None:
        self.buf = torch.zeros(shape, dtype=torch.int64, device=device) if entries is None else entries
        self.stack: list[Tensor] = []
        self.push_steps: list[int] = []
        self.growth_bits, self.radix = growth_bits, radix
        self.overflow_bits = 63 - radix
        self.bound_bits = 0  # every entry is below 2**bound_bits
        self.reads = 0  # device reads made to decide an overflow

    def has_room(self, bits: int, steps: int) -> bool:
        """Whether entries below ``2**bits`` stay below ``2**overflow_bits`` before
        each of the next ``steps`` multiplications."""
        return bits + self.growth_bits * (steps - 1) <= self.overflow_bits

    def push(self, step: int) -> None:
        """Put the entries on the stack (popped by the division at ``step``) and restart from zeros."""
        self.stack.append(self.buf)
        self.push_steps.append(step)
        self.buf = torch.zeros_like(self.buf)
        self.bound_bits = 0

    def before_multiply(self, step: int) -> Tensor:
        """The entries the multiplication at ``step`` extends (pushed first if they
        could overflow)."""
        make_room([self], step, 1)
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
        out, self.buf, _ = multiply(h, z, self.before_multiply(step), valid, self.radix)
        return out

    def divide(self, h: Tensor, z: Tensor, step: int, valid: Optional[Tensor] = None) -> Tensor:
        """Exact inverse of :meth:`multiply` at the same step."""
        out, buf = divide(h, z, self.buf, valid, self.radix)
        self.after_divide(step, buf)
        return out

    def tensors(self) -> list[Tensor]:
        """Everything this buffer holds (for saving between forward and backward)."""
        return [self.buf, *self.stack]

    @classmethod
    def restore(
        cls, tensors: list[Tensor], push_steps: list[int], growth_bits: int = RZ, bound_bits: int = 64, radix: int = RZ
    ) -> InfoBuffer:
        """A buffer over saved tensors; without ``bound_bits`` its entries are
        unknown, so the next multiplication reads them."""
        obj = cls(tuple(tensors[0].shape), tensors[0].device, growth_bits, radix, entries=tensors[0])
        obj.stack = list(tensors[1:])
        obj.push_steps = list(push_steps)
        obj.bound_bits = bound_bits
        return obj

    def copy(self) -> InfoBuffer:
        """An independent buffer with the same contents (tensors are never
        modified in place, so they can be shared)."""
        return InfoBuffer.restore(self.tensors(), self.push_steps, self.growth_bits, self.bound_bits, self.radix)

    def index_select(self, order: Tensor) -> InfoBuffer:
        """A copy holding only the batch rows ``order`` (beam search reordering)."""
        tensors = [t.index_select(0, order) for t in self.tensors()]
        return InfoBuffer.restore(tensors, self.push_steps, self.growth_bits, self.bound_bits, self.radix)

    def actual_bits(self) -> int:
        """Whole int64 words held (current buffer and stack) plus push bookkeeping."""
        return 64 * self.buf.numel() * (1 + len(self.stack)) + 64 * len(self.push_steps)


def make_room(buffers: list[InfoBuffer], step: int, steps: int, read: bool = True) -> None:
    """Make every buffer safe for ``steps`` multiplications from ``step`` on.

    Nothing is read while the host-side bounds allow it. Otherwise, with
    ``read``, the largest entry of every buffer is read in one transfer (the
    one host sync), bounds become exact, and a buffer whose entries could
    overflow is pushed; without, every buffer whose bound leaves no room is.
    """
    if all(b.has_room(b.bound_bits, steps) for b in buffers):
        return
    if not read:
        for b in buffers:
            if not b.has_room(b.bound_bits, steps):
                b.push(step)
        return
    zero = torch.zeros((), dtype=torch.int64, device=buffers[0].buf.device)
    tops = torch.stack([b.buf.max() if b.buf.numel() else zero for b in buffers]).tolist()
    for b, top in zip(buffers, tops):
        b.reads += 1
        b.bound_bits = int(top).bit_length()
        if not b.has_room(b.bound_bits, steps):
            b.push(step)
