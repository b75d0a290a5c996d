"""Long sequences: bounding the forget value of h keeps a RevLSTM's states
bounded, exactly reversible and with gradients equal to the ordinary mode's."""

import math

import pytest
import torch

from fairseq_revrnn.core import ReversibleRNN

from .helpers import loss_and_grads, max_relative_error


def saturated(cell: str, bound, seed: int = 0) -> ReversibleRNN:
    """A stack whose gates saturate (weights x 8): the worst case for the growth of h."""
    torch.manual_seed(seed)
    module = ReversibleRNN(cell, 8, [16, 16], max_forget_bits=3, max_hidden_forget=bound)
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(8)
    return module


def test_revlstm_states_grow_without_a_bound_and_stay_below_it_with_one():
    x = torch.randn(1000, 4, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        free, _ = saturated("lstm", None).advance(x)
        bounded, state = saturated("lstm", 0.9375).advance(x)
    assert free.abs().max() > 100, "the paper's cell: p up to 1023/1024, |h| grows towards 1024"
    assert bounded.abs().max() <= 1 / (1 - 0.9375)
    assert all(v.abs().max() <= 16 * 2**23 for v in state.ints[-1][:1])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bounded_forgetting_is_exact_and_costs_at_least_its_bits(cell):
    x = torch.randn(300, 4, 8, generator=torch.Generator().manual_seed(2))
    forward, recovered, pushes = saturated(cell, 0.75).trace_exact(x)
    assert pushes > 0
    assert all(torch.equal(a, b) for fa, ra in zip(forward, recovered) for a, b in zip(fa, ra))
    free = saturated(cell, None)(x).memory
    bounded = saturated(cell, 0.75)(x).memory
    h_multiplications = 300 * 4 * 16  # steps x batch x units of h, per layer
    assert sum(m.ideal_bits for m in bounded) > sum(m.ideal_bits for m in free)
    assert min(m.ideal_bits for m in bounded) >= -math.log2(0.75) * h_multiplications


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bounded_forgetting_gradients_match_ordinary_mode(cell):
    torch.manual_seed(3)
    module = ReversibleRNN(cell, 6, [10, 8], max_forget_bits=2, max_hidden_forget=0.8, slice_dim=2).double()
    x = torch.randn(40, 3, 6, dtype=torch.float64, requires_grad=True)
    _, g_rev = loss_and_grads(module, x, reversible=True)
    _, g_ord = loss_and_grads(module, x, reversible=False)
    assert max_relative_error(g_rev, g_ord) <= 1e-6


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(max_hidden_forget=1.0), r"max_hidden_forget must be a number in \(0\.125, 1\)"),
        (dict(max_hidden_forget=0.1), r"max_hidden_forget must be a number in \(0\.125, 1\)"),
        (dict(max_hidden_forget=0.1255), r"leaves no forget value above 0\.125"),
        (dict(max_hidden_forget=0.9, no_forgetting=True), "the no-forgetting variant has none"),
    ],
)
def test_bad_bounds_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReversibleRNN("lstm", 4, [8], max_forget_bits=3, **kwargs)
