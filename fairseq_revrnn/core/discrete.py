"""Discrete forgetting (appendix D): a forget value is ``2**-k`` with ``k`` in
``0..F`` chosen per unit and step, so multiplying by it shifts off exactly k
bits into the buffer (:func:`.buffer.multiply` with ``z* = 2**(RZ - k)``).

A forget gate has ``F + 1`` scores per unit, laid out category-major (the
columns of category j for all units, then j + 1). While training, k is a
sample: ``argmax(scores + Gumbel noise)``, an exact draw from
``softmax(scores)`` (the noise is regenerated for the reverse, :mod:`.noise`).
The forward uses the hard value; gradients are those of a soft value
``sum_j s_j 2**-j`` (straight-through): ``s = softmax((scores + noise) / tau)``
for the Gumbel-softmax estimator (the paper's choice), ``softmax(scores)`` for
the categorical one. In evaluation k is the most likely category. The paper
puts a ReLU before the softmax; here the scores are linear, since a ReLU only
leaves units whose scores are all negative without gradient.
"""

from __future__ import annotations

from typing import Optional

import torch

Tensor = torch.Tensor

ESTIMATORS = ("gumbel", "categorical")


def _values(categories: int, like: Tensor) -> Tensor:
    """``2**-j`` for the categories, shaped to broadcast over (B, categories, n)."""
    return torch.exp2(-torch.arange(categories, dtype=like.dtype, device=like.device)).view(1, -1, 1)


def discrete_forget(
    scores: Tensor, noise: Optional[Tensor], categories: int, estimator: str, tau: float
) -> tuple[Tensor, Tensor]:
    """From scores (B, categories * n): the soft probabilities (B, categories, n)
    and the forget value (B, n), ``2**-k`` in value with the soft value's gradient."""
    logits = scores.view(scores.shape[0], categories, -1)
    noisy = logits if noise is None else logits + noise.view(logits.shape)
    k = noisy.argmax(dim=1)
    hard = torch.exp2(-k.to(scores.dtype))
    if estimator == "gumbel" and noise is not None:
        soft = torch.softmax(noisy / tau, dim=1)
    else:
        soft = torch.softmax(logits, dim=1)
    value = (soft * _values(categories, scores)).sum(dim=1)
    return soft, hard + (value - value.detach())


def discrete_forget_grad(dz: Tensor, soft: Tensor, scale: float) -> Tensor:
    """Gradient w.r.t. the scores (B, categories * n) from the gradient ``dz``
    w.r.t. the forget value: ``dz * s_j (2**-j - sum_i s_i 2**-i) * scale``,
    with ``scale`` 1/tau for the Gumbel-softmax estimator, 1 for the categorical."""
    v = _values(soft.shape[1], soft)
    mean = (soft * v).sum(dim=1, keepdim=True)
    return (dz.unsqueeze(1) * scale * soft * (v - mean)).flatten(1)
