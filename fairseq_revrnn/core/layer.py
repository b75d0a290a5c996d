"""One layer of a stack during a run: exact integer halves, their buffers and
float views, stepped forward and reversed through :mod:`.halfstep` kernels.
:class:`GraphLayer` is the ordinary autograd mode: the same exact values with
the float update's gradient attached."""

from __future__ import annotations

from typing import Optional

import torch

from .buffer import InfoBuffer, where_valid
from .call import LayerParams, StackCall, Step
from .cells import HalfSpec, HalfState
from .fixed_point import on_grid, to_fixed, to_float
from .halfstep import half_step
from .memory import MemoryStats, layer_memory

Tensor = torch.Tensor


def split_halves(full: Tensor) -> tuple[Tensor, Tensor]:
    n = full.shape[1] // 2
    return full[:, :n], full[:, n:]


class Rows:
    """The operands of a weight gradient ``dW += dout^T x``, collected step by
    step over a chunk and multiplied once: one larger matrix product instead
    of a small one per step (fewer dispatches, better use of the cores)."""

    def __init__(self) -> None:
        self.steps: list[tuple[Tensor, ...]] = []

    def add(self, *rows: Tensor) -> None:
        self.steps.append(rows)

    def take(self) -> list[Tensor]:
        """Each operand's rows of all steps so far, concatenated; then empty."""
        columns = [torch.cat(column) if len(column) > 1 else column[0] for column in zip(*self.steps)]
        self.steps = []
        return columns


class Layer:
    """Per-layer state during a run: integer halves, their float ``h``, buffers
    and effective hidden-to-hidden weights."""

    def __init__(self, call: StackCall, index: int, params: LayerParams):
        cfg = call.config
        self.cfg, self.index, self.cell = cfg, index, cfg.cell
        self.w_ih, self.bias, w1, w2 = params.weight_ih, params.bias, params.weight_hh1, params.weight_hh2
        self.in_mask, self.out_mask, self.hh_masks = call.masks.layer(index, w1.device, w1.dtype)
        pair = self.hh_masks
        self.w_hh = (w1, w2) if pair is None else (w1 * pair[0], w2 * pair[1])
        self.dtype = call.dtype
        self.top = index == cfg.num_layers - 1
        self.keep = cfg.slice_dim if self.top else 0
        self.G = self.cell.columns(cfg.forgetting) * cfg.hidden_sizes[index] // 2
        self.kernels = [
            half_step(
                self.cell,
                HalfSpec(
                    cfg.forgetting,
                    call.dtype,
                    self.keep if half == 0 else 0,
                    call.slice_dtype,
                    call.gate_temperature,
                    cfg.hidden_radix,
                    cfg.estimator,
                ),
                call.compiled,
            )
            for half in (0, 1)
        ]
        self.in_rows, self.hh_rows = Rows(), (Rows(), Rows())
        self.gate_noise, self.noise, self.chunk_start = call.gate_noise, None, 0
        # shape (1,), not (): compiled code reads 0-d CPU tensors as Python numbers, a host sync per call
        self.ideal = torch.zeros(1, dtype=torch.float64, device=w1.device)

    def start(self, ints_full: list[Tensor], buffers: Optional[list[HalfState]]) -> None:
        """Set the state: one ``(B, H)`` integer tensor per variable (h[, c]), and
        per half a :class:`HalfState` of :class:`InfoBuffer` (None without forgetting)."""
        halves = [split_halves(v) for v in ints_full]
        # contiguous like every later state, so the first step runs the same compiled code
        self.ints = [HalfState(*(h[half].contiguous() for h in halves)) for half in (0, 1)]
        self.hf = [to_float(self.ints[half].h, self.dtype, self.cfg.hidden_radix) for half in (0, 1)]
        self.buffers = buffers

    def start_fresh(self, h0: list[Tensor], batch: int) -> None:
        """Start from float initial states, with empty buffers."""
        rh = self.cfg.hidden_radix
        ints = [to_fixed(v, rh) for v in h0]
        if self.keep:
            ints[0] = torch.cat(
                [on_grid(ints[0][:, : self.keep], self.kernels[0].spec.keep_dtype, rh), ints[0][:, self.keep :]], dim=1
            )
        self.start(ints, self._new_buffers(batch, h0[0].device))

    def _new_buffers(self, batch: int, device) -> Optional[list[HalfState]]:
        if self.cfg.forgetting.disabled:
            return None
        n = self.cfg.hidden_sizes[self.index] // 2
        growth, radix = self.cfg.forgetting.growth_bits, self.cfg.forgetting.radix
        return [
            HalfState(
                *(
                    InfoBuffer((batch, n - (self.keep if (half == 0 and v == 0) else 0)), device, growth, radix)
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

    def begin_chunk(self, start: int, end: int) -> None:
        """Enter the chunk of steps ``start..end-1``: draw its G2 gates' noise, if any."""
        self.chunk_start = start
        if self.gate_noise is not None:
            width = 2 * self.cell.noise_columns(self.cfg.forgetting) * self.cfg.hidden_sizes[self.index] // 2
            shape = (end - start, self.ints[0].h.shape[0], width)
            self.noise = self.gate_noise.chunk(self.index, start, shape, self.w_ih.device, self.dtype)

    def _noise(self, t: int, half: int) -> Optional[Tensor]:
        """Half ``half``'s G2 gate noise at step ``t`` (None without)."""
        if self.noise is None:
            return None
        width = self.noise.shape[-1] // 2
        return self.noise[t - self.chunk_start, :, half * width : (half + 1) * width]

    def masked_input(self, x: Tensor) -> Tensor:
        return x if self.in_mask is None else x * self.in_mask

    def input_projection(self, x: Tensor) -> Tensor:
        """``W_x x + b`` for inputs of shape (..., B, D)."""
        x = self.masked_input(x)
        out = torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.w_ih.t())
        return out.view(*x.shape[:-1], -1)

    def backprop_input(self, dpx: Tensor, x: Tensor) -> Tensor:
        """dx for ``px = W_x x + b``; the ``W_x``, ``b`` gradients wait in rows
        for :meth:`add_weight_grads`."""
        xin = self.masked_input(x)
        d2 = dpx.reshape(-1, dpx.shape[-1])
        self.in_rows.add(d2, xin.reshape(-1, xin.shape[-1]))
        dx = (d2 @ self.w_ih).view(*dpx.shape[:-1], -1)
        return self.masked_input(dx)

    def add_weight_grads(self, dw_hh: list[Tensor], dparams: LayerParams) -> None:
        """Add the weight gradients of the steps collected so far: ``W_x`` and
        ``b`` to ``dparams``, the effective hidden-to-hidden ones to ``dw_hh``."""
        if self.in_rows.steps:
            d, x = self.in_rows.take()
            dparams.weight_ih.addmm_(d.t(), x)
            dparams.bias.add_(d.sum(0))
        for half, rows in enumerate(self.hh_rows):
            if rows.steps:
                dpre, *hh_inputs = rows.take()
                self.cell.add_weight_grad(dw_hh[half], dpre, tuple(hh_inputs))

    def output(self) -> Tensor:
        y = torch.cat(self.hf, dim=1)
        return y if self.out_mask is None else y * self.out_mask

    def kept_slice(self) -> Tensor:
        return self.ints[0].h[:, : self.keep]

    def slice_value(self) -> Tensor:
        """The kept units as stored for attention."""
        return to_float(self.kept_slice(), self.kernels[0].spec.keep_dtype, self.cfg.hidden_radix)

    def step(self, px: Tensor, step: Step) -> None:
        """Advance one time step exactly."""
        for half in (0, 1):
            pxh, w = px[:, half * self.G : (half + 1) * self.G], self.w_hh[half]
            entries = self._buffer_entries(half, before_step=step.t)
            new, entries = self._step_half(half, pxh, w, entries, step.valid, self._noise(step.t, half))
            self._keep_entries(half, entries)
            self.ints[half] = new

    def _step_half(self, half: int, px: Tensor, w: Tensor, entries, valid, noise):
        new, entries, self.ideal, self.hf[half] = self.kernels[half].forward(
            px, self.hf[1 - half], w, self.ints[half], entries, self.ideal, valid, noise
        )
        return new, entries

    def unstep(
        self, px: Tensor, step: Step, dst: Optional[list[HalfState]], kept_old: Optional[Tensor]
    ) -> Optional[Tensor]:
        """Undo a step exactly and, given ``dst``, backpropagate through it.

        ``dst`` holds per half a :class:`HalfState` of gradients w.r.t. the state
        after the step; on return it holds gradients w.r.t. the state before it.
        ``kept_old`` is the top layer's kept slice before the step. Returns the
        gradient w.r.t. ``px`` (None when only reversing); the weight
        gradients wait in rows for :meth:`add_weight_grads`.
        """
        dpx = [None, None]
        for half in (1, 0):
            other, kernel = 1 - half, self.kernels[half]
            pxh, w = px[:, half * self.G : (half + 1) * self.G], self.w_hh[half]
            entries = self._buffer_entries(half)
            kept = kept_old if half == 0 else None
            noise = self._noise(step.t, half)
            if dst is None:
                old, entries, self.hf[half] = kernel.reverse(
                    pxh, self.hf[other], w, self.ints[half], entries, step.valid, kept, noise
                )
            else:
                old, entries, self.hf[half], dst[half], dh_other, dpx[half], hh_inputs = kernel.reverse_grad(
                    pxh,
                    self.hf[other],
                    w,
                    self.ints[half],
                    self.hf[half],
                    entries,
                    step.valid,
                    step.weight,
                    kept,
                    dst[half],
                    dst[other].h,
                    noise,
                )
                dst[other] = dst[other]._replace(h=dh_other)
                self.hh_rows[half].add(dpx[half], *hh_inputs)
            if entries is not None:
                for b, e in zip(self.buffers[half].present(), entries.present()):
                    b.after_divide(step.t, e)
            self.ints[half] = old
        return None if dst is None else torch.cat(dpx, dim=1)

    def final_ints(self) -> list[Tensor]:
        return [torch.cat([a, b], dim=1) for a, b in zip(self.ints[0].present(), self.ints[1].present())]

    def memory(self, call: StackCall, ideal_bits: float, slice_bits: int) -> MemoryStats:
        """This call's bit counts for this layer (docs/design.md, section 6)."""
        return layer_memory(call, self.index, ideal_bits, slice_bits, self.all_buffers())


class GraphLayer(Layer):
    """The ordinary autograd mode: each state is the exact fixed-point value with
    the float update's gradient attached (``exact + (sur - sur.detach())``), so
    values match the reversible mode bit for bit and gradients flow as through
    the float cell."""

    def start_fresh(self, h0: list[Tensor], batch: int) -> None:
        super().start_fresh(h0, batch)
        self.gstate = [
            HalfState(
                *(
                    to_float(v, self.dtype, self.cfg.hidden_radix) + grad_of(split_halves(v0)[half])
                    for v, v0 in zip(self.ints[half].present(), h0)
                )
            )
            for half in (0, 1)
        ]
        self.hf = [self.gstate[0].h, self.gstate[1].h]

    def slice_value(self) -> Tensor:
        """The kept units as stored for attention, a graph tensor."""
        return self.hf[0][:, : self.keep].to(self.kernels[0].spec.keep_dtype)

    def _step_half(self, half: int, px: Tensor, w: Tensor, entries, valid, noise):
        """The exact step, with the float update's gradient attached (ordinary mode)."""
        cell, kernel = self.cell, self.kernels[half]
        fg = kernel.spec.forgetting
        G = cell.gates(px, self.hf[1 - half], w, kernel.spec, noise)
        with torch.no_grad():
            if kernel.compiled:
                h_o = self.hf[1 - half].detach()
                new, entries, self.ideal, _ = kernel.forward(
                    px, h_o, w, self.ints[half], entries, self.ideal, valid, noise
                )
            else:
                new, entries, lost = cell.step(G, self.ints[half], entries, kernel.spec, valid)
                self.ideal = self.ideal if lost is None else self.ideal + lost
        exact = HalfState(*(to_float(v, self.dtype, self.cfg.hidden_radix) for v in new.present()))
        link = cell.surrogate(G, self.gstate[half], exact, fg)
        link = HalfState(*(where_valid(valid, n, o) for n, o in zip(link.present(), self.gstate[half].present())))
        self.gstate[half] = link
        self.hf[half] = link.h
        return new, entries

    def final_graph(self) -> list[Tensor]:
        return [torch.cat([a, b], dim=1) for a, b in zip(self.gstate[0].present(), self.gstate[1].present())]

    def memory(self, call: StackCall, ideal_bits: float, slice_bits: int) -> MemoryStats:
        return layer_memory(call, self.index, ideal_bits, slice_bits, None)


def stack_memory(call: StackCall, layers: list[Layer], slice_bits: int) -> list[MemoryStats]:
    """Each layer's bit counts, the stored slices' ``slice_bits`` on the top
    one; the layers' ideal counters come back from the device in one read."""
    ideals = torch.cat([layer.ideal for layer in layers]).tolist()
    return [layer.memory(call, ideal, slice_bits if layer.top else 0) for layer, ideal in zip(layers, ideals)]


def fresh_layers(call: StackCall, params: list[LayerParams], h0, graph: bool = False) -> list[Layer]:
    """Layers (:class:`GraphLayer` with ``graph``) started from float initial states with empty buffers."""
    kind = GraphLayer if graph else Layer
    layers = [kind(call, li, p) for li, p in enumerate(params)]
    for layer, state in zip(layers, h0):
        layer.start_fresh(state, call.batch)
    return layers


def grad_of(t: Tensor) -> Tensor:
    """Zero with ``t``'s gradient attached: ``exact + grad_of(sur)`` has the
    exact value and the gradient of ``sur``."""
    return t - t.detach()
