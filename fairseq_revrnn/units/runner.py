"""Running recurrent cells over time: the cell interface and a multi-layer runner.

A cell splits its step into ``project`` (the input's share, computed for a whole
sequence at once) and ``recur`` (one time step from the projected input and the
state), so that a layer pays one large matrix product for its inputs and a
small one per step. The runner stacks cells into layers (optionally
bidirectional), keeps the state unchanged over padding, and also steps one
token at a time for incremental decoding.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

State = tuple[torch.Tensor, ...]


class RecurrentCell(nn.Module):
    """One recurrent unit: ``input_size`` features in, ``hidden_size`` out, a state of
    ``state_sizes`` (one tensor of shape (batch, size) per entry, the output first)."""

    input_size: int
    hidden_size: int
    state_sizes: tuple[int, ...]

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The input's share of the step, for any leading dimensions (time, batch, ...)."""
        raise NotImplementedError

    def recur(self, projected: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One step from a projected input (batch, ...): the output (batch, hidden_size) and the new state."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, state: Optional[State] = None) -> tuple[torch.Tensor, State]:
        """One step from a raw input (batch, input_size); a zero state when none is given."""
        if state is None:
            state = self.initial_state(x.shape[0], x)
        return self.recur(self.project(x), state)

    def initial_state(self, batch: int, like: torch.Tensor) -> State:
        """Zeros of the state's sizes, with ``like``'s dtype and device."""
        return tuple(like.new_zeros(batch, size) for size in self.state_sizes)


CellFactory = Callable[[int, int], RecurrentCell]
"""Builds a cell from (input_size, hidden_size): the unit's options already bound."""


class CellRNN(nn.Module):
    """Layers of cells over a (time, batch, features) input.

    ``hidden_sizes`` names each layer's size; with ``bidirectional`` every layer
    runs a second cell over reversed time and the next layer reads both outputs
    concatenated. ``dropout`` applies between layers (not after the last: the
    caller decides). States are a flat list, one tuple per layer and direction
    (layer-major), as the cells define them.
    """

    def __init__(
        self,
        cell: CellFactory,
        input_size: int,
        hidden_sizes: Sequence[int],
        bidirectional: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        if not hidden_sizes:
            raise ValueError("hidden_sizes must name at least one layer")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        self.directions = 2 if bidirectional else 1
        self.dropout = dropout
        cells = []
        size = input_size
        for hidden in hidden_sizes:
            cells.extend(cell(size, hidden) for _ in range(self.directions))
            size = hidden * self.directions
        self.cells = nn.ModuleList(cells)
        self.output_size = size

    @property
    def num_layers(self) -> int:
        return len(self.cells) // self.directions

    def initial_state(self, batch: int, like: torch.Tensor) -> list[State]:
        return [cell.initial_state(batch, like) for cell in self.cells]

    def forward(
        self, x: torch.Tensor, states: Optional[list[State]] = None, valid: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, list[State]]:
        """Run every layer over the whole input.

        ``valid`` (time, batch, bool) marks real tokens: elsewhere the state carries over
        unchanged and the output is zero, so left or right padding leaves each final state
        at its sequence's last (first, for the reverse direction) real token.
        Returns the top layer's outputs (time, batch, output_size) and the final states.
        """
        if states is None:
            states = self.initial_state(x.shape[1], x)
        finals: list[State] = []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.directions):
                index = layer * self.directions + direction
                out, state = _run(self.cells[index], x, states[index], valid, reverse=direction == 1)
                outputs.append(out)
                finals.append(state)
            x = torch.cat(outputs, dim=-1) if self.directions > 1 else outputs[0]
            if layer + 1 < self.num_layers:
                x = F.dropout(x, self.dropout, self.training)
        return x, finals

    def step(self, x: torch.Tensor, states: list[State]) -> tuple[torch.Tensor, list[State]]:
        """One time step through every layer (unidirectional only): x (batch, input_size)."""
        if self.directions != 1:
            raise ValueError("a bidirectional CellRNN cannot run one step at a time")
        new_states = []
        for layer, cell in enumerate(self.cells):
            x, state = cell(x, states[layer])
            new_states.append(state)
            if layer + 1 < len(self.cells):
                x = F.dropout(x, self.dropout, self.training)
        return x, new_states


def _run(
    cell: RecurrentCell, x: torch.Tensor, state: State, valid: Optional[torch.Tensor], reverse: bool
) -> tuple[torch.Tensor, State]:
    projected = cell.project(x)
    steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    outputs: list[Optional[torch.Tensor]] = [None] * x.shape[0]
    for t in steps:
        out, new = cell.recur(projected[t], state)
        if valid is not None:
            keep = valid[t].unsqueeze(-1)
            new = tuple(torch.where(keep, n, s) for n, s in zip(new, state))
            out = out * keep
        state = new
        outputs[t] = out
    return torch.stack(outputs), state
