"""One call of a reversible stack: its static configuration and its data.

The first layer's input projection ``W_x x_t`` is computed for a chunk of
steps in one matrix multiply, with the same chunk boundaries forward and
backward so that the recomputed gates are bitwise identical. A chunk holds at
most ``chunk_size`` steps and about ``CHUNK_ELEMENTS`` projected values, so
that large batches do not turn the chunk (and its gradient) into the step's
largest tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple, Optional, Sequence

import torch

from .dropout import StackMasks
from .fixed_point import RH, Forgetting
from .head import StepHead
from .noise import GateNoise

Tensor = torch.Tensor

CHUNK_ELEMENTS = 2**21  # projected inputs per chunk: 8 MB in float32


class LayerParams(NamedTuple):
    """One layer's parameters (or their gradients), named as ``ReversibleRNN``
    registers them: ``weight_ih_l{i}``, ``bias_l{i}``, ``weight_hh1_l{i}``, ``weight_hh2_l{i}``."""

    weight_ih: Tensor
    bias: Tensor
    weight_hh1: Optional[Tensor]
    weight_hh2: Optional[Tensor]


class Step(NamedTuple):
    """A time step as its kernels see it: the index and, with padding, which
    rows are real (``valid``, bool, (B, 1)) and the same as floats (``weight``)."""

    t: int
    valid: Optional[Tensor] = None
    weight: Optional[Tensor] = None


class FlatLayout:
    """Named groups of tensors at fixed places in one flat list: an autograd
    Function's inputs (and so its input gradients and ``needs_input_grad``),
    or what it saves for backward."""

    def __init__(self, **sizes: int) -> None:
        self.sizes = sizes

    def pack(self, **groups: Sequence) -> list:
        """The flat list; groups left out are filled with None."""
        flat: list = []
        for name, size in self.sizes.items():
            group = list(groups.get(name, [None] * size))
            if len(group) != size:
                raise ValueError(f"layout group {name!r} holds {size} entries; got {len(group)}")
            flat += group
        return flat

    def unpack(self, flat: Sequence) -> dict[str, list]:
        """Inverse of :meth:`pack`: each group's entries by name."""
        if len(flat) != sum(self.sizes.values()):
            raise ValueError(f"layout holds {sum(self.sizes.values())} entries; got {len(flat)}")
        groups, start = {}, 0
        for name, size in self.sizes.items():
            groups[name] = list(flat[start : start + size])
            start += size
        return groups


def per_layer(flat: Sequence, layers: int) -> list[list]:
    """``flat`` cut into ``layers`` equal runs, one per layer."""
    n = len(flat) // layers
    return [list(flat[li * n : (li + 1) * n]) for li in range(layers)]


@dataclass
class StackConfig:
    """Static description of a stack (validated by :class:`ReversibleRNN`)."""

    cell: type
    input_size: int
    hidden_sizes: list[int]
    forgetting: Forgetting
    slice_dim: int = 0
    chunk_size: int = 16
    overflow: str = "auto"  # buffer overflow handling: buffer.OVERFLOW_MODES
    gates: str = "sigmoid"  # input and forget gates: noise.GATE_MODES
    temperature: float = 1.0  # tau of sharpened and Gumbel gates
    hidden_radix: int = RH  # states are multiples of 2**-hidden_radix (the forget radix: forgetting.radix)
    estimator: str = "gumbel"  # discrete forgetting's gradient estimator: discrete.ESTIMATORS

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
    padded: bool = False
    compiled: bool = False
    gate_noise: Optional[GateNoise] = None  # Gumbel noise of G2 gates while training
    gate_temperature: float = 1.0  # the temperature in force: 1 for plain sigmoids and Gumbel gates in evaluation

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

    def step(self, t: int) -> Step:
        if self.valid is None:
            return Step(t)
        v = self.valid[t].unsqueeze(1)
        return Step(t, v, v.to(self.dtype))

    def chunks(self) -> list[tuple[int, int]]:
        cfg = self.config
        width = cfg.cell.columns(cfg.forgetting) * cfg.hidden_sizes[0]
        size = max(1, min(cfg.chunk_size, CHUNK_ELEMENTS // (self.batch * width)))
        return [(s, min(self.steps, s + size)) for s in range(0, self.steps, size)]

    def layout(self) -> FlatLayout:
        """The tensor arguments of :class:`ReversibleStackFunction`, in order."""
        cfg = self.config
        return FlatLayout(
            inputs=len(self.inputs.tensors()),
            valid=int(self.padded),
            states=cfg.num_layers * cfg.nvars,
            params=cfg.num_layers * len(LayerParams._fields),
            head=0 if self.head is None else len(self.head.tensors()),
        )

    def flat_inputs(self, h0: list[list[Tensor]], params: list[LayerParams]) -> list[Tensor]:
        """The Function's tensor arguments: see :meth:`layout`."""
        return self.layout().pack(
            inputs=self.inputs.tensors(),
            valid=[self.valid] if self.padded else [],
            states=[v for layer in h0 for v in layer],
            params=[p for layer in params for p in layer],
            head=[] if self.head is None else self.head.tensors(),
        )

    def rebind(self, tensors: Sequence[Tensor]) -> tuple[StackCall, list[list[Tensor]], list[LayerParams]]:
        """Inverse of :meth:`flat_inputs`: a call over ``tensors``, and h0, params."""
        parts = self.layout().unpack(tensors)
        layers = self.config.num_layers
        params = [LayerParams(*p) for p in per_layer(parts["params"], layers)]
        call = replace(
            self,
            inputs=self.inputs.bind(parts["inputs"]),
            valid=parts["valid"][0] if self.padded else None,
            dtype=params[0].weight_ih.dtype,
            head=None if self.head is None else self.head.bind(parts["head"]),
        )
        return call, per_layer(parts["states"], layers), params

    def input_grads(
        self, dinputs: list[Tensor], dh0: list[Tensor], dparams: list[LayerParams], dhead: list[Optional[Tensor]]
    ) -> list[Optional[Tensor]]:
        """The Function's input gradients, in :meth:`layout` order (None for the padding mask)."""
        n_in = len(self.inputs.tensors())
        return self.layout().pack(
            inputs=list(dinputs) + [None] * (n_in - len(dinputs)),
            states=dh0,
            params=[p for layer in dparams for p in layer],
            head=dhead,
        )
