"""float16 and bfloat16: the integer path does not depend on the float dtype's
range, reversal stays bit-exact, gradients stay close to float32 ones."""

import pytest
import torch

from fairseq_revrnn.core import ReversibleRNN, to_fixed, to_float

from .helpers import loss_and_grads, max_relative_error

HALF = [torch.float16, torch.bfloat16]


def tolerance(dtype: torch.dtype) -> float:
    """Ten units in the last place of ``dtype``: float16 ~1e-2, bfloat16 ~8e-2 relative error."""
    return 10 * torch.finfo(dtype).eps


@pytest.mark.parametrize("dtype", HALF)
def test_fixed_point_conversions_do_not_pass_through_the_narrow_range(dtype):
    h = torch.tensor([3.0, -200.5, 1000.25, 2.0**-20], dtype=dtype)
    ints = to_fixed(h)
    assert ints.tolist() == [round(v * 2**23) for v in h.double().tolist()]
    assert torch.equal(to_float(ints, dtype), h)
    assert torch.equal(to_float(torch.tensor([123 * 2**23]), dtype), torch.tensor([123.0], dtype=dtype))


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_reversal_is_bit_exact_in_half_precision(cell, dtype):
    torch.manual_seed(0)
    module = ReversibleRNN(cell, 8, [16, 12], max_forget_bits=2, slice_dim=3).to(dtype)
    x = (torch.randn(300, 4, 8) * 3).to(dtype)
    forward, recovered, pushes = module.trace_exact(x)
    assert pushes > 0
    assert all(torch.equal(a, b) for fa, ra in zip(forward, recovered) for a, b in zip(fa, ra))
    assert max(v.abs().max().item() for v in forward[-1]) > 2**16, "states beyond float16's range as integers"


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_half_precision_gradients_are_finite_and_close_to_float32(cell, dtype):
    torch.manual_seed(0)
    ref = ReversibleRNN(cell, 8, [16, 12], max_forget_bits=3, slice_dim=3)
    module = ReversibleRNN(cell, 8, [16, 12], max_forget_bits=3, slice_dim=3).to(dtype)
    module.load_state_dict(ref.state_dict())
    x = torch.randn(60, 4, 8).to(dtype).requires_grad_()
    out, grads = loss_and_grads(module, x)
    out32, grads32 = loss_and_grads(ref, x.detach().float().requires_grad_())
    assert out.outputs.dtype == dtype and all(g.dtype == dtype for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)
    assert (out.outputs.float() - out32.outputs).abs().max() <= tolerance(dtype) * out32.outputs.abs().max()
    assert max_relative_error([g.float() for g in grads], grads32) <= tolerance(dtype)
    _, ordinary = loss_and_grads(module, x, reversible=False)
    assert max_relative_error([g.float() for g in grads], [g.float() for g in ordinary]) <= tolerance(dtype)
