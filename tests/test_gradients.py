"""Reversible-mode gradients equal ordinary autograd; one step passes gradcheck."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fairseq_revrnn.core import EmbeddingInput, Forgetting, GRUHalf, HalfState, LSTMHalf, ReversibleRNN
from fairseq_revrnn.core.cells import HalfSpec

from .helpers import loss_and_grads, max_relative_error

LIMITS = [1, 2, 3, 5, None, "nf"]


def make(cell, sizes, limit, dtype, **kw):
    nf = limit == "nf"
    m = ReversibleRNN(cell, 6, sizes, max_forget_bits=None if nf else limit, no_forgetting=nf, **kw)
    return m.to(dtype)


def compare(module, x, valid, state, tol):
    out_r, g_r = loss_and_grads(module, x, valid, state, reversible=True)
    out_o, g_o = loss_and_grads(module, x, valid, state, reversible=False)
    assert torch.equal(out_r.outputs, out_o.outputs), "both modes must compute identical values"
    assert torch.equal(out_r.slices, out_o.slices)
    assert max_relative_error(g_r, g_o) <= tol
    return g_r


@given(
    cell=st.sampled_from(["gru", "lstm"]),
    layers=st.integers(1, 3),
    steps=st.integers(1, 25),
    limit=st.sampled_from(LIMITS),
    seed=st.integers(0, 2**31 - 1),
    data=st.data(),
)
def test_gradients_match_ordinary_mode_float64(cell, layers, steps, limit, seed, data):
    torch.manual_seed(seed)
    sizes = [2 * data.draw(st.integers(1, 5)) for _ in range(layers)]
    slice_dim = data.draw(st.integers(0, sizes[-1] // 2))
    module = make(cell, sizes, limit, torch.float64, slice_dim=slice_dim, chunk_size=data.draw(st.integers(1, 8)))
    batch = 3
    x = torch.randn(steps, batch, 6, dtype=torch.float64, requires_grad=True)
    lengths = torch.randint(1, steps + 1, (batch,))
    valid = (torch.arange(steps).unsqueeze(1) < lengths).flip(0) if data.draw(st.booleans()) else None
    state = [
        tuple(torch.randn(batch, h, dtype=torch.float64, requires_grad=True) for _ in range(module.config.nvars))
        for h in sizes
    ]
    compare(module, x, valid, state, 1e-6)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("limit", LIMITS)
def test_gradients_match_ordinary_mode_for_every_cell_and_forgetting_mode(cell, limit):
    """Each cell with each forgetting mode (incl. no forgetting), explicitly: padding, initial
    state, a slice, a bound on h's forget value where there is forgetting, two layers."""
    bound = None if limit == "nf" else 0.9
    module = make(cell, [8, 6], limit, torch.float64, slice_dim=2, chunk_size=3, max_hidden_forget=bound)
    x = torch.randn(11, 3, 6, dtype=torch.float64, requires_grad=True)
    valid = torch.ones(11, 3, dtype=torch.bool)
    valid[8:, 2] = False
    state = [tuple(torch.randn(3, h, dtype=torch.float64, requires_grad=True) for _ in range(module.config.nvars))
             for h in (8, 6)]  # fmt: skip
    grads = compare(module, x, valid, state, 1e-6)
    assert all(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("chunk_size", [1, 3, 8])
def test_float32_gradients_match_with_every_chunk_size(chunk_size):
    """float32 is where the backward's chunk boundaries must match the forward's exactly: a
    recomputed input projection of another shape rounds differently and the reversal drifts."""
    module = make("lstm", [16, 12], 3, torch.float32, slice_dim=3, chunk_size=chunk_size)
    x = (torch.randn(60, 4, 6) * 5).requires_grad_()
    compare(module, x, None, None, 1e-4)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("limit", [2, None])
def test_gradients_match_ordinary_mode_float32_with_dropout(cell, limit):
    torch.manual_seed(0)
    module = make(
        cell, [16, 12], limit, torch.float32, slice_dim=3, dropout_in=0.3, dropout_out=0.4, dropout_hidden=0.5
    )
    module.train()
    x = torch.randn(40, 4, 6, requires_grad=True)
    valid = torch.ones(40, 4, dtype=torch.bool)
    valid[30:, 0] = False
    grads = compare(module, x, valid, None, 1e-4)
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_dropout_masks_are_one_per_sequence():
    torch.manual_seed(0)
    module = make("gru", [8], 3, torch.float64, dropout_out=0.5)
    module.train()
    masks = module.sample_masks(4)
    out = module(torch.randn(10, 4, 6, dtype=torch.float64))
    dropped = out.outputs == 0
    assert dropped.any()
    assert torch.equal(dropped, dropped[:1].expand_as(dropped)), "the same units are dropped at every step"
    assert masks.outputs[0].shape == (4, 8)
    made = masks.outputs[0].materialize(torch.device("cpu"), torch.float64)
    assert torch.equal(made, masks.outputs[0].materialize(torch.device("cpu"), torch.float64))
    assert set(made.unique().tolist()) == {0.0, 2.0}


def test_embedding_input_gradients_match():
    torch.manual_seed(0)
    module = make("lstm", [8, 6], 3, torch.float64, slice_dim=2)
    weight = torch.randn(11, 6, dtype=torch.float64, requires_grad=True)
    tokens = torch.randint(0, 11, (12, 3))
    word_mask = (torch.rand(11, dtype=torch.float64) > 0.3).double() / 0.7
    grads = []
    for rev in (True, False):
        module.reversible = rev
        out = module(EmbeddingInput(tokens, weight, padding_idx=1, word_mask=word_mask))
        loss = (out.outputs**2).sum() + out.slices.sum()
        grads.append(torch.autograd.grad(loss, [weight, *module.parameters()]))
    assert max_relative_error(grads[0], grads[1]) <= 1e-6
    assert torch.count_nonzero(grads[0][0][1]) == 0, "padding row gets no gradient"
    dense = torch.nn.functional.embedding(tokens, weight, 1) * word_mask[tokens].unsqueeze(-1)
    module.reversible = True
    assert torch.equal(module(EmbeddingInput(tokens, weight, 1, word_mask)).outputs, module(dense).outputs)


class _HalfStep(torch.autograd.Function):
    """One float half-step whose backward is the cell's hand-written ``grad``."""

    @staticmethod
    def forward(ctx, cell, spec, noise, px, h_o, w, *old):
        fg = spec.forgetting
        G = cell.gates(px, h_o, w, spec, noise)
        if cell is GRUHalf:
            new = HalfState((old[0] if fg.disabled else G.z * old[0]) + (1 - G.z) * G.g)
        else:
            c = (old[1] if fg.disabled else G.f * old[1]) + G.i * G.g
            new = HalfState((old[0] if fg.disabled else G.p * old[0]) + G.o * torch.tanh(c), c)
        ctx.stuff = (cell, spec, G, HalfState(*old), new, h_o, w)
        return tuple(new.present())

    @staticmethod
    def backward(ctx, *dnew):
        cell, spec, G, old, new, h_o, w = ctx.stuff
        g = cell.grad(G, old, new, h_o, w, HalfState(*dnew), spec, None)
        dw = torch.zeros_like(w)
        cell.add_weight_grad(dw, g.dpre, g.hh_inputs)
        return (None, None, None, g.dpre, g.dh_other, dw, *g.dstate.present())


@pytest.mark.parametrize("cell", [GRUHalf, LSTMHalf])
@pytest.mark.parametrize("fg", [Forgetting(3), Forgetting(None), Forgetting(None, disabled=True)])
@pytest.mark.parametrize("gates", ["sigmoid", "gumbel"])
def test_gradcheck_one_half_step(cell, fg, gates):
    """The hand-written gradients of a half-step, plain and with G2 gates (noise, tau 0.9)."""
    torch.manual_seed(0)
    n, batch = 4, 3
    px = torch.randn(batch, cell.columns(fg) * n, dtype=torch.float64, requires_grad=True)
    h_o = torch.randn(batch, n, dtype=torch.float64, requires_grad=True)
    w = torch.randn(cell.columns(fg) * n, n, dtype=torch.float64, requires_grad=True)
    old = [torch.randn(batch, n, dtype=torch.float64, requires_grad=True) for _ in cell.state_names]
    spec = HalfSpec(fg, torch.float64, temperature=0.9 if gates == "gumbel" else 1.0)
    noise = torch.randn(batch, cell.noise_columns(fg) * n, dtype=torch.float64) if gates == "gumbel" else None
    assert torch.autograd.gradcheck(lambda *a: _HalfStep.apply(cell, spec, noise, *a), (px, h_o, w, *old))
