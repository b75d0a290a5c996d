"""NRU: the Non-saturating Recurrent Unit (Chandar et al., *Towards Non-saturating
Recurrent Units for Modelling Long-term Dependencies*, AAAI 2019).

No sigmoid or tanh anywhere: the hidden state is a ReLU of ``[x, h, m]`` (eq. 9), and a
memory vector ``m`` changes only by addition (eq. 10),

    h_t = relu(W_i x_t + W_h h_{t-1} + W_c m_{t-1} + b)
    m_t = m_{t-1} + sum_k alpha_k v^w_k - sum_k beta_k v^e_k     (or the mean over k)

so its gradient does not vanish over long spans. The strengths ``alpha, beta`` (k each)
and the directions ``v^w, v^e`` (k x m each) are linear in ``[h_t, m_{t-1}]`` (the paper's
eqs. 11-14 also list ``x_t``; here, as issue 11 specifies, ``x_t`` reaches them through ``h_t``).
Each direction set is the outer product of two vectors of ``sqrt(k * m)`` units, reshaped
to k rows of m (the paper's cheaper variant of eqs. 15-17, the one its code uses; hence
``memory_size * memory_heads`` must be a perfect square), and every row is divided by its
L5 norm. ``head_reduction`` combines the heads: ``mean`` as the authors' code (the
default), or ``sum`` as the paper's eq. 10. The sum is unstable at initialisation: with 4
heads, 2 layers of 256 units and a 64-unit memory, over 70 steps of embedding-sized inputs
its memory grows to thousands while the mean's stays near 1 (``torch.nn.Linear``'s
initialisation, as the authors' code). ``relu_heads`` puts the paper's optional ReLU on the
strengths and directions (write heads then only add, erase heads only remove; the paper's
best character-level language models use it), and ``layer_norm`` normalises the hidden
state's pre-activation (off by default, as in the paper's experiments).
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .runner import RecurrentCell, State

HEAD_REDUCTIONS = ("mean", "sum")
NORM_ORDER = 5
_ARGUMENTS = {"memory_size": "memory_size", "memory_heads": "memory_heads", "head_reduction": "head_reduction"}


def memory_settings(
    memory_size: int, memory_heads: int, head_reduction: str, names: Mapping[str, str] = _ARGUMENTS
) -> int:
    """Check the memory options; return ``sqrt(memory_size * memory_heads)``, the size of the
    vectors whose outer product gives the directions. Errors name the options as ``names``
    spells them (the cell's arguments by default) and say what is allowed."""
    for key, value in (("memory_size", memory_size), ("memory_heads", memory_heads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{names[key]} must be an integer >= 1; got {value!r}")
    root = math.isqrt(memory_size * memory_heads)
    if root * root != memory_size * memory_heads:
        raise ValueError(
            f"{names['memory_size']} * {names['memory_heads']} must be a perfect square (the write and erase "
            f"directions are outer products of two vectors of sqrt(size * heads) units); got "
            f"{memory_size} * {memory_heads} = {memory_size * memory_heads}"
        )
    if head_reduction not in HEAD_REDUCTIONS:
        raise ValueError(f"{names['head_reduction']} must be one of {list(HEAD_REDUCTIONS)}; got {head_reduction!r}")
    return root


def l5_normalize(v: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``v / ||v||_5`` over the last dimension (a zero row stays zero)."""
    return v / torch.linalg.vector_norm(v, ord=NORM_ORDER, dim=-1, keepdim=True).clamp_min(eps)


class NRUCell(RecurrentCell):
    """The NRU step (module docstring). State ``(h, m)``: hidden (hidden_size) and memory (memory_size)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        memory_size: int = 64,
        memory_heads: int = 4,
        layer_norm: bool = False,
        relu_heads: bool = False,
        head_reduction: str = "mean",
    ):
        super().__init__()
        self.root = memory_settings(memory_size, memory_heads, head_reduction)
        self.input_size, self.hidden_size = input_size, hidden_size
        self.memory_size, self.memory_heads = memory_size, memory_heads
        self.relu_heads, self.head_reduction = bool(relu_heads), head_reduction
        self.state_sizes = (hidden_size, memory_size)
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hm = nn.Parameter(torch.empty(hidden_size, hidden_size + memory_size))
        self.bias = nn.Parameter(torch.empty(hidden_size))
        bound = 1.0 / math.sqrt(input_size + hidden_size + memory_size)  # nn.Linear's, over [x, h, m]
        for weight in (self.weight_ih, self.weight_hm, self.bias):
            nn.init.uniform_(weight, -bound, bound)
        self.norm = nn.LayerNorm(hidden_size) if layer_norm else None
        # alpha (k), beta (k), then p and q of the write and of the erase directions (sqrt(k m) each)
        self.heads = nn.Linear(hidden_size + memory_size, 2 * memory_heads + 4 * self.root)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, memory_size={self.memory_size}, memory_heads={self.memory_heads}, "
            f"relu_heads={self.relu_heads}, head_reduction={self.head_reduction}"
        )

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight_ih, self.bias)

    def directions(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """(batch, k, m) unit-L5 directions from the outer product of p and q (batch, sqrt(k m))."""
        v = (p.unsqueeze(-1) * q.unsqueeze(-2)).reshape(*p.shape[:-1], self.memory_heads, self.memory_size)
        return l5_normalize(F.relu(v) if self.relu_heads else v)

    def recur(self, projected: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h, m = state
        pre = projected + F.linear(torch.cat([h, m], dim=-1), self.weight_hm)
        h = F.relu(pre if self.norm is None else self.norm(pre))
        k, r = self.memory_heads, self.root
        alpha, beta, p_w, q_w, p_e, q_e = self.heads(torch.cat([h, m], dim=-1)).split([k, k, r, r, r, r], dim=-1)
        if self.relu_heads:
            alpha, beta = F.relu(alpha), F.relu(beta)
        change = alpha.unsqueeze(-1) * self.directions(p_w, q_w) - beta.unsqueeze(-1) * self.directions(p_e, q_e)
        m = m + (change.sum(dim=1) if self.head_reduction == "sum" else change.mean(dim=1))
        return h, (h, m)
