"""The output layer and the token loss, fused, one block of tokens at a time.

Logits have a row of vocabulary size for every target token: T x B x V, by
far the largest activation of a recurrent model's training step, and the
loss's ``log_softmax`` and its backward keep more tensors of that size. A
:class:`TokenLoss` instead turns the output features of a bounded block of
tokens into logits, log-probabilities and the summed loss, and drops them;
the backward recomputes a block's logits from its features and returns the
gradients of the features and of the output layer. The peak temporary is one
block of ``block_elements`` logits, whatever T x B is.

The loss is fairseq's: cross entropy (``epsilon = 0``) or label-smoothed
cross entropy, summed over tokens whose target is not ``ignore_index``, with
log-probabilities in float32 (float64 for a float64 model), as fairseq's
``log_softmax`` computes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

BLOCK_ELEMENTS = 2**22  # logits per block: 16 MB in float32


@dataclass(frozen=True)
class TokenLoss:
    """What the loss needs besides its targets: label smoothing, padding, block size."""

    ignore_index: int
    epsilon: float = 0.0
    block_elements: int = BLOCK_ELEMENTS
    count_correct: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon < 1.0:
            raise ValueError(f"label smoothing epsilon must be in [0, 1); got {self.epsilon!r}")
        if self.block_elements < 1:
            raise ValueError(f"block_elements must be >= 1; got {self.block_elements!r}")

    def rows_per_block(self, vocab: int) -> int:
        return max(1, self.block_elements // vocab)

    def weights(self, vocab: int) -> tuple[float, float]:
        """``loss = a * nll + b * smooth`` (fairseq's ``label_smoothed_nll_loss``)."""
        eps_i = self.epsilon / (vocab - 1) if self.epsilon else 0.0
        return 1.0 - self.epsilon - eps_i, eps_i

    def blocks(self, steps: int, vocab: int, batch: int) -> list[tuple[int, int]]:
        """Step ranges of the forward's blocks: whole steps, about ``block_elements`` logits each."""
        n = max(1, self.rows_per_block(vocab) // batch)
        return [(start, min(steps, start + n)) for start in range(0, steps, n)]

    def sums(self, features: Tensor, target: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        """``(loss, nll_loss, n_correct)`` summed over ``features`` (N, D) with
        targets (N,); differentiable (ordinary autograd mode), block by block.
        ``n_correct`` is 0 unless ``count_correct``."""
        vocab = weight.shape[0]
        a, b = self.weights(vocab)
        rows = self.rows_per_block(vocab)
        total = features.new_zeros(3, dtype=_loss_dtype(features.dtype))
        for s in range(0, features.shape[0], rows):
            lprobs = _logits(features[s : s + rows], weight, bias).log_softmax(-1)
            tgt = target[s : s + rows]
            mask = tgt.ne(self.ignore_index)
            safe = tgt.masked_fill(~mask, 0).unsqueeze(1)
            nll = -(lprobs.gather(1, safe).squeeze(1) * mask).sum()
            smooth = -(lprobs.sum(-1) * mask).sum() if b else nll.new_zeros(())
            correct = (
                (lprobs.argmax(-1).eq(tgt) & mask).sum().to(total.dtype) if self.count_correct else nll.new_zeros(())
            )
            total = total + torch.stack([a * nll + b * smooth, nll, correct])
        return total

    def grads(
        self,
        features: Tensor,
        target: Tensor,
        weight: Tensor,
        bias: Optional[Tensor],
        dsums: Tensor,
        acc: LinearGrads,
    ) -> Tensor:
        """Gradient of ``features`` (N, D) for ``dsums`` (the sums' gradient); the
        output layer's gradients add into ``acc``. The logits are recomputed."""
        vocab = weight.shape[0]
        a, b = self.weights(vocab)
        g_nll = a * dsums[0] + dsums[1]
        g_smooth = b * dsums[0]
        rows = self.rows_per_block(vocab)
        dfeatures = torch.empty_like(features)
        for s in range(0, features.shape[0], rows):
            x, tgt = features[s : s + rows], target[s : s + rows]
            p = _softmax_(_logits_into(acc.slot(x), x, weight, bias))
            mask = tgt.ne(self.ignore_index)
            # d(a nll + b smooth)/dlogits = a (p - onehot) + b (V p - 1), zero for ignored targets
            dlogits = p.mul_(g_nll + g_smooth * vocab).sub_(g_smooth)
            hit = (-g_nll).reshape(1, 1).expand(tgt.shape[0], 1)
            dlogits.scatter_add_(1, tgt.masked_fill(~mask, 0).unsqueeze(1), hit)
            dlogits.mul_(mask.unsqueeze(1))
            dfeatures[s : s + rows] = (dlogits.to(weight.dtype) @ weight).to(features.dtype)
        return dfeatures


class LinearGrads:
    """The output layer's gradients, summed in a wide dtype (float32 for half
    precision). Steps write their logit gradients into one block buffer (about
    ``rows`` rows), and the (V, D) sum is updated once per full block, not once
    per step."""

    def __init__(self, weight: Tensor, bias: Optional[Tensor], rows: int) -> None:
        wide = _loss_dtype(weight.dtype)
        self.dtype, self.rows = weight.dtype, rows
        self.weight = torch.zeros(weight.shape, dtype=wide, device=weight.device)
        self.bias = None if bias is None else torch.zeros(bias.shape, dtype=wide, device=bias.device)
        self.dlogits: Optional[Tensor] = None
        self.inputs: Optional[Tensor] = None
        self.used = 0

    def slot(self, x: Tensor) -> Tensor:
        """Room (N, V) for the logit gradients of inputs ``x`` (N, D), which are kept beside."""
        n = x.shape[0]
        if self.dlogits is None or self.used + n > self.dlogits.shape[0]:
            self.flush()
        if self.dlogits is None or n > self.dlogits.shape[0]:
            size = max(self.rows, n)
            self.dlogits = self.weight.new_empty((size, self.weight.shape[0]))
            self.inputs = self.weight.new_empty((size, self.weight.shape[1]))
        self.inputs[self.used : self.used + n] = x
        self.used += n
        return self.dlogits[self.used - n : self.used]

    def flush(self) -> None:
        if not self.used:
            return
        dlogits, inputs = self.dlogits[: self.used], self.inputs[: self.used]
        self.weight.addmm_(dlogits.t(), inputs)
        if self.bias is not None:
            self.bias.add_(dlogits.sum(0))
        self.used = 0

    def result(self) -> tuple[Tensor, Optional[Tensor]]:
        self.flush()
        self.dlogits = self.inputs = None
        bias = None if self.bias is None else self.bias.to(self.dtype)
        return self.weight.to(self.dtype), bias


class LossBlocks:
    """Forward accumulation: per-step features in, summed loss out, one block of
    steps at a time (:meth:`TokenLoss.blocks`)."""

    def __init__(self, loss: TokenLoss, target: Tensor, weight: Tensor, bias: Optional[Tensor]) -> None:
        self.loss, self.target, self.weight, self.bias = loss, target, weight, bias
        self.bounds = loss.blocks(target.shape[0], weight.shape[0], target.shape[1])
        self.block = 0
        self.pending: list[Tensor] = []
        self.total: Optional[Tensor] = None

    def add(self, t: int, features: Tensor) -> None:
        """Features (B, D) of step ``t``; every step comes, in order."""
        self.pending.append(features)
        start, end = self.bounds[self.block]
        if t + 1 < end:
            return
        self.block += 1
        feats = torch.cat(self.pending) if len(self.pending) > 1 else self.pending[0]
        self.pending = []
        sums = self.loss.sums(feats, self.target[start:end].reshape(-1), self.weight, self.bias)
        self.total = sums if self.total is None else self.total + sums

    def result(self) -> Tensor:
        if self.total is None:
            return self.weight.new_zeros(3, dtype=_loss_dtype(self.weight.dtype))
        return self.total


def _loss_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _logits(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    return F.linear(x, weight, bias).to(_loss_dtype(x.dtype))


def _logits_into(out: Tensor, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """``x W^T + b`` written into ``out`` (computed in the model's dtype, as :func:`_logits`)."""
    if out.dtype != x.dtype:
        return out.copy_(F.linear(x, weight, bias))
    if bias is None:
        return torch.mm(x, weight.t(), out=out)
    return torch.addmm(bias, x, weight.t(), out=out)


def _softmax_(x: Tensor) -> Tensor:
    """Softmax over the last dimension, in place."""
    x.sub_(x.amax(-1, keepdim=True)).exp_()
    return x.div_(x.sum(-1, keepdim=True))
