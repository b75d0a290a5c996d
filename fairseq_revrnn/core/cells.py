"""RevGRU and RevLSTM half-steps (docs/design.md, section 2).

A layer's state is split in halves updated one after the other; each half
reads only ``[x; other half]``. For each half a cell provides:

* ``gates``: gate values from the input projection and the other half;
* ``step`` / ``unstep``: the exact fixed-point update and its inverse;
* ``surrogate``: the same update as a differentiable float graph (ordinary
  autograd mode);
* ``grad``: hand-written derivatives of that update, reusing the gate values
  that the reversal computed, so reversible backward needs one gate
  computation per half-step.

States of a half are lists: ``[h]`` for the GRU, ``[h, c]`` for the LSTM.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from .buffer import InfoBuffer
from .fixed_point import RZ, Forgetting, to_fixed, to_float

Tensor = torch.Tensor


class HalfGrads(NamedTuple):
    """Gradients of one half-step: pre-activations, other half, old state.
    The hidden-to-hidden weight gradient is added into the caller's buffer."""

    dpre: Tensor
    dh_other: Tensor
    dstate: list[Tensor]


class Updater:
    """Applies a forget multiplication to one state tensor, exactly or lossy.

    ``buffer`` handles the buffered units; the first ``keep`` units (the
    attention slice) skip the buffer and are rounded onto ``keep_grid``.
    """

    def __init__(self, buffer: Optional[InfoBuffer], keep: int = 0, keep_dtype: Optional[torch.dtype] = None):
        self.buffer = buffer
        self.keep = keep
        self.keep_dtype = keep_dtype

    def mul(self, h: Tensor, z: Optional[Tensor], step: int, valid: Optional[Tensor]) -> Tensor:
        if z is None:
            return h
        k = self.keep
        if k == 0:
            return self.buffer.multiply(h, z, step, valid)
        kept = torch.bitwise_right_shift(h[:, :k] * z[:, :k], RZ)
        if valid is not None:
            kept = torch.where(valid, kept, h[:, :k])
        rest = self.buffer.multiply(h[:, k:], z[:, k:], step, valid)
        return torch.cat([kept, rest], dim=1)

    def add(self, h: Tensor, add: Tensor, valid: Optional[Tensor]) -> Tensor:
        new = h + to_fixed(add)
        if self.keep:
            k = self.keep
            kept = to_fixed(to_float(new[:, :k], self.keep_dtype))
            new = torch.cat([kept, new[:, k:]], dim=1)
        return new if valid is None else torch.where(valid, new, h)

    def div(
        self, h: Tensor, z: Optional[Tensor], step: int, valid: Optional[Tensor], kept_old: Optional[Tensor]
    ) -> Tensor:
        if z is None:
            return h
        k = self.keep
        if k == 0:
            return self.buffer.divide(h, z, step, valid)
        rest = self.buffer.divide(h[:, k:], z[:, k:], step, valid)
        return torch.cat([kept_old, rest], dim=1)


class GRUHalf:
    """``[z, r] = sigma(W [x; h_o])``, ``g = tanh(U [x; r*h_o])``, ``h <- z h + (1-z) g``."""

    name = "gru"
    gates_per_unit = 3
    state_names = ("h",)

    @staticmethod
    def gates(px: Tensor, h_o: Tensor, w: Tensor, fg: Forgetting) -> tuple[Tensor, ...]:
        n = h_o.shape[1]
        a = torch.addmm(px[:, : 2 * n], h_o, w[: 2 * n].t())
        s = torch.sigmoid(a[:, :n])
        r = torch.sigmoid(a[:, n:])
        u = r * h_o
        g = torch.tanh(torch.addmm(px[:, 2 * n :], u, w[2 * n :].t()))
        z = fg.hidden.limit(s)
        return s, z, r, u, g

    @staticmethod
    def step(G, state: list[Tensor], ups: list[Updater], fg: Forgetting, t: int, valid, dtype) -> list[Tensor]:
        _, z, _, _, g = G
        zq = None if fg.disabled else fg.hidden.quantize(z)
        (h,) = state
        (up,) = ups
        return [up.add(up.mul(h, zq, t, valid), (1 - z) * g, valid)]

    @staticmethod
    def unstep(
        G, state: list[Tensor], ups: list[Updater], fg: Forgetting, t: int, valid, dtype, kept_old
    ) -> list[Tensor]:
        _, z, _, _, g = G
        zq = None if fg.disabled else fg.hidden.quantize(z)
        (h,) = state
        (up,) = ups
        base = h - to_fixed((1 - z) * g)
        if valid is not None:
            base = torch.where(valid, base, h)
        return [up.div(base, zq, t, valid, kept_old)]

    @staticmethod
    def surrogate(G, old: list[Tensor], new_exact: list[Tensor], fg: Forgetting) -> list[Tensor]:
        _, z, _, _, g = G
        (h_old,) = old
        keep = h_old if fg.disabled else z * h_old
        sur = keep + (1 - z) * g
        return [new_exact[0] + (sur - sur.detach())]

    @staticmethod
    def grad(
        G,
        old: list[Tensor],
        new: list[Tensor],
        h_o: Tensor,
        w: Tensor,
        dw: Tensor,
        dnew: list[Tensor],
        fg: Forgetting,
        vf: Optional[Tensor],
    ) -> HalfGrads:
        s, z, r, u, g = G
        (h_old,) = old
        (dh_in,) = dnew
        n = h_o.shape[1]
        dh = dh_in if vf is None else dh_in * vf
        if fg.disabled:
            dz = -dh * g
            dh_old = dh
        else:
            dz = dh * (h_old - g)
            dh_old = dh * z
        da_g = dh * (1 - z) * (1 - g * g)
        du = da_g @ w[2 * n :]
        da_r = du * h_o * r * (1 - r)
        da_z = dz * fg.hidden.alpha * s * (1 - s)
        dzr = torch.cat([da_z, da_r], dim=1)
        dh_o = torch.addmm(du * r, dzr, w[: 2 * n])
        dw[: 2 * n].addmm_(dzr.t(), h_o)
        dw[2 * n :].addmm_(da_g.t(), u)
        if vf is not None:
            dh_old = dh_old + dh_in * (1 - vf)
        return HalfGrads(torch.cat([dzr, da_g], dim=1), dh_o, [dh_old])


class LSTMHalf:
    """``[f,i,o,p] = sigma(.)``, ``g = tanh(.)`` from ``W [x; h_o]``;
    ``c <- f c + i g``; ``h <- p h + o tanh(c)`` with the new ``c``."""

    name = "lstm"
    gates_per_unit = 5
    state_names = ("h", "c")

    @staticmethod
    def gates(px: Tensor, h_o: Tensor, w: Tensor, fg: Forgetting) -> tuple[Tensor, ...]:
        n = h_o.shape[1]
        a = torch.addmm(px, h_o, w.t())
        sg = torch.sigmoid(a[:, : 4 * n])
        sf, i, o, sp = sg.split(n, dim=1)
        g = torch.tanh(a[:, 4 * n :])
        return sf, fg.limit(sf), i, o, sp, fg.hidden.limit(sp), g

    @staticmethod
    def step(G, state: list[Tensor], ups: list[Updater], fg: Forgetting, t: int, valid, dtype) -> list[Tensor]:
        _, f, i, o, _, p, g = G
        h, c = state
        up_h, up_c = ups
        fq = pq = None
        if not fg.disabled:
            fq, pq = fg.quantize(f), fg.hidden.quantize(p)
        c_new = up_c.add(up_c.mul(c, fq, t, valid), i * g, valid)
        h_new = up_h.add(up_h.mul(h, pq, t, valid), o * torch.tanh(to_float(c_new, dtype)), valid)
        return [h_new, c_new]

    @staticmethod
    def unstep(
        G, state: list[Tensor], ups: list[Updater], fg: Forgetting, t: int, valid, dtype, kept_old
    ) -> list[Tensor]:
        _, f, i, o, _, p, g = G
        h, c = state
        up_h, up_c = ups
        fq = pq = None
        if not fg.disabled:
            fq, pq = fg.quantize(f), fg.hidden.quantize(p)
        base_h = h - to_fixed(o * torch.tanh(to_float(c, dtype)))
        base_c = c - to_fixed(i * g)
        if valid is not None:
            base_h = torch.where(valid, base_h, h)
            base_c = torch.where(valid, base_c, c)
        return [up_h.div(base_h, pq, t, valid, kept_old), up_c.div(base_c, fq, t, valid, None)]

    @staticmethod
    def surrogate(G, old: list[Tensor], new_exact: list[Tensor], fg: Forgetting) -> list[Tensor]:
        _, f, i, o, _, p, g = G
        h_old, c_old = old
        h_ex, c_ex = new_exact
        c_sur = (c_old if fg.disabled else f * c_old) + i * g
        c_new = c_ex + (c_sur - c_sur.detach())
        h_sur = (h_old if fg.disabled else p * h_old) + o * torch.tanh(c_new)
        return [h_ex + (h_sur - h_sur.detach()), c_new]

    @staticmethod
    def grad(
        G,
        old: list[Tensor],
        new: list[Tensor],
        h_o: Tensor,
        w: Tensor,
        dw: Tensor,
        dnew: list[Tensor],
        fg: Forgetting,
        vf: Optional[Tensor],
    ) -> HalfGrads:
        sf, f, i, o, sp, p, g = G
        h_old, c_old = old
        dh_in, dc_in = dnew
        if vf is not None:
            dh, dc = dh_in * vf, dc_in * vf
        else:
            dh, dc = dh_in, dc_in
        tc = torch.tanh(new[1])
        dct = dc + dh * o * (1 - tc * tc)
        da_i = dct * g * i * (1 - i)
        da_o = dh * tc * o * (1 - o)
        da_g = dct * i * (1 - g * g)
        if fg.disabled:
            da_f = da_p = torch.zeros_like(dh)
            dh_old, dc_old = dh, dct
        else:
            da_f = dct * c_old * fg.alpha * sf * (1 - sf)
            da_p = dh * h_old * fg.hidden.alpha * sp * (1 - sp)
            dh_old, dc_old = dh * p, dct * f
        dpre = torch.cat([da_f, da_i, da_o, da_p, da_g], dim=1)
        dh_o = dpre @ w
        dw.addmm_(dpre.t(), h_o)
        if vf is not None:
            dh_old = dh_old + dh_in * (1 - vf)
            dc_old = dc_old + dc_in * (1 - vf)
        return HalfGrads(dpre, dh_o, [dh_old, dc_old])


CELLS = {"gru": GRUHalf, "lstm": LSTMHalf}


def get_cell(name: str):
    """The half-step implementation for ``name`` ('gru' or 'lstm')."""
    if name not in CELLS:
        raise ValueError(f"cell_type must be one of {sorted(CELLS)}; got {name!r}")
    return CELLS[name]
