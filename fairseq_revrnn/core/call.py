"""One call of a reversible stack: its static configuration and its data.

The first layer's input projection ``W_x x_t`` is computed for a chunk of
steps in one matrix multiply, with the same chunk boundaries forward and
backward so that the recomputed gates are bitwise identical. A chunk holds at
most ``chunk_size`` steps and about ``CHUNK_ELEMENTS`` projected values, so
that large batches do not turn the chunk (and its gradient) into the step's
largest tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import torch

from .dropout import StackMasks
from .fixed_point import Forgetting
from .head import StepHead
from .memory import MemoryStats

Tensor = torch.Tensor

CHUNK_ELEMENTS = 2**21  # projected inputs per chunk: 8 MB in float32


@dataclass
class StackConfig:
    """Static description of a stack (validated by :class:`ReversibleRNN`)."""

    cell: type
    input_size: int
    hidden_sizes: list[int]
    forgetting: Forgetting
    slice_dim: int = 0
    chunk_size: int = 16

    @property
    def num_layers(self) -> int:
        return len(self.hidden_sizes)

    @property
    def nvars(self) -> int:
        return len(self.cell.state_names)


@dataclass
class StackCall:
    """One call's non-parameter data: inputs provider, masks, padding, head."""

    config: StackConfig
    inputs: object
    masks: StackMasks
    valid: Optional[Tensor]
    return_outputs: bool
    dtype: torch.dtype = torch.float32
    head: Optional[StepHead] = None
    memory: list[MemoryStats] = field(default_factory=list)
    padded: bool = False
    compiled: bool = False

    def __post_init__(self) -> None:
        self.padded = self.padded or self.valid is not None

    def skeleton(self) -> StackCall:
        """This call without any tensor: all the autograd context keeps besides
        what it saves with ``save_for_backward`` (see :meth:`rebind`)."""
        head = None if self.head is None else self.head.bind([None] * len(self.head.tensors()))
        return replace(self, inputs=self.inputs.bind([None] * len(self.inputs.tensors())), valid=None, head=head)

    @property
    def steps(self) -> int:
        return self.inputs.shape[0]

    @property
    def batch(self) -> int:
        return self.inputs.shape[1]

    @property
    def slice_dtype(self) -> torch.dtype:
        return self.dtype if self.dtype in (torch.float32, torch.float64) else torch.float32

    def valid_at(self, t: int) -> tuple[Optional[Tensor], Optional[Tensor]]:
        if self.valid is None:
            return None, None
        v = self.valid[t].unsqueeze(1)
        return v, v.to(self.dtype)

    def chunks(self) -> list[tuple[int, int]]:
        cfg = self.config
        width = cfg.cell.gates_per_unit * cfg.hidden_sizes[0]
        size = max(1, min(cfg.chunk_size, CHUNK_ELEMENTS // (self.batch * width)))
        return [(s, min(self.steps, s + size)) for s in range(0, self.steps, size)]

    def flat_inputs(self, h0: list[list[Tensor]], params: list[Tensor]) -> list[Tensor]:
        """The tensor arguments of :class:`ReversibleStackFunction`, in order."""
        valid = [self.valid] if self.padded else []
        head = [] if self.head is None else self.head.tensors()
        states = [v for layer in h0 for v in layer]
        return [*self.inputs.tensors(), *valid, *states, *params, *head]

    def rebind(self, tensors) -> tuple[StackCall, list[list[Tensor]], list[Tensor]]:
        """Inverse of :meth:`flat_inputs`: a call over ``tensors``, and h0, params."""
        it = iter(tensors)
        take = lambda n: [next(it) for _ in range(n)]  # noqa: E731
        inputs = self.inputs.bind(take(len(self.inputs.tensors())))
        valid = next(it) if self.padded else None
        cfg = self.config
        h0 = [take(cfg.nvars) for _ in range(cfg.num_layers)]
        params = take(4 * cfg.num_layers)
        head = None if self.head is None else self.head.bind(take(len(self.head.tensors())))
        dtype = params[0].dtype
        call = replace(self, inputs=inputs, valid=valid, dtype=dtype, head=head)
        return call, h0, params

    def input_grads(self, dinputs, dh0, dparams, dhead) -> list[Optional[Tensor]]:
        n_in = len(self.inputs.tensors())
        grads = list(dinputs) + [None] * (n_in - len(dinputs))
        grads += [None] if self.padded else []
        return grads + list(dh0) + list(dparams) + list(dhead)
