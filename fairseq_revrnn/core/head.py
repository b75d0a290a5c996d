"""Per-step heads that run inside the reversible Function.

Whatever consumes the top layer's output at every step (attention, the output
projection) would otherwise keep that output for its own backward: T x B x H
again. A :class:`StepHead` runs inside the Function instead: the forward
applies it step by step and returns only its outputs; the backward recomputes
it at step t from the reconstructed state, so only what the head itself was
given (e.g. attention slices, token ids) is kept.

Subclasses define ``precompute`` (per-sequence work such as attention annotations,
differentiable in the head's tensors) and ``step``. The plumbing here turns
them into per-step gradients with ordinary autograd. A head whose last
operation is a linear layer (the output projection) names its weight and
bias in ``linear_slots``: the engine then applies that layer, and its
gradients, to all steps in one matrix multiply instead of step by step. With
a :class:`~.loss.TokenLoss` and targets (``target_slot``), the head's output
is instead the summed loss: the linear layer and the loss run block by block
(see :mod:`.loss`), and nothing of vocabulary size is kept.
"""

from __future__ import annotations

import copy
from typing import Callable, Optional, Sequence, Union

import torch

from .loss import TokenLoss

Tensor = torch.Tensor


class StepHead:
    """Base class: ``tensors`` are the head's inputs (parameters, context)."""

    linear_slots: Optional[tuple[int, Optional[int]]] = None
    target_slot: Optional[int] = None

    def __init__(self, tensors: Sequence[Tensor], loss: Optional[TokenLoss] = None) -> None:
        self._tensors = list(tensors)
        self.loss = loss
        self._pre: Optional[tuple] = None
        self._bw = None

    @property
    def fused(self) -> bool:
        """Whether the head's output is the summed loss (see :mod:`.loss`)."""
        return self.loss is not None

    def target(self) -> Tensor:
        """The loss's targets (T, B)."""
        return self._tensors[self.target_slot]

    def linear(self) -> Optional[tuple[Tensor, Optional[Tensor]]]:
        """Weight and bias of the final linear layer the engine applies, if any."""
        if self.linear_slots is None:
            return None
        w, b = self.linear_slots
        return self._tensors[w], None if b is None else self._tensors[b]

    def apply_linear(self, features: Tensor) -> Tensor:
        """The head's full output from the per-step ``step`` outputs (..., D)."""
        lin = self.linear()
        if lin is None:
            return features
        out = features @ lin[0].t()
        return out if lin[1] is None else out + lin[1]

    def tensors(self) -> list[Tensor]:
        return self._tensors

    def bind(self, tensors: Sequence[Tensor]) -> StepHead:
        clone = copy.copy(self)
        clone._tensors = list(tensors)
        clone._pre = clone._bw = None
        return clone

    def precompute(self, *tensors: Tensor) -> tuple:
        """Per-sequence values the steps need (differentiable). Default: the tensors."""
        return tensors

    def step(self, y: Tensor, pre: tuple, t: int) -> Tensor:
        """The head's output at step t from the top layer's output ``y`` (B, H)."""
        raise NotImplementedError

    def forward_step(self, y: Tensor, t: int) -> Tensor:
        if self._pre is None:
            self._pre = self.precompute(*self._tensors)
        return self.step(y, self._pre, t)

    def begin_backward(self, needs_grad: Sequence[bool]) -> None:
        leaves = [
            t.detach().requires_grad_() if need and t.is_floating_point() else t.detach()
            for t, need in zip(self._tensors, needs_grad)
        ]
        with torch.enable_grad():
            pre = self.precompute(*leaves)
        pre_leaves = [p.detach().requires_grad_() if _wants(p) else p for p in pre]
        self._bw = (leaves, pre, pre_leaves, [None] * len(pre))

    def backward_step(
        self, y: Tensor, t: int, dout: Union[Tensor, Callable[[Tensor], Tensor]]
    ) -> tuple[Tensor, Tensor]:
        """Gradient w.r.t. ``y`` and the recomputed step output; gradients of
        the head's own inputs accumulate. ``dout`` is the output's gradient,
        or a function of the recomputed output that gives it."""
        _, _, pre_leaves, acc = self._bw
        idx = [i for i, p in enumerate(pre_leaves) if _wants(p)]
        with torch.enable_grad():
            y_leaf = y.detach().requires_grad_()
            out = self.step(y_leaf, tuple(pre_leaves), t)
        if callable(dout):
            with torch.no_grad():
                dout = dout(out.detach())
        grads = torch.autograd.grad(out, [y_leaf] + [pre_leaves[i] for i in idx], dout, allow_unused=True)
        for i, g in zip(idx, grads[1:]):
            if g is not None:
                acc[i] = g if acc[i] is None else acc[i].add_(g)
        return grads[0], out.detach()

    def end_backward(self) -> list[Optional[Tensor]]:
        """Gradients for ``tensors()`` (None where not needed)."""
        leaves, pre, _, acc = self._bw
        self._bw = None
        outs = [(p, g) for p, g in zip(pre, acc) if g is not None and p.requires_grad]
        wanted = [i for i, leaf in enumerate(leaves) if leaf.requires_grad]
        result: list[Optional[Tensor]] = [None] * len(leaves)
        if outs and wanted:
            grads = torch.autograd.grad(
                [p for p, _ in outs], [leaves[i] for i in wanted], [g for _, g in outs], allow_unused=True
            )
            for i, g in zip(wanted, grads):
                result[i] = g
        return result


def _wants(t) -> bool:
    return isinstance(t, Tensor) and t.requires_grad
