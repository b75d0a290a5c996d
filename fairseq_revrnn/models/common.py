"""Options and builders shared by the translation model and the language model."""

from __future__ import annotations

from typing import Optional

import torch
from fairseq.dataclass import ChoiceEnum
from torch import nn

from ..core import ReversibleRNN, total
from ..core.fixed_point import RZ
from ..core.memory import MemoryStats

CELL_CHOICES = ChoiceEnum(["lstm", "gru"])
FORGET_BITS = [str(b) for b in range(1, RZ + 1)] + ["none"]
FORGET_BITS_CHOICES = ChoiceEnum(FORGET_BITS)

HELP = {
    "cell_type": "reversible cell: lstm (RevLSTM) or gru (RevGRU)",
    "max_forget_bits": f"forget at most this many bits per unit and step (1..{RZ}) or 'none' for no limit",
    "no_forgetting": "no-forgetting (NF) variant: forget values fixed at 1, purely additive updates",
    "no_reversible": "train in ordinary autograd mode (every step stored) instead of reversibly",
    "dropout_in": "variational dropout on the first layer's inputs (one mask per sequence)",
    "dropout_out": "variational dropout on each layer's outputs (one mask per sequence)",
    "dropout_hidden": "DropConnect on the hidden-to-hidden weights (one mask per batch)",
    "dropout_embed": "embedding dropout: drop whole word types (one mask per batch)",
}


def forget_bits(value) -> Optional[int]:
    """Parse ``--max-forget-bits`` ('1'..'10' or 'none')."""
    text = str(value).lower()
    if text not in FORGET_BITS:
        raise ValueError(f"--max-forget-bits must be one of {FORGET_BITS}; got {value!r}")
    return None if text == "none" else int(text)


def check_even(option: str, value: int) -> int:
    if value < 2 or value % 2:
        raise ValueError(f"{option} must be an even integer >= 2 (reversible cells split it in halves); got {value}")
    return value


def build_stack(cfg, input_size: int, sizes: list[int], slice_dim: int, chunk_size: int) -> ReversibleRNN:
    """A :class:`ReversibleRNN` with the cell, forgetting and dropout options of ``cfg``."""
    if not sizes:
        raise ValueError("the number of layers must be >= 1")
    return ReversibleRNN(
        str(cfg.cell_type),
        input_size,
        sizes,
        max_forget_bits=forget_bits(cfg.max_forget_bits),
        no_forgetting=bool(cfg.no_forgetting),
        slice_dim=slice_dim,
        dropout_in=cfg.dropout_in,
        dropout_out=cfg.dropout_out,
        dropout_hidden=cfg.dropout_hidden,
        reversible=not cfg.no_reversible,
        chunk_size=chunk_size,
    )


def embedding(num: int, dim: int, padding_idx: int) -> nn.Embedding:
    emb = nn.Embedding(num, dim, padding_idx=padding_idx)
    nn.init.uniform_(emb.weight, -0.1, 0.1)
    nn.init.constant_(emb.weight[padding_idx], 0)
    return emb


def word_mask(num_words: int, p: float, training: bool, like: torch.Tensor) -> Optional[torch.Tensor]:
    """Embedding dropout mask over word types (Gal & Ghahramani), or None."""
    if not training or p <= 0:
        return None
    return torch.empty(num_words, dtype=like.dtype, device=like.device).bernoulli_(1 - p).div_(1 - p)


def memory_sum(stats: list[MemoryStats]) -> MemoryStats:
    return total(stats) if stats else MemoryStats()
