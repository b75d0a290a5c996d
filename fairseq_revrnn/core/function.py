"""The sequence-level autograd Function of the reversible mode."""

from __future__ import annotations

from typing import Optional

import torch

from .buffer import InfoBuffer
from .call import FlatLayout, StackCall, per_layer
from .cells import HalfState
from .fixed_point import to_fixed, to_float
from .layer import Layer, fresh_layers, stack_memory
from .walks import Grads, run_and_record, walk_backward

Tensor = torch.Tensor


class ReversibleStackFunction(torch.autograd.Function):
    """Sequence-level Function that keeps final states, buffers, slices, masks.

    Inputs: ``(call, *call.flat_inputs(h0, params))``. Outputs: ``(outputs,
    slices, memory, *final_states)`` where ``memory`` lists each layer's
    :class:`MemoryStats` (not a tensor: no gradient) and ``outputs`` is the head's per-step output,
    or the top layer's output if requested, or a fused head's summed loss,
    else empty. Parameter gradients are returned as the Function's input
    gradients, never accumulated aside.

    Everything the backward uses is saved in one place, the
    ``save_for_backward`` call in :meth:`forward`: the inputs (token ids or
    input tensor, padding mask, initial states, parameters, head tensors), the
    final integer states, the top layer's first kept slice and its slices,
    and the buffers. Besides, the context holds only ``call.skeleton()`` (no
    tensors), the :class:`FlatLayout` of the saved list and each buffer's
    push steps.
    """

    @staticmethod
    def forward(ctx, call: StackCall, *tensors: Tensor):
        call, h0, params = call.rebind(tensors)
        layers = fresh_layers(call, params, h0)
        kept0 = layers[-1].kept_slice().clone()
        out, slices = run_and_record(call, layers)
        slice_bits = (slices.numel() + kept0.numel()) * slices.element_size() * 8
        memory = stack_memory(call, layers, slice_bits)
        final_ints = [v for layer in layers for v in layer.final_ints()]
        buffers = [b for layer in layers for b in layer.all_buffers()]
        ctx.call = call.skeleton()
        ctx.buffers = [(1 + len(b.stack), list(b.push_steps)) for b in buffers]
        buf_tensors = [t for b in buffers for t in b.tensors()]
        ctx.saved = FlatLayout(inputs=len(tensors), finals=len(final_ints), kept0=1, slices=1, buffers=len(buf_tensors))
        ctx.save_for_backward(
            *ctx.saved.pack(inputs=tensors, finals=final_ints, kept0=[kept0], slices=[slices], buffers=buf_tensors)
        )
        finals = [to_float(v, call.dtype, call.config.hidden_radix) for v in final_ints]
        return (out, slices, memory, *finals)

    @staticmethod
    def backward(ctx, grad_out: Optional[Tensor], grad_slices: Optional[Tensor], _memory: None, *grad_finals):
        saved = ctx.saved.unpack(ctx.saved_tensors)
        call, _, params = ctx.call.rebind(saved["inputs"])
        (kept0,), (slices,) = saved["kept0"], saved["slices"]
        buf_iter = iter(saved["buffers"])
        radix = call.config.forgetting.radix
        buffers = iter(
            InfoBuffer.restore([next(buf_iter) for _ in range(n)], steps, radix=radix) for n, steps in ctx.buffers
        )
        cfg = call.config
        nv = cfg.nvars
        layers = []
        for li, ints in enumerate(per_layer(saved["finals"], cfg.num_layers)):
            layer = Layer(call, li, params[li])
            bufs = None if cfg.forgetting.disabled else [HalfState(*(next(buffers) for _ in range(nv))) for _ in (0, 1)]
            layer.start(ints, bufs)
            layers.append(layer)
        needs_head = call.layout().unpack(ctx.needs_input_grad[1:])["head"]
        grads = Grads(call, layers, params, grad_finals, needs_head)
        if call.head is not None:
            grads.start_head(call, grad_out)

        def kept_at(t: int) -> Tensor:
            return kept0 if t == 0 else to_fixed(slices[t - 1], cfg.hidden_radix)

        walk_backward(call, layers, kept_at, grads, grad_out, grad_slices)
        for li, layer in enumerate(layers):
            pair = layer.hh_masks
            w1, w2 = (g if pair is None else g.mul_(m) for g, m in zip(grads.w_eff[li], pair or (None, None)))
            grads.params[li] = grads.params[li]._replace(weight_hh1=w1, weight_hh2=w2)
        dh0 = [torch.cat([a, b], dim=1) for halves in grads.state for a, b in zip(*(half.present() for half in halves))]
        dhead = [] if call.head is None else grads.finish_head(call)
        return (None, *call.input_grads(grads.inputs, dh0, grads.params, dhead))
