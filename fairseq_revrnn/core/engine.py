"""Running a reversible stack over a sequence without autograd (incremental
decoding, exact traces) and in the ordinary autograd mode; the reversible
mode is :class:`.function.ReversibleStackFunction`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .call import LayerParams, StackCall
from .cells import HalfState
from .layer import Layer, fresh_layers, stack_memory
from .walks import run_and_record, walk_backward, walk_forward

Tensor = torch.Tensor


@dataclass
class ExactState:
    """A stack's exact state between calls, for step-by-step decoding: integer
    states per layer and variable, and the buffers (their remainders feed back
    into the states, so carrying them keeps values identical to a full pass)."""

    ints: list[list[Tensor]]
    buffers: list[Optional[list[HalfState]]]

    def index_select(self, order: Tensor) -> ExactState:
        ints = [[v.index_select(0, order) for v in layer] for layer in self.ints]
        buffers = [
            None if bufs is None else [HalfState(*(b.index_select(order) for b in half.present())) for half in bufs]
            for bufs in self.buffers
        ]
        return ExactState(ints, buffers)


def advance(call: StackCall, params: list[LayerParams], h0=None, state: Optional[ExactState] = None):
    """Run forward without autograd from float ``h0`` or an :class:`ExactState`;
    return the top layer's outputs (T, B, H) and the new exact state."""
    with torch.no_grad():
        if state is None:
            layers = fresh_layers(call, params, h0)
        else:
            layers = [Layer(call, li, p) for li, p in enumerate(params)]
            for layer, ints, bufs in zip(layers, state.ints, state.buffers):
                layer.start(
                    list(ints),
                    None if bufs is None else [HalfState(*(b.copy() for b in half.present())) for half in bufs],
                )
        top, outputs = layers[-1], []
        walk_forward(call, layers, lambda t: outputs.append(top.output()))
        new_state = ExactState([layer.final_ints() for layer in layers], [layer.buffers for layer in layers])
    return torch.stack(outputs), new_state


def run_ordinary(call: StackCall, h0: list[list[Tensor]], params: list[LayerParams]):
    """The same cells and the same exact values, with every step kept by autograd.

    Each state is the exact fixed-point value with the float update's gradient
    attached (``exact + (sur - sur.detach())``), so values match the
    reversible mode bit for bit and gradients flow as through the float cell.
    """
    layers = fresh_layers(call, params, h0, graph=True)
    out, slices = run_and_record(call, layers)
    slice_bits = slices.numel() * torch.finfo(slices.dtype).bits
    memory = stack_memory(call, layers, slice_bits)
    return (out, slices, memory, *(v for layer in layers for v in layer.final_graph()))


def trace_exact(call: StackCall, h0: list[list[Tensor]], params: list[LayerParams]):
    """Exact states before every step, forward and as recovered by reversal.

    Returns ``(forward, recovered, pushes)``: ``forward[t]`` and
    ``recovered[t]`` list the integer states (all layers and variables)
    before step t (index T: after the last step); ``pushes`` counts buffer
    overflows. For tests and diagnostics; runs without autograd.
    """
    with torch.no_grad():
        layers = fresh_layers(call, params, h0)
        top = layers[-1]

        def snapshot() -> list[Tensor]:
            return [v.clone() for layer in layers for v in layer.final_ints()]

        forward, kept = [snapshot()], [top.kept_slice().clone()]

        def record(t: int) -> None:
            forward.append(snapshot())
            kept.append(top.kept_slice().clone())

        walk_forward(call, layers, record)
        pushes = sum(len(b.push_steps) for layer in layers for b in layer.all_buffers())
        recovered = [snapshot()]
        walk_backward(call, layers, kept.__getitem__, on_step=lambda t: recovered.append(snapshot()))
    return forward, recovered[::-1], pushes
