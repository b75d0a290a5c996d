"""Fixed-point radices as options (issue 12): RH (states) and RZ (forget values)
other than the paper's 23 and 10 reverse exactly and keep the ordinary gradients."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fairseq_revrnn.core import ReversibleRNN
from fairseq_revrnn.core.fixed_point import MAX_RADIX_SUM

from .helpers import loss_and_grads, max_relative_error


@given(
    cell=st.sampled_from(["gru", "lstm"]),
    hidden_radix=st.integers(8, 40),
    forget_radix=st.integers(4, 12),
    bits=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
)
def test_other_radices_reverse_exactly(cell, hidden_radix, forget_radix, bits, seed):
    torch.manual_seed(seed)
    module = ReversibleRNN(
        cell, 4, [6, 4], max_forget_bits=bits, slice_dim=1, hidden_radix=hidden_radix, forget_radix=forget_radix
    ).double()
    x = torch.randn(30, 2, 4, dtype=torch.float64) * 2
    valid = torch.arange(30)[:, None] < torch.tensor([30, 17])
    forward, recovered, _ = module.trace_exact(x, valid)
    assert all(torch.equal(a, b) for f, r in zip(forward, recovered) for a, b in zip(f, r))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("hidden_radix, forget_radix", [(12, 6), (30, 14)])
def test_other_radices_keep_the_ordinary_gradients_and_their_grid(cell, hidden_radix, forget_radix):
    module = ReversibleRNN(
        cell, 4, [8, 6], max_forget_bits=3, slice_dim=2, hidden_radix=hidden_radix, forget_radix=forget_radix
    ).double()
    x = torch.randn(25, 3, 4, dtype=torch.float64, requires_grad=True)
    (out, g_rev), (_, g_ord) = (loss_and_grads(module, x, reversible=r) for r in (True, False))
    assert max_relative_error(g_rev, g_ord) <= 1e-6
    scaled = out.outputs.detach() * 2.0**hidden_radix
    assert torch.equal(scaled, scaled.round()), "outputs are multiples of 2**-hidden_radix"


def test_a_coarser_grid_changes_the_values_and_the_bits_destroyed():
    weights = ReversibleRNN("lstm", 4, [6]).state_dict()
    x = torch.randn(20, 2, 4)
    outs = []
    for radices in ({}, {"hidden_radix": 10, "forget_radix": 5}):
        module = ReversibleRNN("lstm", 4, [6], **radices)
        module.load_state_dict(weights)
        outs.append(module(x))
    assert not torch.equal(outs[0].outputs, outs[1].outputs)
    assert outs[0].memory[0].ideal_bits != outs[1].memory[0].ideal_bits


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"hidden_radix": 0}, f"hidden_radix must be an integer in 1..{MAX_RADIX_SUM - 1}; got 0"),
        ({"forget_radix": 17}, "forget_radix must be an integer in 1..16; got 17"),
        ({"hidden_radix": 40, "forget_radix": 13}, f"hidden_radix \\+ forget_radix must be at most {MAX_RADIX_SUM}"),
        ({"forget_radix": 4, "max_forget_bits": 5}, r"max_forget_bits must be an integer in 1\.\.4 \(the forget"),
    ],
)
def test_bad_radices_name_the_option_and_the_limit(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReversibleRNN("gru", 4, [4], **kwargs)
