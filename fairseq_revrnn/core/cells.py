"""RevGRU and RevLSTM half-steps (docs/design.md, section 2).

A layer's state is split in halves updated one after the other; each half
reads only ``[x; other half]``. For each half a cell provides:

* ``gates``: gate values (a NamedTuple) from the input projection and the
  other half; with a temperature or Gumbel noise (:mod:`.noise`), the input
  and forget gates are G2 gates (Li et al. 2018);
* ``step`` / ``unstep``: the exact fixed-point update and its inverse;
* ``surrogate``: the same update as a differentiable float graph (ordinary
  autograd mode);
* ``grad``: hand-written derivatives of that update, reusing the gate values
  that the reversal computed, so reversible backward needs one gate
  computation per half-step.

All of them are pure tensor functions of their arguments (buffers go in and
come out as tensors), so that a half-step can run as one compiled kernel
(:mod:`.halfstep`). A half's state is a :class:`HalfState`: ``h`` and, for
the LSTM, ``c``; its buffers are a ``HalfState`` of int64 entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch

from .buffer import divide, multiply, where_valid
from .discrete import discrete_forget, discrete_forget_grad
from .fixed_point import RH, Forgetting, on_grid, to_fixed, to_float

Tensor = torch.Tensor


class HalfState(NamedTuple):
    """One half of a layer's state (integers, floats or gradients): ``h`` and,
    for the LSTM, ``c``."""

    h: Tensor
    c: Optional[Tensor] = None

    def present(self) -> list[Tensor]:
        """The variables this cell has (``[h]`` or ``[h, c]``)."""
        return [self.h] if self.c is None else [self.h, self.c]


class GRUGates(NamedTuple):
    s: Tensor  # sigmoid of the update gate's pre-activation
    z: Tensor  # the forget (update) value, s mapped into the forgetting's range
    r: Tensor
    u: Tensor  # r * h_other, the candidate's hidden input
    g: Tensor


class LSTMGates(NamedTuple):
    sf: Tensor  # sigmoid of the forget gate's pre-activation
    f: Tensor
    i: Tensor
    o: Tensor
    sp: Tensor  # sigmoid of h's forget gate
    p: Tensor
    g: Tensor


class HalfGrads(NamedTuple):
    """Gradients of one half-step: pre-activations, other half, old state, and
    the inputs of the hidden-to-hidden matrix products (for its weight gradient)."""

    dpre: Tensor
    dh_other: Tensor
    dstate: HalfState
    hh_inputs: tuple[Tensor, ...]


@dataclass(frozen=True)
class HalfSpec:
    """What a half-step's arithmetic depends on besides tensors.

    ``keep``: the first units of ``h`` that skip the buffer (the top layer's
    attention slice in half 1), rounded onto the ``keep_dtype`` grid because
    they are stored anyway. ``dtype``: the model's float dtype.
    ``temperature``: tau of the G2 gates, ``sigmoid((a + noise) / tau)``
    (1: plain sigmoids), or of discrete forgetting's Gumbel-softmax. ``hidden_radix``: RH, states are multiples of
    ``2**-hidden_radix`` (the forget radix is ``forgetting.radix``).
    """

    forgetting: Forgetting
    dtype: torch.dtype = torch.float32
    keep: int = 0
    keep_dtype: torch.dtype = torch.float32
    temperature: float = 1.0
    hidden_radix: int = RH
    estimator: str = "gumbel"  # discrete forgetting's gradient estimator (discrete.ESTIMATORS)


def _sharpen(a: Tensor, noise: Optional[Tensor], tau: float) -> Tensor:
    """A G2 gate's pre-activation ``(a + noise) / tau``; ``a`` itself for a plain sigmoid."""
    if noise is not None:
        a = a + noise
    return a if tau == 1.0 else a / tau


def _forget_gate(a: Tensor, noise: Optional[Tensor], spec: HalfSpec, fg: Forgetting) -> tuple[Tensor, Tensor]:
    """A forget gate from its pre-activations: what its derivative needs (the
    sigmoid, or the discrete categories' probabilities) and the forget value."""
    if fg.discrete:
        return discrete_forget(a, noise, fg.columns, spec.estimator, spec.temperature)
    s = torch.sigmoid(_sharpen(a, noise, spec.temperature))
    return s, fg.limit(s)


def _forget_grad(dz: Tensor, s: Tensor, spec: HalfSpec, fg: Forgetting) -> Tensor:
    """Gradient w.r.t. a forget gate's pre-activations from ``dz``, w.r.t. its value."""
    sharp = 1.0 / spec.temperature
    if fg.discrete:
        return discrete_forget_grad(dz, s, sharp)
    return dz * (fg.alpha * sharp) * s * (1 - s)


def _forget(h: Tensor, z: Optional[Tensor], buf: Optional[Tensor], keep: int, valid: Optional[Tensor], rz: int):
    """``h * z`` exactly; the first ``keep`` units lossy. Returns the product, the
    buffer and the bits destroyed (None without forgetting)."""
    if z is None:
        return h, buf, None
    if keep == 0:
        return multiply(h, z, buf, valid, rz)
    kept = where_valid(valid, torch.bitwise_right_shift(h[:, :keep] * z[:, :keep], rz), h[:, :keep])
    rest, buf, lost = multiply(h[:, keep:], z[:, keep:], buf, valid, rz)
    return torch.cat([kept, rest], dim=1), buf, lost


def _unforget(
    h: Tensor, z: Optional[Tensor], buf: Optional[Tensor], keep: int, kept_old, valid: Optional[Tensor], rz: int
):
    """Inverse of :func:`_forget`; the lossy units come back from ``kept_old``."""
    if z is None:
        return h, buf
    if keep == 0:
        return divide(h, z, buf, valid, rz)
    rest, buf = divide(h[:, keep:], z[:, keep:], buf, valid, rz)
    return torch.cat([kept_old, rest], dim=1), buf


def _add(h: Tensor, add: Tensor, spec: HalfSpec, keep: int, valid: Optional[Tensor]) -> Tensor:
    new = h + to_fixed(add, spec.hidden_radix)
    if keep:
        new = torch.cat([on_grid(new[:, :keep], spec.keep_dtype, spec.hidden_radix), new[:, keep:]], dim=1)
    return where_valid(valid, new, h)


def _lost(*parts: Optional[Tensor]) -> Optional[Tensor]:
    present = [p for p in parts if p is not None]
    return sum(present[1:], present[0]) if present else None


class GRUHalf:
    """``[z, r] = sigma(W [x; h_o])``, ``g = tanh(U [x; r*h_o])``, ``h <- z h + (1-z) g``."""

    name = "gru"
    state_names = ("h",)

    @staticmethod
    def columns(fg: Forgetting) -> int:
        """Pre-activations per unit: z (one, or F + 1 discrete scores), r, g."""
        return fg.hidden.columns + 2

    @staticmethod
    def noise_columns(fg: Forgetting) -> int:
        """Noise per unit: for z (G2 gates, or each discrete score)."""
        return fg.hidden.columns

    @staticmethod
    def gates(px: Tensor, h_o: Tensor, w: Tensor, spec: HalfSpec, noise: Optional[Tensor] = None) -> GRUGates:
        """``noise`` (B, noise_columns * n): for z while training G2 gates or discrete forgetting."""
        n = h_o.shape[1]
        fz = spec.forgetting.hidden
        cz = fz.columns * n
        a = torch.addmm(px[:, : cz + n], h_o, w[: cz + n].t())
        s, z = _forget_gate(a[:, :cz], noise, spec, fz)
        r = torch.sigmoid(a[:, cz:])
        u = r * h_o
        g = torch.tanh(torch.addmm(px[:, cz + n :], u, w[cz + n :].t()))
        return GRUGates(s, z, r, u, g)

    @staticmethod
    def step(G: GRUGates, state: HalfState, bufs: Optional[HalfState], spec: HalfSpec, valid):
        """The exact update: new state, new buffers, bits destroyed."""
        fg = spec.forgetting
        zq = None if fg.disabled else fg.hidden.quantize(G.z)
        h, bh, lost = _forget(state.h, zq, None if bufs is None else bufs.h, spec.keep, valid, fg.radix)
        h = _add(h, (1 - G.z) * G.g, spec, spec.keep, valid)
        return HalfState(h), None if bufs is None else HalfState(bh), lost

    @staticmethod
    def unstep(G: GRUGates, state: HalfState, bufs: Optional[HalfState], spec: HalfSpec, valid, kept_old):
        fg = spec.forgetting
        zq = None if fg.disabled else fg.hidden.quantize(G.z)
        base = where_valid(valid, state.h - to_fixed((1 - G.z) * G.g, spec.hidden_radix), state.h)
        h, bh = _unforget(base, zq, None if bufs is None else bufs.h, spec.keep, kept_old, valid, fg.radix)
        return HalfState(h), None if bufs is None else HalfState(bh)

    @staticmethod
    def surrogate(G: GRUGates, old: HalfState, new_exact: HalfState, fg: Forgetting) -> HalfState:
        keep = old.h if fg.disabled else G.z * old.h
        sur = keep + (1 - G.z) * G.g
        return HalfState(new_exact.h + (sur - sur.detach()))

    @staticmethod
    def grad(
        G: GRUGates,
        old: HalfState,
        new: HalfState,
        h_o: Tensor,
        w: Tensor,
        dnew: HalfState,
        spec: HalfSpec,
        vf: Optional[Tensor],
    ) -> HalfGrads:
        fg = spec.forgetting
        cr = (fg.hidden.columns + 1) * h_o.shape[1]  # the columns of z and r
        dh = dnew.h if vf is None else dnew.h * vf
        if fg.disabled:
            dz = -dh * G.g
            dh_old = dh
        else:
            dz = dh * (old.h - G.g)
            dh_old = dh * G.z
        da_g = dh * (1 - G.z) * (1 - G.g * G.g)
        du = da_g @ w[cr:]
        da_r = du * h_o * G.r * (1 - G.r)
        da_z = _forget_grad(dz, G.s, spec, fg.hidden)
        dzr = torch.cat([da_z, da_r], dim=1)
        dh_o = torch.addmm(du * G.r, dzr, w[:cr])
        if vf is not None:
            dh_old = dh_old + dnew.h * (1 - vf)
        return HalfGrads(torch.cat([dzr, da_g], dim=1), dh_o, HalfState(dh_old), (h_o, G.u))

    @staticmethod
    def add_weight_grad(dw: Tensor, dpre: Tensor, hh_inputs: tuple[Tensor, ...]) -> None:
        """``dw += dpre^T [h_o | u]``: the gates read h_o, the candidate reads u."""
        h_o, u = hh_inputs
        n2 = dpre.shape[1] - u.shape[1]
        dw[:n2].addmm_(dpre[:, :n2].t(), h_o)
        dw[n2:].addmm_(dpre[:, n2:].t(), u)


class LSTMHalf:
    """``[f,i,o,p] = sigma(.)``, ``g = tanh(.)`` from ``W [x; h_o]``;
    ``c <- f c + i g``; ``h <- p h + o tanh(c)`` with the new ``c``."""

    name = "lstm"
    state_names = ("h", "c")

    @staticmethod
    def columns(fg: Forgetting) -> int:
        """Pre-activations per unit: f and p (one each, or F + 1 discrete scores), i, o, g."""
        return 2 * fg.columns + 3

    @staticmethod
    def noise_columns(fg: Forgetting) -> int:
        """Noise per unit: for f, i and p (G2 gates), or each discrete score of f and p."""
        return 2 * fg.columns if fg.discrete else 3

    @staticmethod
    def gates(px: Tensor, h_o: Tensor, w: Tensor, spec: HalfSpec, noise: Optional[Tensor] = None) -> LSTMGates:
        """``noise`` (B, noise_columns * n): for f, i and p while training G2 gates,
        for the scores of f and p while training discrete forgetting."""
        n = h_o.shape[1]
        a = torch.addmm(px, h_o, w.t())
        if spec.forgetting.discrete:
            return LSTMHalf._discrete_gates(a, n, spec, noise)
        pre = a[:, : 4 * n]
        if noise is not None or spec.temperature != 1.0:
            fi = _sharpen(a[:, : 2 * n], None if noise is None else noise[:, : 2 * n], spec.temperature)
            p = _sharpen(a[:, 3 * n : 4 * n], None if noise is None else noise[:, 2 * n :], spec.temperature)
            pre = torch.cat([fi, a[:, 2 * n : 3 * n], p], dim=1)
        sf, i, o, sp = torch.sigmoid(pre).split(n, dim=1)
        g = torch.tanh(a[:, 4 * n :])
        fg = spec.forgetting
        return LSTMGates(sf, fg.limit(sf), i, o, sp, fg.hidden.limit(sp), g)

    @staticmethod
    def _discrete_gates(a: Tensor, n: int, spec: HalfSpec, noise: Optional[Tensor]) -> LSTMGates:
        fg = spec.forgetting
        cf = fg.columns * n
        af, ai, ao, ap, ag = a.split([cf, n, n, cf, n], dim=1)
        nf, np_ = (None, None) if noise is None else noise.split(cf, dim=1)
        sf, f = _forget_gate(af, nf, spec, fg)
        sp, p = _forget_gate(ap, np_, spec, fg)
        return LSTMGates(sf, f, torch.sigmoid(ai), torch.sigmoid(ao), sp, p, torch.tanh(ag))

    @staticmethod
    def step(G: LSTMGates, state: HalfState, bufs: Optional[HalfState], spec: HalfSpec, valid):
        """The exact update: new state, new buffers, bits destroyed."""
        fg = spec.forgetting
        fq = pq = None
        if not fg.disabled:
            fq, pq = fg.quantize(G.f), fg.hidden.quantize(G.p)
        bh, bc = (None, None) if bufs is None else bufs
        rh = spec.hidden_radix
        c, bc, lost_c = _forget(state.c, fq, bc, 0, valid, fg.radix)
        c = _add(c, G.i * G.g, spec, 0, valid)
        h, bh, lost_h = _forget(state.h, pq, bh, spec.keep, valid, fg.radix)
        h = _add(h, G.o * torch.tanh(to_float(c, spec.dtype, rh)), spec, spec.keep, valid)
        return HalfState(h, c), None if bufs is None else HalfState(bh, bc), _lost(lost_c, lost_h)

    @staticmethod
    def unstep(G: LSTMGates, state: HalfState, bufs: Optional[HalfState], spec: HalfSpec, valid, kept_old):
        fg = spec.forgetting
        fq = pq = None
        if not fg.disabled:
            fq, pq = fg.quantize(G.f), fg.hidden.quantize(G.p)
        bh, bc = (None, None) if bufs is None else bufs
        rh = spec.hidden_radix
        base_h = where_valid(
            valid, state.h - to_fixed(G.o * torch.tanh(to_float(state.c, spec.dtype, rh)), rh), state.h
        )
        base_c = where_valid(valid, state.c - to_fixed(G.i * G.g, rh), state.c)
        h, bh = _unforget(base_h, pq, bh, spec.keep, kept_old, valid, fg.radix)
        c, bc = _unforget(base_c, fq, bc, 0, None, valid, fg.radix)
        return HalfState(h, c), None if bufs is None else HalfState(bh, bc)

    @staticmethod
    def surrogate(G: LSTMGates, old: HalfState, new_exact: HalfState, fg: Forgetting) -> HalfState:
        c_sur = (old.c if fg.disabled else G.f * old.c) + G.i * G.g
        c_new = new_exact.c + (c_sur - c_sur.detach())
        h_sur = (old.h if fg.disabled else G.p * old.h) + G.o * torch.tanh(c_new)
        return HalfState(new_exact.h + (h_sur - h_sur.detach()), c_new)

    @staticmethod
    def grad(
        G: LSTMGates,
        old: HalfState,
        new: HalfState,
        h_o: Tensor,
        w: Tensor,
        dnew: HalfState,
        spec: HalfSpec,
        vf: Optional[Tensor],
    ) -> HalfGrads:
        fg, sharp = spec.forgetting, 1.0 / spec.temperature
        dh, dc = dnew if vf is None else (dnew.h * vf, dnew.c * vf)
        tc = torch.tanh(new.c)
        dct = dc + dh * G.o * (1 - tc * tc)
        da_i = dct * G.g * G.i * (1 - G.i)
        if sharp != 1.0 and not fg.discrete:  # a G2 input gate
            da_i = da_i * sharp
        da_o = dh * tc * G.o * (1 - G.o)
        da_g = dct * G.i * (1 - G.g * G.g)
        if fg.disabled:
            da_f = da_p = torch.zeros_like(dh)
            dh_old, dc_old = dh, dct
        else:
            da_f = _forget_grad(dct * old.c, G.sf, spec, fg)
            da_p = _forget_grad(dh * old.h, G.sp, spec, fg.hidden)
            dh_old, dc_old = dh * G.p, dct * G.f
        dpre = torch.cat([da_f, da_i, da_o, da_p, da_g], dim=1)
        if vf is not None:
            dh_old = dh_old + dnew.h * (1 - vf)
            dc_old = dc_old + dnew.c * (1 - vf)
        return HalfGrads(dpre, dpre @ w, HalfState(dh_old, dc_old), (h_o,))

    @staticmethod
    def add_weight_grad(dw: Tensor, dpre: Tensor, hh_inputs: tuple[Tensor, ...]) -> None:
        """``dw += dpre^T h_o``."""
        dw.addmm_(dpre.t(), hh_inputs[0])


CELLS = {"gru": GRUHalf, "lstm": LSTMHalf}


def get_cell(name: str):
    """The half-step implementation for ``name`` ('gru' or 'lstm')."""
    if name not in CELLS:
        raise ValueError(f"cell_type must be one of {sorted(CELLS)}; got {name!r}")
    return CELLS[name]
