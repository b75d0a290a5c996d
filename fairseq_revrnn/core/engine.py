"""Running a reversible stack over a sequence: exact forward, reverse-mode
backward without stored hidden states, and the ordinary autograd mode.

Layers advance together one time step at a time (layer l at step t reads
layer l-1's output at step t), so the backward can walk time in reverse and,
at each step, undo the layers top-down: each layer's input at step t is the
still-unreversed state of the layer below. The first layer's input
projection ``W_x x_t`` is computed for a chunk of steps in one matrix
multiply, with the same chunk boundaries forward and backward so that the
recomputed gates are bitwise identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from .buffer import InfoBuffer
from .cells import Updater
from .dropout import StackMasks
from .fixed_point import Forgetting, to_fixed, to_float
from .memory import MemoryStats, naive_bits

Tensor = torch.Tensor


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
    """One call's non-parameter data: inputs provider, masks, padding."""

    config: StackConfig
    inputs: object
    masks: StackMasks
    valid: Optional[Tensor]
    return_outputs: bool
    dtype: torch.dtype = torch.float32
    memory: list[MemoryStats] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return self.inputs.shape[0]

    @property
    def batch(self) -> int:
        return self.inputs.shape[1]

    def valid_at(self, t: int) -> tuple[Optional[Tensor], Optional[Tensor]]:
        if self.valid is None:
            return None, None
        v = self.valid[t].unsqueeze(1)
        return v, v.to(self.dtype)

    def slice_dtype(self, dtype: torch.dtype) -> torch.dtype:
        return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _split(full: Tensor) -> tuple[Tensor, Tensor]:
    n = full.shape[1] // 2
    return full[:, :n], full[:, n:]


class _Layer:
    """Mutable per-layer state during a run: integer halves, their float views,
    buffers and effective hidden-to-hidden weights."""

    def __init__(self, cfg: StackConfig, index: int, params: list[Tensor], masks: StackMasks, dtype):
        self.cfg = cfg
        self.index = index
        self.cell = cfg.cell
        self.w_ih, self.bias, w1, w2 = params
        pair = masks.hidden[index]
        self.w_hh = (w1, w2) if pair is None else (w1 * pair[0], w2 * pair[1])
        self.in_mask = masks.inputs[index]
        self.out_mask = masks.outputs[index]
        self.dtype = dtype
        self.top = index == cfg.num_layers - 1
        self.keep = cfg.slice_dim if self.top else 0
        self.G = self.cell.gates_per_unit * cfg.hidden_sizes[index] // 2

    def init_state(self, ints_full: list[Tensor], buffers: Optional[list[list[InfoBuffer]]], keep_dtype) -> None:
        """``ints_full``: one ``(B, H)`` integer tensor per state variable (h[, c])."""
        halves = [_split(v) for v in ints_full]
        self.ints = [[h[0] for h in halves], [h[1] for h in halves]]
        self.hf = [to_float(self.ints[0][0], self.dtype), to_float(self.ints[1][0], self.dtype)]
        self.ups = [
            [
                Updater(None if buffers is None else buffers[half][v], self.keep if (half == 0 and v == 0) else 0, keep_dtype)
                for v in range(self.cfg.nvars)
            ]
            for half in (0, 1)
        ]

    def masked_input(self, x: Tensor) -> Tensor:
        return x if self.in_mask is None else x * self.in_mask

    def input_projection(self, x: Tensor) -> Tensor:
        """``W_x x + b`` for inputs of shape (..., B, D)."""
        x = self.masked_input(x)
        out = torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.w_ih.t())
        return out.view(*x.shape[:-1], -1)

    def output(self) -> Tensor:
        y = torch.cat(self.hf, dim=1)
        return y if self.out_mask is None else y * self.out_mask

    def step(self, px: Tensor, t: int, valid) -> None:
        cell, fg = self.cell, self.cfg.forgetting
        for half in (0, 1):
            G = cell.gates(px[:, half * self.G : (half + 1) * self.G], self.hf[1 - half], self.w_hh[half], fg)
            self.ints[half] = cell.step(G, self.ints[half], self.ups[half], fg, t, valid, self.dtype)
            self.hf[half] = to_float(self.ints[half][0], self.dtype)

    def ints_full(self) -> list[Tensor]:
        return [torch.cat([self.ints[0][v], self.ints[1][v]], dim=1) for v in range(self.cfg.nvars)]


def _init_ints(h0: list[Tensor], keep: int, keep_dtype) -> list[Tensor]:
    ints = [to_fixed(v) for v in h0]
    if keep:
        ints[0] = torch.cat([to_fixed(to_float(ints[0][:, :keep], keep_dtype)), ints[0][:, keep:]], dim=1)
    return ints


def _layer_memory(call: StackCall, layer: _Layer, buffers, slice_bits: int) -> MemoryStats:
    cfg = call.config
    naive = naive_bits(call.steps, call.batch, cfg.hidden_sizes[layer.index], cfg.nvars)
    actual = slice_bits + call.masks.layer_bits(layer.index)
    ideal = slice_bits
    if buffers is not None:
        flat = [b for half in buffers for b in half]
        actual += sum(b.actual_bits() for b in flat)
        ideal += float(sum(b.ideal_bits for b in flat))
    if layer.index == 0:
        actual += call.inputs.stored_bits()
        if call.valid is not None:
            actual += call.valid.numel() * call.valid.element_size() * 8
    return MemoryStats(float(naive), float(actual), ideal)


def _make_buffers(cfg: StackConfig, index: int, batch: int, device) -> Optional[list[list[InfoBuffer]]]:
    if cfg.forgetting.disabled:
        return None
    n = cfg.hidden_sizes[index] // 2
    keep = cfg.slice_dim if index == cfg.num_layers - 1 else 0
    return [
        [InfoBuffer((batch, n - (keep if (half == 0 and v == 0) else 0)), device) for v in range(cfg.nvars)]
        for half in (0, 1)
    ]


class ReversibleStackFunction(torch.autograd.Function):
    """Sequence-level Function: keeps final states, buffers, slices and masks only.

    Inputs: ``(call, *input_tensors, *mask_tensors, [valid], *h0, *params)``.
    Outputs: ``(outputs, slices, *final_states)``; ``outputs`` is empty unless
    requested. Parameter gradients are returned, never accumulated on the side.
    """

    @staticmethod
    def forward(ctx, call: StackCall, *tensors: Tensor):
        cfg = call.config
        unpacked = _unpack(call, tensors)
        inputs, masks, valid, h0, params = unpacked
        dtype = params[0].dtype
        call = StackCall(cfg, inputs, masks, valid, call.return_outputs, dtype, call.memory)
        T, B = call.steps, call.batch
        L, k = cfg.num_layers, cfg.slice_dim
        sdt = call.slice_dtype(dtype)
        device = params[0].device
        layers, buffers = [], []
        for li in range(L):
            layer = _Layer(cfg, li, params[4 * li : 4 * li + 4], masks, dtype)
            bufs = _make_buffers(cfg, li, B, device)
            layer.init_state(_init_ints(h0[li], layer.keep, sdt), bufs, sdt)
            layers.append(layer)
            buffers.append(bufs)
        top = layers[-1]
        H = cfg.hidden_sizes[-1]
        outputs = torch.empty((T, B, H) if call.return_outputs else (0,), dtype=dtype, device=device)
        slices = torch.empty((T, B, k) if k else (0,), dtype=sdt, device=device)
        kept0 = top.ints[0][0][:, :k].clone()
        for cs in range(0, T, cfg.chunk_size):
            ce = min(T, cs + cfg.chunk_size)
            x = inputs.chunk(cs, ce)
            px0 = layers[0].input_projection(x)
            for t in range(cs, ce):
                vb, _ = call.valid_at(t)
                below = None
                for layer in layers:
                    px = px0[t - cs] if below is None else layer.input_projection(below)
                    layer.step(px, t, vb)
                    if not layer.top:
                        below = layer.output()
                if call.return_outputs:
                    outputs[t] = top.output()
                if k:
                    slices[t] = to_float(top.ints[0][0][:, :k], sdt)
        slice_bits = (slices.numel() + kept0.numel()) * slices.element_size() * 8
        call.memory[:] = [
            _layer_memory(call, layer, bufs, slice_bits if layer.top else 0) for layer, bufs in zip(layers, buffers)
        ]
        finals = [to_float(v, dtype) for layer in layers for v in layer.ints_full()]
        final_ints = [v for layer in layers for v in layer.ints_full()]
        buf_tensors, buf_layout = [], []
        for bufs in buffers:
            for half in bufs or ():
                for b in half:
                    ts = b.tensors()
                    buf_layout.append((len(ts), list(b.push_steps)))
                    buf_tensors.extend(ts)
        ctx.call = call
        ctx.buf_layout = buf_layout
        ctx.n_final = len(final_ints)
        ctx.n_inputs = len(tensors)
        ctx.save_for_backward(*tensors, *final_ints, kept0, slices, *buf_tensors)
        return (outputs, slices, *finals)

    @staticmethod
    def backward(ctx, grad_outputs: Optional[Tensor], grad_slices: Optional[Tensor], *grad_finals: Optional[Tensor]):
        saved = ctx.saved_tensors
        n_in = ctx.n_inputs
        call0: StackCall = ctx.call
        cfg = call0.config
        tensors = saved[:n_in]
        final_ints = list(saved[n_in : n_in + ctx.n_final])
        kept0, slices = saved[n_in + ctx.n_final], saved[n_in + ctx.n_final + 1]
        buf_tensors = list(saved[n_in + ctx.n_final + 2 :])
        inputs, masks, valid, h0, params = _unpack(call0, tensors)
        dtype = params[0].dtype
        call = StackCall(cfg, inputs, masks, valid, call0.return_outputs, dtype)
        T, B = call.steps, call.batch
        L, k, nv = cfg.num_layers, cfg.slice_dim, cfg.nvars
        sdt = slices.dtype if k else call.slice_dtype(dtype)
        layers = []
        pos = 0
        lay_pos = 0
        for li in range(L):
            layer = _Layer(cfg, li, params[4 * li : 4 * li + 4], masks, dtype)
            bufs = None
            if not cfg.forgetting.disabled:
                bufs = []
                for half in (0, 1):
                    row = []
                    for _ in range(nv):
                        count, steps = ctx.buf_layout[lay_pos]
                        row.append(InfoBuffer.restore(buf_tensors[pos : pos + count], steps))
                        pos += count
                        lay_pos += 1
                    bufs.append(row)
            layer.init_state(final_ints[li * nv : (li + 1) * nv], bufs, sdt)
            layers.append(layer)
        top = layers[-1]

        # Running gradients w.r.t. each layer's current state, per half and variable.
        dstate = []
        for li, layer in enumerate(layers):
            halves = [[], []]
            for v in range(nv):
                g = grad_finals[li * nv + v]
                g = torch.zeros((B, cfg.hidden_sizes[li]), dtype=dtype, device=params[0].device) if g is None else g
                a, b = _split(g)
                halves[0].append(a.clone())
                halves[1].append(b.clone())
            dstate.append(halves)
        dparams = [torch.zeros_like(p) for p in params]
        dw_eff = [[torch.zeros_like(layer.w_hh[0]), torch.zeros_like(layer.w_hh[1])] for layer in layers]
        dinputs = inputs.grad_buffers()
        fg = cfg.forgetting
        cell = cfg.cell
        n_chunks = (T + cfg.chunk_size - 1) // cfg.chunk_size
        for ci in reversed(range(n_chunks)):
            cs = ci * cfg.chunk_size
            ce = min(T, cs + cfg.chunk_size)
            x = inputs.chunk(cs, ce)
            px0 = layers[0].input_projection(x)
            dpx0 = torch.empty_like(px0)
            for t in reversed(range(cs, ce)):
                vb, vf = call.valid_at(t)
                if grad_outputs is not None and grad_outputs.numel():
                    _add_output_grad(dstate[-1], grad_outputs[t], top.out_mask)
                if k and grad_slices is not None:
                    dstate[-1][0][0][:, :k] += grad_slices[t]
                kept_old = (kept0 if t == 0 else to_fixed(slices[t - 1])) if k else None
                for li in reversed(range(L)):
                    layer = layers[li]
                    below_layer = layers[li - 1] if li > 0 else None
                    if below_layer is None:
                        px = px0[t - cs]
                    else:
                        x_below = below_layer.output()
                        px = layer.input_projection(x_below)
                    dpx = _reverse_step(layer, px, t, vb, vf, dstate[li], dw_eff[li], kept_old if layer.top else None)
                    if below_layer is None:
                        dpx0[t - cs] = dpx
                    else:
                        p = dparams[4 * li : 4 * li + 4]
                        p[0].addmm_(dpx.t(), layer.masked_input(x_below))
                        p[1].add_(dpx.sum(0))
                        dx = dpx @ layer.w_ih
                        if layer.in_mask is not None:
                            dx = dx * layer.in_mask
                        _add_output_grad(dstate[li - 1], dx, below_layer.out_mask)
            d2 = dpx0.view(-1, dpx0.shape[-1])
            first = layers[0]
            xin = first.masked_input(x)
            dparams[0].addmm_(d2.t(), xin.reshape(-1, xin.shape[-1]))
            dparams[1].add_(d2.sum(0))
            dx = (d2 @ first.w_ih).view(ce - cs, B, -1)
            if first.in_mask is not None:
                dx = dx * first.in_mask
            inputs.accumulate(dinputs, cs, ce, dx)
        for li, layer in enumerate(layers):
            pair = masks.hidden[li]
            for half in (0, 1):
                g = dw_eff[li][half]
                dparams[4 * li + 2 + half] = g if pair is None else g * pair[half]
        dh0 = []
        for li in range(L):
            for v in range(nv):
                dh0.append(torch.cat([dstate[li][0][v], dstate[li][1][v]], dim=1))
        grads = _pack_grads(call0, dinputs, dh0, dparams)
        return (None, *grads)


def _add_output_grad(dst_layer: list[list[Tensor]], dy: Tensor, out_mask: Optional[Tensor]) -> None:
    if out_mask is not None:
        dy = dy * out_mask
    a, b = _split(dy)
    dst_layer[0][0] = dst_layer[0][0] + a
    dst_layer[1][0] = dst_layer[1][0] + b


def _reverse_step(layer: _Layer, px: Tensor, t: int, vb, vf, dst: Optional[list[list[Tensor]]], dw, kept_old) -> Optional[Tensor]:
    """Undo one step of one layer exactly and, given ``dst``, backpropagate through it.

    ``dst`` holds gradients w.r.t. the state after step t; on return it holds
    gradients w.r.t. the state before it. Returns the gradient w.r.t. ``px``
    (None when only reversing).
    """
    cell, fg, dtype, G = layer.cell, layer.cfg.forgetting, layer.dtype, layer.G
    dpx = []
    for half in (1, 0):
        other = 1 - half
        h_o = layer.hf[other]
        gates = cell.gates(px[:, half * G : (half + 1) * G], h_o, layer.w_hh[half], fg)
        new_ints = layer.ints[half]
        old_ints = cell.unstep(gates, new_ints, layer.ups[half], fg, t, vb, dtype, kept_old if half == 0 else None)
        old_f = [to_float(v, dtype) for v in old_ints]
        if dst is not None:
            new_f = [layer.hf[half]] + [to_float(v, dtype) for v in new_ints[1:]]
            g = cell.grad(gates, old_f, new_f, h_o, layer.w_hh[half], dw[half], dst[half], fg, vf)
            dst[other][0] = dst[other][0] + g.dh_other
            dst[half] = g.dstate
            dpx.append(g.dpre)
        layer.ints[half] = old_ints
        layer.hf[half] = old_f[0]
    return torch.cat([dpx[1], dpx[0]], dim=1) if dpx else None


def _unpack(call: StackCall, tensors):
    cfg = call.config
    it = 0
    n_in = len(call.inputs.tensors())
    inputs = call.inputs.bind(list(tensors[:n_in]))
    it = n_in
    n_masks = len(call.masks.tensors())
    masks = call.masks.bind(list(tensors[it : it + n_masks]))
    it += n_masks
    valid = None
    if call.valid is not None:
        valid = tensors[it]
        it += 1
    nv = cfg.nvars
    h0 = []
    for _ in range(cfg.num_layers):
        h0.append(list(tensors[it : it + nv]))
        it += nv
    params = list(tensors[it:])
    return inputs, masks, valid, h0, params


def _pack_grads(call: StackCall, dinputs, dh0, dparams):
    n_in = len(call.inputs.tensors())
    input_grads = list(dinputs) + [None] * (n_in - len(dinputs))
    n_masks = len(call.masks.tensors())
    valid = [None] if call.valid is not None else []
    return [*input_grads, *([None] * n_masks), *valid, *dh0, *dparams]


def flat_inputs(call: StackCall, h0: list[list[Tensor]], params: list[Tensor]) -> list[Tensor]:
    """The tensor arguments of :class:`ReversibleStackFunction` in order."""
    valid = [] if call.valid is None else [call.valid]
    return [*call.inputs.tensors(), *call.masks.tensors(), *valid, *(v for layer in h0 for v in layer), *params]


def run_ordinary(call: StackCall, h0: list[list[Tensor]], params: list[Tensor]):
    """The same cells and the same exact values, with every step kept by autograd.

    Each state is the exact fixed-point value with the float update's gradient
    attached (``exact + (sur - sur.detach())``), so values match the
    reversible mode bit for bit and gradients flow as through the float cell.
    """
    cfg = call.config
    inputs, masks = call.inputs, call.masks
    dtype = call.dtype
    T, B = call.steps, call.batch
    k = cfg.slice_dim
    sdt = call.slice_dtype(dtype)
    device = params[0].device
    cell, fg = cfg.cell, cfg.forgetting
    layers, buffers = [], []
    for li in range(cfg.num_layers):
        layer = _Layer(cfg, li, params[4 * li : 4 * li + 4], masks, dtype)
        bufs = _make_buffers(cfg, li, B, device)
        layer.init_state(_init_ints(h0[li], layer.keep, sdt), bufs, sdt)
        graph = []
        for half in (0, 1):
            row = []
            for v in range(cfg.nvars):
                g0 = _split(h0[li][v])[half]
                row.append(to_float(layer.ints[half][v], dtype) + (g0 - g0.detach()))
            graph.append(row)
        layer.gf = graph
        layers.append(layer)
        buffers.append(bufs)
    top = layers[-1]
    outputs, slices = [], []
    for cs in range(0, T, cfg.chunk_size):
        ce = min(T, cs + cfg.chunk_size)
        x = inputs.chunk(cs, ce)
        px0 = layers[0].input_projection(x)
        for t in range(cs, ce):
            vb, _ = call.valid_at(t)
            below = None
            for layer in layers:
                px = px0[t - cs] if below is None else layer.input_projection(below)
                for half in (0, 1):
                    G = cell.gates(px[:, half * layer.G : (half + 1) * layer.G], layer.gf[1 - half][0], layer.w_hh[half], fg)
                    with torch.no_grad():
                        new_ints = cell.step(G, layer.ints[half], layer.ups[half], fg, t, vb, dtype)
                    exact = [to_float(v, dtype) for v in new_ints]
                    link = cell.surrogate(G, layer.gf[half], exact, fg)
                    if vb is not None:
                        link = [torch.where(vb, n, o) for n, o in zip(link, layer.gf[half])]
                    layer.gf[half] = link
                    layer.ints[half] = new_ints
                if not layer.top:
                    below = _graph_output(layer)
            if call.return_outputs:
                outputs.append(_graph_output(top))
            if k:
                slices.append(top.gf[0][0][:, :k].to(sdt))
    call.memory[:] = []
    for layer, bufs in zip(layers, buffers):
        stats = _layer_memory(call, layer, bufs, 0)
        slice_bits = T * B * k * torch.finfo(sdt).bits if layer.top else 0
        stats.actual_bits = stats.naive_bits
        stats.ideal_bits += slice_bits
        call.memory.append(stats)
    out = torch.stack(outputs) if outputs else torch.empty((0,), dtype=dtype, device=device)
    sl = torch.stack(slices) if slices else torch.empty((0,), dtype=sdt, device=device)
    finals = [torch.cat([layer.gf[0][v], layer.gf[1][v]], dim=1) for layer in layers for v in range(cfg.nvars)]
    return (out, sl, *finals)


def _graph_output(layer: _Layer) -> Tensor:
    y = torch.cat([layer.gf[0][0], layer.gf[1][0]], dim=1)
    return y if layer.out_mask is None else y * layer.out_mask


def trace_exact(call: StackCall, h0: list[list[Tensor]], params: list[Tensor]):
    """Exact states after every step, then the states recovered by reversal.

    Returns ``(forward, reversed, pushes)``: ``forward[t]`` and ``reversed[t]``
    are the integer states (all layers and variables) before step t (index T:
    after the last step); ``pushes`` counts buffer overflows. For tests and
    diagnostics only; runs without autograd.
    """
    cfg = call.config
    dtype, T, B = call.dtype, call.steps, call.batch
    k, sdt = cfg.slice_dim, call.slice_dtype(call.dtype)
    device = params[0].device
    with torch.no_grad():
        layers, buffers = [], []
        for li in range(cfg.num_layers):
            layer = _Layer(cfg, li, params[4 * li : 4 * li + 4], call.masks, dtype)
            bufs = _make_buffers(cfg, li, B, device)
            layer.init_state(_init_ints(h0[li], layer.keep, sdt), bufs, sdt)
            layers.append(layer)
            buffers.append(bufs)
        snapshot = lambda: [v.clone() for layer in layers for v in layer.ints_full()]  # noqa: E731
        forward, kept = [snapshot()], [layers[-1].ints[0][0][:, :k].clone()]
        pxs = []
        for t in range(T):
            vb, _ = call.valid_at(t)
            below, step_px = call.inputs.chunk(t, t + 1)[0], []
            for layer in layers:
                px = layer.input_projection(below)
                step_px.append(px)
                layer.step(px, t, vb)
                below = layer.output()
            pxs.append(step_px)
            forward.append(snapshot())
            kept.append(layers[-1].ints[0][0][:, :k].clone())
        pushes = sum(len(b.push_steps) for bufs in buffers for half in bufs or () for b in half)
        recovered = [snapshot()]
        for t in reversed(range(T)):
            vb, _ = call.valid_at(t)
            for li in reversed(range(cfg.num_layers)):
                layer = layers[li]
                _reverse_step(layer, pxs[t][li], t, vb, None, None, None, kept[t] if layer.top else None)
            recovered.append(snapshot())
    return forward, recovered[::-1], pushes
