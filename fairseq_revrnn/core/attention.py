"""Luong "general" attention and the output projection as a step head (docs/design.md, section 5).

Applied after the decoder RNN (no input feeding): ``score_j = y^T W_a s_j``,
``c = sum_j a_j s_j``, ``h~ = tanh(W_c [c; y])``, logits ``= W_out h~``. The
annotations ``s_j`` are built per sequence from what the variant allows:

============  =====================================  ===================
``attention`` ``s_j``                                encoder memory cost
============  =====================================  ===================
none          (no attention)                         none
hidden        full top-layer encoder state           every state stored
slice         first k units of the top layer's h1    k units per step
emb           source word embedding                  none (recomputed)
emb+slice     [embedding; k-unit slice]              k units per step
============  =====================================  ===================
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .head import StepHead
from .loss import TokenLoss

Tensor = torch.Tensor

ATTENTION_TYPES = ("none", "hidden", "slice", "emb", "emb+slice")
_SLOTS = (
    "w_out", "b_out", "w_proj", "out_mask", "w_a", "w_c",
    "hidden", "slices", "src_embed", "src_tokens", "src_pad", "target",
)  # fmt: skip


def uses_slice(attention: str) -> bool:
    return attention in ("slice", "emb+slice")


def uses_embeddings(attention: str) -> bool:
    return attention in ("emb", "emb+slice")


class OutputHead(StepHead):
    """Logits from the top layer's output, with optional Luong attention.

    Give tensors by name (see ``_SLOTS``); absent ones are None. ``src_pad``
    is True at padded source positions; ``src_embed_padding_idx`` is the
    padding index of ``src_embed``. With ``loss`` and ``target`` (T, B), the
    head's output is the summed loss instead of the logits.
    """

    def __init__(
        self,
        src_embed_padding_idx: Optional[int] = None,
        loss: Optional[TokenLoss] = None,
        **named: Optional[Tensor],
    ) -> None:
        unknown = set(named) - set(_SLOTS)
        if unknown:
            raise TypeError(f"unknown head tensors: {sorted(unknown)}")
        if (loss is None) != (named.get("target") is None):
            raise ValueError("a fused loss needs both loss and target")
        self._names = [n for n in _SLOTS if named.get(n) is not None]
        self.padding_idx = src_embed_padding_idx
        super().__init__([named[n] for n in self._names], loss)
        bias = self._names.index("b_out") if "b_out" in self._names else None
        self.linear_slots = (self._names.index("w_out"), bias)
        self.target_slot = self._names.index("target") if loss is not None else None

    def precompute(self, *tensors: Tensor) -> tuple:
        t = dict(zip(self._names, tensors))
        ann = None
        if "w_a" in t:
            # batch-major (B, S, .) once per sequence, so that each step is two batched matrix products
            parts = []
            if "src_embed" in t:
                parts.append(F.embedding(t["src_tokens"].t(), t["src_embed"], self.padding_idx))
            if "slices" in t:
                parts.append(t["slices"].to(t["w_a"].dtype).transpose(0, 1))
            if "hidden" in t:
                parts.append(t["hidden"].transpose(0, 1))
            ann = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0].contiguous()
        src_pad = t.get("src_pad")
        src_pad = None if src_pad is None else src_pad.t()
        return t.get("w_a"), ann, src_pad, t.get("w_c"), t.get("out_mask"), t.get("w_proj")

    def features(self, y: Tensor, pre: tuple) -> tuple[Tensor, Optional[Tensor]]:
        """Inputs of the output projection (B, D) and attention weights (S, B)
        for the top decoder outputs ``y`` (B, H)."""
        w_a, ann, src_pad, w_c, out_mask, w_proj = pre
        attn = None
        h = y
        if ann is not None:
            # y^T W_a s_j as s_j . (W_a^T y): no (B, S, H) keys to keep or differentiate
            scores = torch.bmm(ann, (y @ w_a).unsqueeze(2)).squeeze(2)
            if src_pad is not None:
                scores = scores.masked_fill(src_pad, float("-inf"))
            weights = torch.softmax(scores, dim=1)
            context = torch.bmm(weights.unsqueeze(1), ann).squeeze(1)
            h = torch.tanh(torch.cat([context, y], dim=1) @ w_c.t())
            attn = weights.t()
        if out_mask is not None:
            h = h * out_mask
        if w_proj is not None:
            h = h @ w_proj.t()
        return h, attn

    def step(self, y: Tensor, pre: tuple, t: int) -> Tensor:
        return self.features(y, pre)[0]

    def attend(self, y: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        """Logits (B, V) and attention weights (S, B) for one step, without
        autograd (incremental decoding)."""
        with torch.no_grad():
            h, attn = self.features(y, self.precompute(*self.tensors()))
            return self.apply_linear(h), attn
