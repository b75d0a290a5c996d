"""Running a reversible stack over a sequence: exact forward, reverse-mode
backward without stored hidden states, and the ordinary autograd mode.

Layers advance together one time step at a time (layer l at step t reads
layer l-1's output at step t), so the backward can walk time in reverse and,
at each step, undo the layers top-down: each layer's input at step t is the
still-unreversed state of the layer below. The first layer's input
projection ``W_x x_t`` is computed for a chunk of steps in one matrix
multiply, with the same chunk boundaries forward and backward so that the
recomputed gates are bitwise identical. A chunk holds at most ``chunk_size``
steps and about ``CHUNK_ELEMENTS`` projected values, so that large batches
do not turn the chunk (and its gradient) into the step's largest tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import torch

from .buffer import InfoBuffer
from .cells import HalfSpec, HalfState
from .dropout import StackMasks
from .fixed_point import Forgetting, on_grid, to_fixed, to_float
from .halfstep import half_step
from .head import StepHead
from .loss import LinearGrads, LossBlocks
from .memory import MemoryStats, naive_bits

Tensor = torch.Tensor

CHUNK_ELEMENTS = 2**21  # projected inputs per chunk: 8 MB in float32


@dataclass
class StackConfig:
    """Static description of a stack (validated by :class:`ReversibleRNN`)."""

    cell: type
    input_size: int
    hidden_sizes: list[int]
    forgetting: Forgetting
    slice_dim: int = 0
    chunk_size: int = 16

    @property
    def num_layers(self) -> int:
        return len(self.hidden_sizes)

    @property
    def nvars(self) -> int:
        return len(self.cell.state_names)


@dataclass
class StackCall:
    """One call's non-parameter data: inputs provider, masks, padding, head."""

    config: StackConfig
    inputs: object
    masks: StackMasks
    valid: Optional[Tensor]
    return_outputs: bool
    dtype: torch.dtype = torch.float32
    head: Optional[StepHead] = None
    memory: list[MemoryStats] = field(default_factory=list)
    padded: bool = False
    compiled: bool = False

    def __post_init__(self) -> None:
        self.padded = self.padded or self.valid is not None

    def skeleton(self) -> StackCall:
        """This call without any tensor: all the autograd context keeps besides
        what it saves with ``save_for_backward`` (see :meth:`rebind`)."""
        head = None if self.head is None else self.head.bind([None] * len(self.head.tensors()))
        return replace(self, inputs=self.inputs.bind([None] * len(self.inputs.tensors())), valid=None, head=head)

    @property
    def steps(self) -> int:
        return self.inputs.shape[0]

    @property
    def batch(self) -> int:
        return self.inputs.shape[1]

    @property
    def slice_dtype(self) -> torch.dtype:
        return self.dtype if self.dtype in (torch.float32, torch.float64) else torch.float32

    def valid_at(self, t: int) -> tuple[Optional[Tensor], Optional[Tensor]]:
        if self.valid is None:
            return None, None
        v = self.valid[t].unsqueeze(1)
        return v, v.to(self.dtype)

    def chunks(self) -> list[tuple[int, int]]:
        cfg = self.config
        width = cfg.cell.gates_per_unit * cfg.hidden_sizes[0]
        size = max(1, min(cfg.chunk_size, CHUNK_ELEMENTS // (self.batch * width)))
        return [(s, min(self.steps, s + size)) for s in range(0, self.steps, size)]

    def flat_inputs(self, h0: list[list[Tensor]], params: list[Tensor]) -> list[Tensor]:
        """The tensor arguments of :class:`ReversibleStackFunction`, in order."""
        valid = [self.valid] if self.padded else []
        head = [] if self.head is None else self.head.tensors()
        states = [v for layer in h0 for v in layer]
        return [*self.inputs.tensors(), *valid, *states, *params, *head]

    def rebind(self, tensors) -> tuple[StackCall, list[list[Tensor]], list[Tensor]]:
        """Inverse of :meth:`flat_inputs`: a call over ``tensors``, and h0, params."""
        it = iter(tensors)
        take = lambda n: [next(it) for _ in range(n)]  # noqa: E731
        inputs = self.inputs.bind(take(len(self.inputs.tensors())))
        valid = next(it) if self.padded else None
        cfg = self.config
        h0 = [take(cfg.nvars) for _ in range(cfg.num_layers)]
        params = take(4 * cfg.num_layers)
        head = None if self.head is None else self.head.bind(take(len(self.head.tensors())))
        dtype = params[0].dtype
        call = replace(self, inputs=inputs, valid=valid, dtype=dtype, head=head)
        return call, h0, params

    def input_grads(self, dinputs, dh0, dparams, dhead) -> list[Optional[Tensor]]:
        n_in = len(self.inputs.tensors())
        grads = list(dinputs) + [None] * (n_in - len(dinputs))
        grads += [None] if self.padded else []
        return grads + list(dh0) + list(dparams) + list(dhead)


def _split(full: Tensor) -> tuple[Tensor, Tensor]:
    n = full.shape[1] // 2
    return full[:, :n], full[:, n:]


class _Layer:
    """Per-layer state during a run: integer halves, their float ``h`` (graph
    tensors in ordinary mode), buffers and effective hidden-to-hidden weights."""

    def __init__(self, call: StackCall, index: int, params: list[Tensor], graph: bool = False):
        cfg = call.config
        self.cfg, self.index, self.cell, self.graph = cfg, index, cfg.cell, graph
        self.w_ih, self.bias, w1, w2 = params
        self.in_mask, self.out_mask, self.hh_masks = call.masks.layer(index, w1.device, w1.dtype)
        pair = self.hh_masks
        self.w_hh = (w1, w2) if pair is None else (w1 * pair[0], w2 * pair[1])
        self.dtype = call.dtype
        self.top = index == cfg.num_layers - 1
        self.keep = cfg.slice_dim if self.top else 0
        self.G = self.cell.gates_per_unit * cfg.hidden_sizes[index] // 2
        self.kernels = [
            half_step(
                self.cell,
                HalfSpec(cfg.forgetting, call.dtype, self.keep if half == 0 else 0, call.slice_dtype),
                call.compiled,
            )
            for half in (0, 1)
        ]
        # shape (1,), not (): compiled code reads 0-d CPU tensors as Python numbers, a host sync per call
        self.ideal = torch.zeros(1, dtype=torch.float64, device=w1.device)

    def start(self, ints_full: list[Tensor], buffers: Optional[list[HalfState]]) -> None:
        """Set the state: one ``(B, H)`` integer tensor per variable (h[, c]), and
        per half a :class:`HalfState` of :class:`InfoBuffer` (None without forgetting)."""
        halves = [_split(v) for v in ints_full]
        self.ints = [HalfState(*(h[half] for h in halves)) for half in (0, 1)]
        self.hf = [to_float(self.ints[half].h, self.dtype) for half in (0, 1)]
        self.buffers = buffers

    def start_fresh(self, h0: list[Tensor], batch: int) -> None:
        """Start from float initial states, with empty buffers."""
        ints = [to_fixed(v) for v in h0]
        if self.keep:
            ints[0] = torch.cat(
                [on_grid(ints[0][:, : self.keep], self.kernels[0].spec.keep_dtype), ints[0][:, self.keep :]], dim=1
            )
        self.start(ints, self._new_buffers(batch, h0[0].device))
        if self.graph:
            self.gstate = [
                HalfState(
                    *(
                        to_float(v, self.dtype) + _grad_of(_split(v0)[half])
                        for v, v0 in zip(self.ints[half].present(), h0)
                    )
                )
                for half in (0, 1)
            ]
            self.hf = [self.gstate[0].h, self.gstate[1].h]

    def _new_buffers(self, batch: int, device) -> Optional[list[HalfState]]:
        if self.cfg.forgetting.disabled:
            return None
        n = self.cfg.hidden_sizes[self.index] // 2
        growth = self.cfg.forgetting.growth_bits
        return [
            HalfState(
                *(
                    InfoBuffer((batch, n - (self.keep if (half == 0 and v == 0) else 0)), device, growth)
                    for v in range(self.cfg.nvars)
                )
            )
            for half in (0, 1)
        ]

    def all_buffers(self) -> list[InfoBuffer]:
        return [b for half in self.buffers or () for b in half.present()]

    def _buffer_entries(self, half: int, before_step: Optional[int] = None) -> Optional[HalfState]:
        """The entries of a half's buffers, pushing any that could overflow at ``before_step``."""
        if self.buffers is None:
            return None
        bufs = self.buffers[half].present()
        if before_step is None:
            return HalfState(*(b.buf for b in bufs))
        return HalfState(*(b.before_multiply(before_step) for b in bufs))

    def _keep_entries(self, half: int, entries: Optional[HalfState]) -> None:
        if entries is not None:
            for b, e in zip(self.buffers[half].present(), entries.present()):
                b.buf = e

    def masked_input(self, x: Tensor) -> Tensor:
        return x if self.in_mask is None else x * self.in_mask

    def input_projection(self, x: Tensor) -> Tensor:
        """``W_x x + b`` for inputs of shape (..., B, D)."""
        x = self.masked_input(x)
        out = torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.w_ih.t())
        return out.view(*x.shape[:-1], -1)

    def backprop_input(self, dpx: Tensor, x: Tensor, dparams: list[Tensor]) -> Tensor:
        """Accumulate ``W_x``, ``b`` gradients for ``px = W_x x + b``; return dx."""
        xin = self.masked_input(x)
        d2 = dpx.reshape(-1, dpx.shape[-1])
        dparams[0].addmm_(d2.t(), xin.reshape(-1, xin.shape[-1]))
        dparams[1].add_(d2.sum(0))
        dx = (d2 @ self.w_ih).view(*dpx.shape[:-1], -1)
        return self.masked_input(dx)

    def output(self) -> Tensor:
        y = torch.cat(self.hf, dim=1)
        return y if self.out_mask is None else y * self.out_mask

    def kept_slice(self) -> Tensor:
        return self.ints[0].h[:, : self.keep]

    def slice_value(self) -> Tensor:
        """The kept units as stored for attention (graph tensor in ordinary mode)."""
        keep_dtype = self.kernels[0].spec.keep_dtype
        if self.graph:
            return self.hf[0][:, : self.keep].to(keep_dtype)
        return to_float(self.kept_slice(), keep_dtype)

    def step(self, px: Tensor, t: int, valid: Optional[Tensor]) -> None:
        """Advance one time step exactly (and, in graph mode, build its graph)."""
        for half in (0, 1):
            other, kernel = 1 - half, self.kernels[half]
            pxh, w = px[:, half * self.G : (half + 1) * self.G], self.w_hh[half]
            entries = self._buffer_entries(half, before_step=t)
            if self.graph:
                new, entries = self._graph_step(half, pxh, w, entries, valid)
            else:
                new, entries, self.ideal, self.hf[half] = kernel.forward(
                    pxh, self.hf[other], w, self.ints[half], entries, self.ideal, valid
                )
            self._keep_entries(half, entries)
            self.ints[half] = new

    def _graph_step(self, half: int, px: Tensor, w: Tensor, entries, valid):
        """The exact step, with the float update's gradient attached (ordinary mode)."""
        cell, kernel = self.cell, self.kernels[half]
        fg = kernel.spec.forgetting
        G = cell.gates(px, self.hf[1 - half], w, fg)
        with torch.no_grad():
            if kernel.compiled:
                h_o = self.hf[1 - half].detach()
                new, entries, self.ideal, _ = kernel.forward(px, h_o, w, self.ints[half], entries, self.ideal, valid)
            else:
                new, entries, lost = cell.step(G, self.ints[half], entries, kernel.spec, valid)
                self.ideal = self.ideal if lost is None else self.ideal + lost
        exact = HalfState(*(to_float(v, self.dtype) for v in new.present()))
        link = cell.surrogate(G, self.gstate[half], exact, fg)
        if valid is not None:
            link = HalfState(*(torch.where(valid, n, o) for n, o in zip(link.present(), self.gstate[half].present())))
        self.gstate[half] = link
        self.hf[half] = link.h
        return new, entries

    def unstep(self, px: Tensor, t: int, vb, vf, dst, dw, kept_old) -> Optional[Tensor]:
        """Undo step t exactly and, given ``dst``, backpropagate through it.

        ``dst`` holds per half a :class:`HalfState` of gradients w.r.t. the state
        after step t; on return it holds gradients w.r.t. the state before it.
        ``kept_old`` is the top layer's kept slice before the step. Returns the
        gradient w.r.t. ``px`` (None when only reversing).
        """
        dpx = [None, None]
        for half in (1, 0):
            other, kernel = 1 - half, self.kernels[half]
            pxh, w = px[:, half * self.G : (half + 1) * self.G], self.w_hh[half]
            entries = self._buffer_entries(half)
            kept = kept_old if half == 0 else None
            if dst is None:
                old, entries, self.hf[half] = kernel.reverse(pxh, self.hf[other], w, self.ints[half], entries, vb, kept)
            else:
                old, entries, self.hf[half], dst[half], dh_other, dpx[half], hh_inputs = kernel.reverse_grad(
                    pxh,
                    self.hf[other],
                    w,
                    self.ints[half],
                    self.hf[half],
                    entries,
                    vb,
                    vf,
                    kept,
                    dst[half],
                    dst[other].h,
                )
                dst[other] = dst[other]._replace(h=dh_other)
                self.cell.add_weight_grad(dw[half], dpx[half], hh_inputs)
            if entries is not None:
                for b, e in zip(self.buffers[half].present(), entries.present()):
                    b.after_divide(t, e)
            self.ints[half] = old
        return None if dst is None else torch.cat(dpx, dim=1)

    def final_ints(self) -> list[Tensor]:
        return [torch.cat([a, b], dim=1) for a, b in zip(self.ints[0].present(), self.ints[1].present())]

    def final_graph(self) -> list[Tensor]:
        return [torch.cat([a, b], dim=1) for a, b in zip(self.gstate[0].present(), self.gstate[1].present())]

    def memory(self, call: StackCall, reversible: bool, slice_bits: int) -> MemoryStats:
        cfg = self.cfg
        naive = naive_bits(call.steps, call.batch, cfg.hidden_sizes[self.index], cfg.nvars)
        ideal = slice_bits + float(self.ideal)
        if not reversible:
            return MemoryStats(float(naive), float(naive), ideal)
        actual = slice_bits + call.masks.layer_bits(self.index) + sum(b.actual_bits() for b in self.all_buffers())
        if self.index == 0:
            actual += call.inputs.stored_bits()
            if call.valid is not None:
                actual += call.valid.numel() * call.valid.element_size() * 8
        return MemoryStats(float(naive), float(actual), ideal)


def _fresh_layers(call: StackCall, params: list[Tensor], h0, graph: bool = False) -> list[_Layer]:
    """Layers started from float initial states with empty buffers."""
    layers = [_Layer(call, li, params[4 * li : 4 * li + 4], graph) for li in range(call.config.num_layers)]
    for layer, state in zip(layers, h0):
        layer.start_fresh(state, call.batch)
    return layers


def _grad_of(t: Tensor) -> Tensor:
    """Zero with ``t``'s gradient attached: ``exact + _grad_of(sur)`` has the
    exact value and the gradient of ``sur``."""
    return t - t.detach()


def _walk_forward(call: StackCall, layers: list[_Layer], on_step: Callable[[int], None]) -> None:
    for cs, ce in call.chunks():
        px0 = layers[0].input_projection(call.inputs.chunk(cs, ce))
        for t in range(cs, ce):
            vb, _ = call.valid_at(t)
            below = None
            for layer in layers:
                layer.step(px0[t - cs] if below is None else layer.input_projection(below), t, vb)
                below = None if layer.top else layer.output()
            on_step(t)


def _run_and_record(call: StackCall, layers: list[_Layer]) -> tuple[Tensor, Tensor]:
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

    _walk_forward(call, layers, record)
    device = layers[0].w_ih.device
    out = torch.stack(outputs) if outputs else torch.empty((0,), dtype=call.dtype, device=device)
    if blocks is not None:
        out = blocks.result()
    elif head is not None:
        out = head.apply_linear(out)
    sl = torch.stack(slices) if slices else torch.empty((0,), dtype=call.slice_dtype, device=device)
    return out, sl


class _Grads:
    """Running gradients of a reverse walk."""

    def __init__(self, call: StackCall, layers: list[_Layer], params: list[Tensor], grad_finals, needs_head):
        cfg = call.config
        self.state: list[list[HalfState]] = []
        for li in range(len(layers)):
            halves = []
            for v in range(cfg.nvars):
                g = grad_finals[li * cfg.nvars + v]
                if g is None:
                    g = torch.zeros((call.batch, cfg.hidden_sizes[li]), dtype=call.dtype, device=params[0].device)
                halves.append([part.clone() for part in _split(g)])
            self.state.append([HalfState(*(v[half] for v in halves)) for half in (0, 1)])
        # W_x and b accumulate here; the hidden-to-hidden slots are filled from w_eff at the end
        self.params = [torch.zeros_like(p) if i % 4 < 2 else None for i, p in enumerate(params)]
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
            grad_out = torch.zeros((call.steps, call.batch, lin_out), dtype=call.dtype, device=self.params[0].device)
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
        for half, part in enumerate(_split(dy)):
            dst[half] = dst[half]._replace(h=dst[half].h + part)


def _walk_backward(
    call: StackCall,
    layers: list[_Layer],
    kept_at: Callable[[int], Tensor],
    grads: Optional[_Grads] = None,
    grad_out: Optional[Tensor] = None,
    grad_slices: Optional[Tensor] = None,
    on_step: Optional[Callable[[int], None]] = None,
) -> None:
    """Reverse every step from the last; with ``grads``, backpropagate too.

    ``kept_at(t)`` gives the top layer's stored slice before step t.
    """
    top, k = layers[-1], call.config.slice_dim
    for cs, ce in reversed(call.chunks()):
        x = call.inputs.chunk(cs, ce)
        px0 = layers[0].input_projection(x)
        dpx0 = None if grads is None else torch.empty_like(px0)
        for t in reversed(range(cs, ce)):
            vb, vf = call.valid_at(t)
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
                dw = None if grads is None else grads.w_eff[li]
                dpx = layer.unstep(px, t, vb, vf, dst, dw, kept_old if layer.top else None)
                if grads is None:
                    continue
                if below is None:
                    dpx0[t - cs] = dpx
                else:
                    dx = layer.backprop_input(dpx, x_below, grads.params[4 * li : 4 * li + 2])
                    grads.add_output(li - 1, dx, below.out_mask)
            if on_step is not None:
                on_step(t)
        if grads is not None:
            dx = layers[0].backprop_input(dpx0, x, grads.params[0:2])
            call.inputs.accumulate(grads.inputs, cs, ce, dx)


class ReversibleStackFunction(torch.autograd.Function):
    """Sequence-level Function that keeps final states, buffers, slices, masks.

    Inputs: ``(call, *call.flat_inputs(h0, params))``. Outputs: ``(outputs,
    slices, *final_states)`` where ``outputs`` is the head's per-step output,
    or the top layer's output if requested, or a fused head's summed loss,
    else empty. Parameter gradients are returned as the Function's input
    gradients, never accumulated aside.

    Everything the backward uses is saved in one place, the
    ``save_for_backward`` call in :meth:`forward`: the inputs (token ids or
    input tensor, padding mask, initial states, parameters, head tensors), the
    final integer states, the top layer's first kept slice and its slices,
    and the buffers. Besides, the context holds only ``call.skeleton()`` (no
    tensors) and the layout of the saved list.
    """

    @staticmethod
    def forward(ctx, call: StackCall, *tensors: Tensor):
        call, h0, params = call.rebind(tensors)
        layers = _fresh_layers(call, params, h0)
        kept0 = layers[-1].kept_slice().clone()
        out, slices = _run_and_record(call, layers)
        slice_bits = (slices.numel() + kept0.numel()) * slices.element_size() * 8
        call.memory[:] = [layer.memory(call, True, slice_bits if layer.top else 0) for layer in layers]
        final_ints = [v for layer in layers for v in layer.final_ints()]
        buffers = [b for layer in layers for b in layer.all_buffers()]
        ctx.call = call.skeleton()
        ctx.layout = (len(tensors), len(final_ints), [(1 + len(b.stack), list(b.push_steps)) for b in buffers])
        buf_tensors = [t for b in buffers for t in b.tensors()]
        ctx.save_for_backward(*tensors, *final_ints, kept0, slices, *buf_tensors)
        finals = [to_float(v, call.dtype) for v in final_ints]
        return (out, slices, *finals)

    @staticmethod
    def backward(ctx, grad_out: Optional[Tensor], grad_slices: Optional[Tensor], *grad_finals: Optional[Tensor]):
        n_in, n_final, buf_layout = ctx.layout
        saved = ctx.saved_tensors
        call, _, params = ctx.call.rebind(saved[:n_in])
        final_ints = saved[n_in : n_in + n_final]
        kept0, slices = saved[n_in + n_final : n_in + n_final + 2]
        buf_iter = iter(saved[n_in + n_final + 2 :])
        buffers = iter(InfoBuffer.restore([next(buf_iter) for _ in range(n)], steps) for n, steps in buf_layout)
        cfg = call.config
        nv = cfg.nvars
        layers = []
        for li in range(cfg.num_layers):
            layer = _Layer(call, li, params[4 * li : 4 * li + 4])
            bufs = None if cfg.forgetting.disabled else [HalfState(*(next(buffers) for _ in range(nv))) for _ in (0, 1)]
            layer.start(list(final_ints[li * nv : (li + 1) * nv]), bufs)
            layers.append(layer)
        n_head = 0 if call.head is None else len(call.head.tensors())
        grads = _Grads(call, layers, params, grad_finals, ctx.needs_input_grad[1 + n_in - n_head :])
        if call.head is not None:
            grads.start_head(call, grad_out)

        def kept_at(t: int) -> Tensor:
            return kept0 if t == 0 else to_fixed(slices[t - 1])

        _walk_backward(call, layers, kept_at, grads, grad_out, grad_slices)
        for li in range(len(layers)):
            pair = layers[li].hh_masks
            for half in (0, 1):
                g = grads.w_eff[li][half]
                grads.params[4 * li + 2 + half] = g if pair is None else g.mul_(pair[half])
        dh0 = [torch.cat([a, b], dim=1) for halves in grads.state for a, b in zip(*(half.present() for half in halves))]
        dhead = [] if call.head is None else grads.finish_head(call)
        return (None, *call.input_grads(grads.inputs, dh0, grads.params, dhead))


@dataclass
class ExactState:
    """A stack's exact state between calls, for step-by-step decoding: integer
    states per layer and variable, and the buffers (their remainders feed back
    into the states, so carrying them keeps values identical to a full pass)."""

    ints: list[list[Tensor]]
    buffers: list[Optional[list[HalfState]]]

    def index_select(self, order: Tensor) -> ExactState:
        ints = [[v.index_select(0, order) for v in layer] for layer in self.ints]
        buffers = [
            None if bufs is None else [HalfState(*(b.index_select(order) for b in half.present())) for half in bufs]
            for bufs in self.buffers
        ]
        return ExactState(ints, buffers)


def advance(call: StackCall, params: list[Tensor], h0=None, state: Optional[ExactState] = None):
    """Run forward without autograd from float ``h0`` or an :class:`ExactState`;
    return the top layer's outputs (T, B, H) and the new exact state."""
    with torch.no_grad():
        if state is None:
            layers = _fresh_layers(call, params, h0)
        else:
            layers = [_Layer(call, li, params[4 * li : 4 * li + 4]) for li in range(call.config.num_layers)]
            for layer, ints, bufs in zip(layers, state.ints, state.buffers):
                layer.start(
                    list(ints),
                    None if bufs is None else [HalfState(*(b.copy() for b in half.present())) for half in bufs],
                )
        top, outputs = layers[-1], []
        _walk_forward(call, layers, lambda t: outputs.append(top.output()))
        new_state = ExactState([layer.final_ints() for layer in layers], [layer.buffers for layer in layers])
    return torch.stack(outputs), new_state


def run_ordinary(call: StackCall, h0: list[list[Tensor]], params: list[Tensor]):
    """The same cells and the same exact values, with every step kept by autograd.

    Each state is the exact fixed-point value with the float update's gradient
    attached (``exact + (sur - sur.detach())``), so values match the
    reversible mode bit for bit and gradients flow as through the float cell.
    """
    layers = _fresh_layers(call, params, h0, graph=True)
    out, slices = _run_and_record(call, layers)
    slice_bits = slices.numel() * torch.finfo(slices.dtype).bits
    call.memory[:] = [layer.memory(call, False, slice_bits if layer.top else 0) for layer in layers]
    return (out, slices, *(v for layer in layers for v in layer.final_graph()))


def trace_exact(call: StackCall, h0: list[list[Tensor]], params: list[Tensor]):
    """Exact states before every step, forward and as recovered by reversal.

    Returns ``(forward, recovered, pushes)``: ``forward[t]`` and
    ``recovered[t]`` list the integer states (all layers and variables)
    before step t (index T: after the last step); ``pushes`` counts buffer
    overflows. For tests and diagnostics; runs without autograd.
    """
    with torch.no_grad():
        layers = _fresh_layers(call, params, h0)
        top = layers[-1]

        def snapshot() -> list[Tensor]:
            return [v.clone() for layer in layers for v in layer.final_ints()]

        forward, kept = [snapshot()], [top.kept_slice().clone()]

        def record(t: int) -> None:
            forward.append(snapshot())
            kept.append(top.kept_slice().clone())

        _walk_forward(call, layers, record)
        pushes = sum(len(b.push_steps) for layer in layers for b in layer.all_buffers())
        recovered = [snapshot()]
        _walk_backward(call, layers, kept.__getitem__, on_step=lambda t: recovered.append(snapshot()))
    return forward, recovered[::-1], pushes
