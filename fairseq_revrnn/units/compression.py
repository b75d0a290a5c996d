"""Compressing the input- and forget-gate weights of a G2-LSTM (Li et al. 2018, section 4.3).

The paper's point is that gates trained towards 0/1 sit where the sigmoid is flat, so their
weights tolerate coarse values. It compresses the parameters of the input and forget gates
in two ways, each on its own:

- low precision: ``round_r(x) = round(x / r) * r`` (eq. 17), then optionally
  ``clip_c(x) = clip(x, -c, c)`` (eq. 18); the paper uses r 0.2, c 0.4 for language
  modelling and r 0.5, c 1.0 for translation, so every value is one of five;
- low rank: each gate's matrix replaced by its rank-k SVD reconstruction.

"The parameters of the input and forget gates" are the rows of i and f in both the
input-to-hidden and the hidden-to-hidden matrices (the authors' language-model code
compresses both; their translation code leaves the word-embedding input matrix alone).
Each gate's block (H rows) is compressed on its own, as the authors' code does; biases,
the output gate and the candidate ``g`` stay as they are. The compressed matrices are
stored dense, so a model loads them unchanged; :func:`factored_size` says what the
factored form of a low-rank block would cost.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Optional

import torch

GATE_ROWS = {"i": 0, "f": 1}
"""The compressed gates and their block index in a G2LSTMCell's rows (order i, f, g, o)."""

GATE_WEIGHT = re.compile(r"(^|\.)rnn\.cells\.\d+\.weight_(ih|hh)$")
"""State-dict names of the G2-LSTM cells' weight matrices in our fairseq models."""

_ARGUMENTS = {"round_step": "round_step", "clip": "clip", "rank": "rank"}


def round_to_step(weight: torch.Tensor, step: float) -> torch.Tensor:
    """The paper's eq. 17: the nearest multiple of ``step`` (ties to even, as numpy's round)."""
    return torch.round(weight / step) * step


def clip(weight: torch.Tensor, bound: float) -> torch.Tensor:
    """The paper's eq. 18: values limited to ``[-bound, bound]``."""
    return weight.clamp(-bound, bound)


def max_rank(weight: torch.Tensor) -> int:
    """The largest rank a matrix of this shape can have: min(rows, columns)."""
    return min(weight.shape)


def low_rank(weight: torch.Tensor, rank: int) -> torch.Tensor:
    """The best rank-``rank`` approximation of a matrix (truncated SVD, computed in float64)."""
    if not 1 <= rank <= max_rank(weight):
        raise ValueError(f"rank must be in [1, {max_rank(weight)}] for a {tuple(weight.shape)} matrix; got {rank}")
    u, s, vh = torch.linalg.svd(weight.double(), full_matrices=False)
    return ((u[:, :rank] * s[:rank]) @ vh[:rank]).to(weight.dtype)


def factored_size(shape: tuple[int, int], rank: int) -> int:
    """Parameters of a rank-``rank`` matrix kept as two factors (rows x rank, rank x columns)."""
    return rank * (shape[0] + shape[1])


@dataclass(frozen=True)
class GateCompression:
    """What to do to the gate blocks: round to ``round_step`` (then clip to ``clip``) and/or
    keep ``rank`` singular values. With both, the low-rank matrix is rounded, so the stored
    values stay on the grid. ``names`` spells the options in errors (the script's flags)."""

    round_step: Optional[float] = None
    clip: Optional[float] = None
    rank: Optional[int] = None
    names: Mapping[str, str] = field(default_factory=lambda: dict(_ARGUMENTS), compare=False, repr=False)

    def __post_init__(self) -> None:
        n = self.names
        if self.round_step is not None and not _positive(self.round_step):
            raise ValueError(f"{n['round_step']} must be a number > 0; got {self.round_step!r}")
        if self.clip is not None:
            if self.round_step is None:
                raise ValueError(f"{n['clip']} is only used with {n['round_step']} (the paper's round & clip)")
            if not _positive(self.clip):
                raise ValueError(f"{n['clip']} must be a number > 0; got {self.clip!r}")
        if self.round_step is None and self.rank is None:
            raise ValueError(f"nothing to do: give {n['round_step']} and/or {n['rank']}")
        if self.rank is not None and (isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1):
            raise ValueError(f"{n['rank']} must be an integer >= 1; got {self.rank!r}")

    def apply(self, block: torch.Tensor) -> torch.Tensor:
        """One gate's block compressed (the rank was checked by the caller)."""
        if self.rank is not None:
            block = low_rank(block, self.rank)
        if self.round_step is not None:
            block = round_to_step(block, self.round_step)
        if self.clip is not None:
            block = clip(block, self.clip)
        return block


def _positive(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0 < value < math.inf


@dataclass
class BlockReport:
    """One compressed gate block: where, its size, and what compression did to it."""

    name: str
    gate: str
    shape: tuple[int, int]
    dense: int
    factored: Optional[int]
    distinct: int
    zeros: float
    max_change: float


def gate_blocks(weight: torch.Tensor) -> dict[str, slice]:
    """Rows of the input and forget gates in a cell's (4H, columns) weight matrix."""
    if weight.dim() != 2 or weight.shape[0] % 4:
        raise ValueError(f"a G2-LSTM gate matrix has 4 * hidden rows; got shape {tuple(weight.shape)}")
    hidden = weight.shape[0] // 4
    return {gate: slice(k * hidden, (k + 1) * hidden) for gate, k in GATE_ROWS.items()}


def gate_weight_names(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """The names of the G2-LSTM cell matrices in a model's state dict."""
    return [name for name in state_dict if GATE_WEIGHT.search(name)]


def compress_state_dict(state_dict: MutableMapping[str, torch.Tensor], spec: GateCompression) -> list[BlockReport]:
    """Compress the i and f blocks of every cell matrix in place; one report per block.

    Raises ValueError when there is no such matrix, or when the rank exceeds what some
    block can have (naming the option, the block and its largest rank)."""
    names = gate_weight_names(state_dict)
    if not names:
        raise ValueError("no G2-LSTM cell weights (rnn.cells.N.weight_ih / weight_hh) in this state dict")
    if spec.rank is not None:
        blocks = [
            (name, gate, state_dict[name][rows])
            for name in names
            for gate, rows in gate_blocks(state_dict[name]).items()
        ]
        name, gate, block = min(blocks, key=lambda b: max_rank(b[2]))
        if spec.rank > max_rank(block):
            raise ValueError(
                f"{spec.names['rank']} {spec.rank} is larger than the rank of the {gate} gate's block of {name} "
                f"({block.shape[0]} x {block.shape[1]}: at most {max_rank(block)})"
            )
    reports = []
    for name in names:
        weight = state_dict[name]
        new = weight.clone()
        for gate, rows in gate_blocks(weight).items():
            block = spec.apply(weight[rows])
            new[rows] = block
            shape = (block.shape[0], block.shape[1])
            reports.append(
                BlockReport(
                    name=name,
                    gate=gate,
                    shape=shape,
                    dense=block.numel(),
                    factored=None if spec.rank is None else factored_size(shape, spec.rank),
                    distinct=int(block.unique().numel()),
                    zeros=float((block == 0).float().mean()),
                    max_change=float((block - weight[rows]).abs().max()),
                )
            )
        state_dict[name] = new
    return reports
