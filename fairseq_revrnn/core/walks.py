"""Walks over time: the exact forward (recording per-step outputs, slices or a
fused loss) and the reverse walk that undoes every step from the last and,
with :class:`Grads`, backpropagates through it.

Layers advance together one time step at a time (layer l at step t reads
layer l-1's output at step t), so the backward can walk time in reverse and,
at each step, undo the layers top-down: each layer's input at step t is the
still-unreversed state of the layer below.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from .buffer import make_room, overflow_plan
from .call import LayerParams, StackCall
from .cells import HalfState
from .layer import Layer, split_halves
from .loss import LinearGrads, LossBlocks

Tensor = torch.Tensor


def walk_forward(call: StackCall, layers: list[Layer], on_step: Callable[[int], None]) -> None:
    buffers = [b for layer in layers for b in layer.all_buffers()]
    plan = overflow_plan(call.config.overflow, call.config.forgetting.growth_bits, layers[0].w_ih.device)
    for cs, ce in call.chunks():
        for layer in layers:
            layer.begin_chunk(cs, ce)
        px0 = layers[0].input_projection(call.inputs.chunk(cs, ce))
        for t in range(cs, ce):
            if buffers and t % plan.steps == 0:
                make_room(buffers, t, plan.steps, plan.read)
            step = call.step(t)
            below = None
            for layer in layers:
                layer.step(px0[t - cs] if below is None else layer.input_projection(below), step)
                below = None if layer.top else layer.output()
            on_step(t)


def run_and_record(call: StackCall, layers: list[Layer]) -> tuple[Tensor, Tensor]:
    """Walk forward; return per-step outputs (head's, top layer's or empty),
    or the summed loss of a fused head, and slices."""
    top, k = layers[-1], call.config.slice_dim
    outputs, slices = [], []
    head = call.head
    blocks = LossBlocks(head.loss, head.target(), *head.linear()) if head is not None and head.fused else None

    def record(t: int) -> None:
        if blocks is not None:
            blocks.add(t, head.forward_step(top.output(), t))
        elif head is not None:
            outputs.append(head.forward_step(top.output(), t))
        elif call.return_outputs:
            outputs.append(top.output())
        if k:
            slices.append(top.slice_value())

    walk_forward(call, layers, record)
    device = layers[0].w_ih.device
    out = torch.stack(outputs) if outputs else torch.empty((0,), dtype=call.dtype, device=device)
    if blocks is not None:
        out = blocks.result()
    elif head is not None:
        out = head.apply_linear(out)
    sl = torch.stack(slices) if slices else torch.empty((0,), dtype=call.slice_dtype, device=device)
    return out, sl


class Grads:
    """Running gradients of a reverse walk."""

    def __init__(self, call: StackCall, layers: list[Layer], params: list[LayerParams], grad_finals, needs_head):
        cfg = call.config
        self.device = layers[0].w_ih.device
        self.state: list[list[HalfState]] = []
        for li in range(len(layers)):
            halves = []
            for v in range(cfg.nvars):
                g = grad_finals[li * cfg.nvars + v]
                if g is None:
                    g = torch.zeros((call.batch, cfg.hidden_sizes[li]), dtype=call.dtype, device=self.device)
                halves.append([part.clone() for part in split_halves(g)])
            self.state.append([HalfState(*(v[half] for v in halves)) for half in (0, 1)])
        # W_x and b accumulate here; the hidden-to-hidden ones in w_eff, moved here at the end
        self.params = [LayerParams(torch.zeros_like(p.weight_ih), torch.zeros_like(p.bias), None, None) for p in params]
        self.w_eff = [[torch.zeros_like(w) for w in layer.w_hh] for layer in layers]
        self.inputs = call.inputs.grad_buffers()
        self.head_out = self.head_features = self.loss_linear = None
        if call.head is not None:
            call.head.begin_backward(needs_head)

    def start_head(self, call: StackCall, grad_out: Optional[Tensor]) -> None:
        """Gradients w.r.t. the head's per-step outputs, through its final linear
        layer for all steps at once; room to recompute the steps' features.
        A fused head's loss is differentiated step by step instead (:meth:`loss_step`)."""
        head = call.head
        lin = head.linear()
        if head.fused:
            self.loss_linear = LinearGrads(*lin, head.loss.rows_per_block(lin[0].shape[0]))
            self.grad_out = torch.zeros(3, device=lin[0].device) if grad_out is None else grad_out
            return
        if grad_out is None:
            lin_out = lin[0].shape[0] if lin is not None else 0
            grad_out = torch.zeros((call.steps, call.batch, lin_out), dtype=call.dtype, device=self.device)
        self.grad_out = grad_out
        self.head_out = grad_out if lin is None else grad_out @ lin[0]
        if lin is not None:
            self.head_features = torch.empty_like(self.head_out)

    def loss_step(self, call: StackCall, t: int) -> Callable[[Tensor], Tensor]:
        """The gradient of a fused head's step-t output, as a function of that output."""
        head = call.head
        target = head.target()[t]
        return lambda features: head.loss.grads(features, target, *head.linear(), self.grad_out, self.loss_linear)

    def finish_head(self, call: StackCall) -> list[Optional[Tensor]]:
        grads = call.head.end_backward()
        if self.loss_linear is None and self.head_features is None:
            return grads
        w, b = call.head.linear_slots
        if self.loss_linear is not None:
            grads[w], db = self.loss_linear.result()
        else:
            g = self.grad_out.reshape(-1, self.grad_out.shape[-1])
            grads[w] = g.t() @ self.head_features.reshape(-1, self.head_features.shape[-1])
            db = g.sum(0)
        if b is not None:
            grads[b] = db
        return grads

    def add_output(self, layer_index: int, dy: Tensor, out_mask: Optional[Tensor]) -> None:
        if out_mask is not None:
            dy = dy * out_mask
        dst = self.state[layer_index]
        for half, part in enumerate(split_halves(dy)):
            dst[half] = dst[half]._replace(h=dst[half].h + part)


def walk_backward(
    call: StackCall,
    layers: list[Layer],
    kept_at: Callable[[int], Tensor],
    grads: Optional[Grads] = None,
    grad_out: Optional[Tensor] = None,
    grad_slices: Optional[Tensor] = None,
    on_step: Optional[Callable[[int], None]] = None,
) -> None:
    """Reverse every step from the last; with ``grads``, backpropagate too.

    ``kept_at(t)`` gives the top layer's stored slice before step t.
    """
    top, k = layers[-1], call.config.slice_dim
    for cs, ce in reversed(call.chunks()):
        for layer in layers:
            layer.begin_chunk(cs, ce)
        x = call.inputs.chunk(cs, ce)
        px0 = layers[0].input_projection(x)
        dpx0 = None if grads is None else torch.empty_like(px0)
        for t in reversed(range(cs, ce)):
            step = call.step(t)
            if grads is not None:
                if grads.loss_linear is not None:
                    dy, _ = call.head.backward_step(top.output(), t, grads.loss_step(call, t))
                    grads.add_output(top.index, dy, top.out_mask)
                elif call.head is not None:
                    dy, features = call.head.backward_step(top.output(), t, grads.head_out[t])
                    if grads.head_features is not None:
                        grads.head_features[t] = features
                    grads.add_output(top.index, dy, top.out_mask)
                elif grad_out is not None and grad_out.numel():
                    grads.add_output(top.index, grad_out[t], top.out_mask)
                if k and grad_slices is not None:
                    grads.state[-1][0].h[:, :k] += grad_slices[t]
            kept_old = kept_at(t) if k else None
            for layer in reversed(layers):
                li = layer.index
                below = layers[li - 1] if li else None
                x_below = None if below is None else below.output()
                px = px0[t - cs] if below is None else layer.input_projection(x_below)
                dst = None if grads is None else grads.state[li]
                dpx = layer.unstep(px, step, dst, kept_old if layer.top else None)
                if grads is None:
                    continue
                if below is None:
                    dpx0[t - cs] = dpx
                else:
                    dx = layer.backprop_input(dpx, x_below)
                    grads.add_output(li - 1, dx, below.out_mask)
            if on_step is not None:
                on_step(t)
        if grads is not None:
            dx = layers[0].backprop_input(dpx0, x)
            call.inputs.accumulate(grads.inputs, cs, ce, dx)
            for layer in layers:
                li = layer.index
                layer.add_weight_grads(grads.w_eff[li], grads.params[li])
