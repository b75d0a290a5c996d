"""Counting memory: the paper's bit accounting and the real bytes autograd keeps.

docs/design.md, section 6. ``naive`` is what a standard RNN stores (32 bits for every
position and hidden unit, h and c for an LSTM); ``actual`` is every bit this
implementation holds to reverse; ``ideal`` is what a perfect buffer would need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Optional

import torch

if TYPE_CHECKING:
    from .call import StackCall


@dataclass
class MemoryStats:
    """Bit counts of one layer (or a sum of layers) for one batch."""

    naive_bits: float = 0.0
    actual_bits: float = 0.0
    ideal_bits: float = 0.0

    def __add__(self, other: MemoryStats) -> MemoryStats:
        return MemoryStats(
            self.naive_bits + other.naive_bits,
            self.actual_bits + other.actual_bits,
            self.ideal_bits + other.ideal_bits,
        )

    @property
    def savings(self) -> float:
        return self.naive_bits / max(self.actual_bits, 1.0)

    @property
    def ideal_savings(self) -> float:
        return self.naive_bits / max(self.ideal_bits, 1.0)


def total(stats: Iterable[MemoryStats]) -> MemoryStats:
    return sum(stats, MemoryStats())


def naive_bits(steps: int, batch: int, hidden: int, states_per_unit: int) -> int:
    """32 bits for every (position, unit) a standard RNN stores."""
    return 32 * steps * batch * hidden * states_per_unit


def layer_memory(call: StackCall, index: int, ideal_bits: float, slice_bits: int, buffers) -> MemoryStats:
    """Bit counts of layer ``index`` in ``call``: ``buffers`` (InfoBuffers) in the
    reversible mode, None in the ordinary mode (which stores every state).
    ``ideal_bits`` are the bits its forget multiplications destroyed; the
    stored slices count in ``slice_bits`` (top layer). The first layer also
    holds the inputs, the padding mask and the seed of the gates' noise."""
    cfg = call.config
    naive = float(naive_bits(call.steps, call.batch, cfg.hidden_sizes[index], cfg.nvars))
    ideal = slice_bits + ideal_bits
    if buffers is None:
        return MemoryStats(naive, naive, ideal)
    actual = slice_bits + call.masks.layer_bits(index) + sum(b.actual_bits() for b in buffers)
    if index == 0:
        actual += call.inputs.stored_bits() + (0 if call.gate_noise is None else 64)  # the noise's seed
        if call.valid is not None:
            actual += call.valid.numel() * call.valid.element_size() * 8
    return MemoryStats(naive, float(actual), ideal)


class SavedTensorMeter:
    """Records the tensors autograd saves for backward inside a ``with`` block.

    ``bytes`` counts each underlying storage once and skips ``exclude`` (e.g.
    the parameters, which are not activations); ``shapes`` lists every saved
    tensor's shape, for checks that no activation of a given size is kept.
    """

    def __init__(self, exclude: Optional[Iterable[torch.Tensor]] = None) -> None:
        self._exclude = {t.untyped_storage().data_ptr() for t in (exclude or ())}
        self._storages: dict[int, tuple[int, tuple[int, ...]]] = {}
        self.shapes: list[tuple[int, ...]] = []
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self._exclude:
            self._storages[ptr] = (storage.nbytes(), tuple(t.shape))
            self.shapes.append(tuple(t.shape))
        return t

    @staticmethod
    def _unpack(t: torch.Tensor) -> torch.Tensor:
        return t

    @property
    def bytes(self) -> int:
        return sum(n for n, _ in self._storages.values())

    def bytes_without(self, drop: Callable[[tuple[int, ...]], bool]) -> int:
        """Bytes of the storages whose (first recorded) shape ``drop`` rejects not."""
        return sum(n for n, shape in self._storages.values() if not drop(shape))

    def __enter__(self) -> SavedTensorMeter:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
