"""Where the first layer's inputs come from, chunk by chunk.

The reversible Function asks for inputs ``x[s:e]`` in the forward and again in
the backward, so a sequence of embeddings never has to be kept: an
:class:`EmbeddingInput` recomputes them from the token ids. A
:class:`DenseInput` wraps a tensor the caller already holds.
"""

from __future__ import annotations

import copy
from typing import Optional

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


class DenseInput:
    """Inputs given as a ``(T, B, D)`` tensor."""

    def __init__(self, x: Tensor) -> None:
        if x.dim() != 3:
            raise ValueError(f"inputs must have shape (time, batch, features); got {tuple(x.shape)}")
        self.x = x

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape)

    @property
    def device(self) -> torch.device:
        return self.x.device

    def tensors(self) -> list[Tensor]:
        return [self.x]

    def bind(self, tensors: list[Tensor]) -> DenseInput:
        clone = copy.copy(self)
        clone.x = tensors[0]
        return clone

    def chunk(self, start: int, end: int) -> Tensor:
        return self.x[start:end]

    def grad_buffers(self) -> list[Tensor]:
        return [torch.zeros_like(self.x)]

    def accumulate(self, grads: list[Tensor], start: int, end: int, dx: Tensor) -> None:
        grads[0][start:end] = dx

    def stored_bits(self) -> int:
        return 0


class EmbeddingInput:
    """Inputs ``weight[tokens]``, with optional embedding dropout of whole word types.

    ``word_mask`` (shape ``(V,)``, drawn once per batch) scales each word's row;
    the backward scatters gradients into ``weight`` and leaves ``padding_idx``'s
    row at zero, as ``nn.Embedding`` does.
    """

    def __init__(
        self, tokens: Tensor, weight: Tensor, padding_idx: Optional[int] = None, word_mask: Optional[Tensor] = None
    ) -> None:
        if tokens.dim() != 2:
            raise ValueError(f"tokens must have shape (time, batch); got {tuple(tokens.shape)}")
        self.tokens = tokens
        self.weight = weight
        self.padding_idx = padding_idx
        self.word_mask = word_mask
        self.masked = word_mask is not None

    @property
    def shape(self) -> tuple[int, int, int]:
        return (*self.tokens.shape, self.weight.shape[1])

    @property
    def device(self) -> torch.device:
        return self.weight.device

    def tensors(self) -> list[Tensor]:
        extra = [self.word_mask] if self.masked else []
        return [self.weight, self.tokens, *extra]

    def bind(self, tensors: list[Tensor]) -> EmbeddingInput:
        clone = copy.copy(self)
        clone.weight, clone.tokens = tensors[0], tensors[1]
        clone.word_mask = tensors[2] if self.masked else None
        return clone

    def chunk(self, start: int, end: int) -> Tensor:
        tok = self.tokens[start:end]
        x = F.embedding(tok, self.weight, self.padding_idx)
        if self.word_mask is not None:
            x = x * self.word_mask[tok].unsqueeze(-1)
        return x

    def grad_buffers(self) -> list[Tensor]:
        return [torch.zeros_like(self.weight)]

    def accumulate(self, grads: list[Tensor], start: int, end: int, dx: Tensor) -> None:
        tok = self.tokens[start:end]
        if self.word_mask is not None:
            dx = dx * self.word_mask[tok].unsqueeze(-1)
        grads[0].index_add_(0, tok.reshape(-1), dx.reshape(-1, dx.shape[-1]))
        if self.padding_idx is not None:
            grads[0][self.padding_idx] = 0

    def stored_bits(self) -> int:
        bits = self.tokens.numel() * self.tokens.element_size() * 8
        if self.word_mask is not None:
            bits += self.word_mask.numel() * self.word_mask.element_size() * 8
        return bits
