"""Discrete forgetting (appendix D, issue 12): forget values 2**-k, exact shifts into
the buffer, straight-through gradients equal to the ordinary mode's."""

import pytest
import torch

from fairseq_revrnn.core import Forgetting, GRUHalf, LSTMHalf, ReversibleRNN
from fairseq_revrnn.core.cells import HalfSpec
from fairseq_revrnn.core.discrete import discrete_forget

from .helpers import assert_exact_and_ordinary, max_relative_error, padded_inputs
from .test_gradients import _HalfStep

BITS = 3


def make(cell: str, estimator: str = "gumbel", **kwargs) -> ReversibleRNN:
    return ReversibleRNN(
        cell, 5, [8, 6], max_forget_bits=BITS, slice_dim=2, discrete_forgetting=True, df_estimator=estimator, **kwargs
    ).double()


@pytest.mark.parametrize("estimator", ["gumbel", "categorical"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_discrete_forgetting_reverses_exactly_and_matches_the_ordinary_gradients(cell, estimator):
    module = make(cell, estimator)
    x, valid = padded_inputs(40)
    assert_exact_and_ordinary(module, x, valid)


def test_forget_values_are_powers_of_two_sampled_from_the_scores():
    torch.manual_seed(0)
    scores = torch.randn(4000, 4, 2)  # (batch, categories k = 0..3, units), laid out category-major
    scores[:, :, 1] = torch.tensor([3.0, 0.0, 0.0, 0.0])
    scores = scores.flatten(1)
    gumbel = -torch.log(-torch.log(torch.rand(4000, 8).clamp_min(1e-30)))
    soft, z = discrete_forget(scores, gumbel, 4, "gumbel", 1.0)
    k = -torch.log2(z)
    assert torch.equal(k, k.round()) and k.min() >= 0 and k.max() <= 3
    assert torch.allclose(soft.sum(1), torch.ones(4000, 2))
    # argmax(scores + Gumbel) is a draw from softmax(scores): unit 1 keeps everything (k = 0) with
    # probability e^3 / (e^3 + 3)
    p0 = torch.exp(torch.tensor(3.0)) / (torch.exp(torch.tensor(3.0)) + 3)
    assert abs((k[:, 1] == 0).double().mean() - p0) < 0.02
    _, z_eval = discrete_forget(scores, None, 4, "gumbel", 1.0)
    assert torch.equal(z_eval[:, 1], torch.ones(4000)), "evaluation takes the most likely value"


@pytest.mark.parametrize("estimator", ["gumbel", "categorical"])
@pytest.mark.parametrize("cell", [GRUHalf, LSTMHalf])
def test_gradcheck_discrete_half_step(cell, estimator):
    """The hand-written straight-through gradients against autograd of the soft value
    (the forward's hard values carry the soft value's gradient)."""
    torch.manual_seed(0)
    n, batch = 4, 3
    fg = Forgetting(BITS, discrete=True)
    px = torch.randn(batch, cell.columns(fg) * n, dtype=torch.float64, requires_grad=True)
    h_o = torch.randn(batch, n, dtype=torch.float64, requires_grad=True)
    w = torch.randn(cell.columns(fg) * n, n, dtype=torch.float64, requires_grad=True)
    old = [torch.randn(batch, n, dtype=torch.float64, requires_grad=True) for _ in cell.state_names]
    spec = HalfSpec(fg, torch.float64, temperature=0.7 if estimator == "gumbel" else 1.0, estimator=estimator)
    noise = -torch.log(-torch.log(torch.rand(batch, cell.noise_columns(fg) * n, dtype=torch.float64)))

    def hand_written(*args):
        return _HalfStep.apply(cell, spec, noise, *args)

    def autograd(*args):
        px_, h_o_, w_, *old_ = args
        G = cell.gates(px_, h_o_, w_, spec, noise)
        if cell is GRUHalf:
            return (G.z * old_[0] + (1 - G.z) * G.g,)
        c = G.f * old_[1] + G.i * G.g
        return G.p * old_[0] + G.o * torch.tanh(c), c

    args = (px, h_o, w, *old)
    outs = hand_written(*args)
    weights = [torch.randn_like(o) for o in outs]
    g_hand = torch.autograd.grad(sum((o * wt).sum() for o, wt in zip(outs, weights)), args)
    g_auto = torch.autograd.grad(sum((o * wt).sum() for o, wt in zip(autograd(*args), weights)), args)
    assert max_relative_error(g_hand, g_auto) <= 1e-12


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_each_step_destroys_whole_bits_and_evaluation_is_deterministic(cell):
    module = make(cell)
    x, _ = padded_inputs(25)
    layer0 = module(x).memory[0]  # the top layer's also counts its attention slices
    assert layer0.ideal_bits == round(layer0.ideal_bits), "a shift by k destroys exactly k bits"
    assert 0 < layer0.ideal_bits <= BITS * layer0.naive_bits / 32, "at most BITS per unit and step"
    module.eval()
    torch.manual_seed(1)
    first = module(x).outputs
    torch.manual_seed(2)
    assert torch.equal(module(x).outputs, first)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_forget_bits": None}, "discrete forgetting needs max_forget_bits"),
        ({"gates": "gumbel"}, "gates='gumbel' and discrete_forgetting exclude each other"),
        ({"df_estimator": "straight"}, "df_estimator must be one of gumbel, categorical; got 'straight'"),
        ({"max_hidden_forget": 0.9}, "discrete forgetting takes no forget-value ceiling"),
    ],
)
def test_bad_discrete_options_name_the_option(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReversibleRNN("lstm", 4, [4], discrete_forgetting=True, **{"max_forget_bits": 3, **kwargs})


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_compiled_discrete_forgetting_reverses_exactly_and_matches_the_ordinary_gradients(cell, compiling):
    module = make(cell, compile="on")
    x, valid = padded_inputs(20)
    assert_exact_and_ordinary(module, x, valid)
