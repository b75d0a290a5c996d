"""G2-LSTM: an LSTM whose input and forget gates are trained towards 0 or 1
(Li et al., *Towards Binary-Valued Gates for Robust LSTM Training*, ICML 2018).

The cell is an ordinary LSTM (gate order i, f, g, o as ``torch.nn.LSTMCell``, so
weights carry over) except for the input and forget gates, whose sigmoid is one of:

- ``sigmoid``: the paper's baseline, an ordinary LSTM;
- ``sharpened``: ``sigmoid(a / tau)`` in training and evaluation, the paper's
  sharpened-sigmoid baseline (section 3.2, tau = 0.2 in section 4.2);
- ``gumbel``: G2, the paper's eq. (11)-(12): while training
  ``sigmoid((a + log U - log(1 - U)) / tau)`` with ``U ~ Uniform(0, 1)`` drawn
  afresh for every gate value and step (tau = 0.9 in the paper), and the plain
  ``sigmoid(a)`` in evaluation. As in the authors' code, each gate value gets
  the noise with probability ``gumbel_fraction`` (1: every value, the paper's
  statement); the temperature divides every value while training.

The output gate always stays a plain sigmoid: the paper found pushing it to 0/1
hurts (section 3.2).
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..core.noise import GATE_MODES as GATES
from ..core.noise import PAPER_TEMPERATURE
from .runner import RecurrentCell, State

_ARGUMENTS = {"gates": "gates", "temperature": "temperature", "gumbel_fraction": "gumbel_fraction"}


def gate_settings(
    gates: str, temperature: Optional[float], gumbel_fraction: float, names: Mapping[str, str] = _ARGUMENTS
) -> tuple[str, Optional[float], float]:
    """Check the gate options and resolve the temperature (None: the paper's for ``gates``;
    sigmoid gates have none).

    Errors name each option as ``names`` spells it (the cell's arguments by default, the
    command-line options for a fairseq model) and say what is allowed."""
    if gates not in GATES:
        raise ValueError(f"{names['gates']} must be one of {list(GATES)}; got {gates!r}")
    if gates == "sigmoid" and temperature is not None:
        raise ValueError(f"{names['temperature']} is only used with {names['gates']} sharpened or gumbel")
    if gates != "gumbel" and gumbel_fraction != 1.0:
        raise ValueError(f"{names['gumbel_fraction']} is only used with {names['gates']} gumbel")
    fraction = gumbel_fraction
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"{names['gumbel_fraction']} must be in (0, 1]; got {gumbel_fraction!r}")
    if gates == "sigmoid":
        return gates, None, float(fraction)
    tau = PAPER_TEMPERATURE[gates] if temperature is None else temperature
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0 < tau < math.inf:
        raise ValueError(f"{names['temperature']} must be a number > 0; got {temperature!r}")
    return gates, float(tau), float(fraction)


def logistic_noise(like: torch.Tensor) -> torch.Tensor:
    """``log U - log(1 - U)`` for ``U ~ Uniform(0, 1)``, shaped like ``like`` (no gradient)."""
    tiny = torch.finfo(like.dtype).tiny
    u = torch.rand_like(like).clamp_(tiny, 1 - torch.finfo(like.dtype).eps)
    return torch.log(u) - torch.log1p(-u)


class G2LSTMCell(RecurrentCell):
    """An LSTM cell with ``gates`` in ``GATES`` for its input and forget gates (module docstring).

    ``temperature`` None takes the paper's for the gate type; ``gumbel_fraction`` is the
    probability that a gate value gets the Gumbel noise while training. State ``(h, c)``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        gates: str = "gumbel",
        temperature: Optional[float] = None,
        gumbel_fraction: float = 1.0,
    ):
        super().__init__()
        self.gate_type, self.temperature, self.gumbel_fraction = gate_settings(gates, temperature, gumbel_fraction)
        self.input_size, self.hidden_size = input_size, hidden_size
        self.state_sizes = (hidden_size, hidden_size)
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(4 * hidden_size))
        bound = 1.0 / math.sqrt(hidden_size)  # torch.nn.LSTMCell's initialisation
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, gates={self.gate_type}, temperature={self.temperature}, "
            f"gumbel_fraction={self.gumbel_fraction}"
        )

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight_ih, self.bias)

    def binary_gates(self, a: torch.Tensor) -> torch.Tensor:
        """The input and forget gates from their pre-activations ``a``."""
        if self.gate_type == "sigmoid" or (self.gate_type == "gumbel" and not self.training):
            return torch.sigmoid(a)
        if self.gate_type == "gumbel":
            noise = logistic_noise(a)
            if self.gumbel_fraction < 1:
                noise = noise * torch.bernoulli(torch.full_like(a, self.gumbel_fraction))
            a = a + noise
        return torch.sigmoid(a / self.temperature)

    def gates(self, projected: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The gates (i, f, g, o) of one step: what the paper's histograms show."""
        a_i, a_f, a_g, a_o = (projected + F.linear(h, self.weight_hh)).chunk(4, dim=-1)
        i, f = self.binary_gates(torch.cat([a_i, a_f], dim=-1)).chunk(2, dim=-1)
        return i, f, torch.tanh(a_g), torch.sigmoid(a_o)

    def recur(self, projected: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h, c = state
        i, f, g, o = self.gates(projected, h)
        c = f * c + i * g
        h = o * torch.tanh(c)
        return h, (h, c)
