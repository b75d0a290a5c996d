"""The same guarantees on a GPU; skipped where CUDA is not available (CI)."""

import pytest
import torch

from fairseq_revrnn.core import ReversibleRNN

from .helpers import loss_and_grads, max_relative_error

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_exact_reversal_on_cuda(cell):
    torch.manual_seed(0)
    module = ReversibleRNN(cell, 16, [32, 24], max_forget_bits=2, slice_dim=4).cuda()
    x = torch.randn(300, 8, 16, device="cuda") * 3
    forward, recovered, pushes = module.trace_exact(x)
    assert pushes > 0
    assert all(torch.equal(a, b) for fa, ra in zip(forward, recovered) for a, b in zip(fa, ra))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_gradients_match_on_cuda(cell):
    torch.manual_seed(0)
    module = ReversibleRNN(cell, 16, [32, 24], max_forget_bits=3, slice_dim=4).cuda().double()
    x = torch.randn(60, 8, 16, device="cuda", dtype=torch.float64, requires_grad=True)
    _, g_rev = loss_and_grads(module, x, reversible=True)
    _, g_ord = loss_and_grads(module, x, reversible=False)
    assert max_relative_error(g_rev, g_ord) <= 1e-6


def test_peak_memory_is_lower_on_cuda():
    torch.manual_seed(0)
    module = ReversibleRNN("lstm", 256, [256, 256], max_forget_bits=3).cuda()
    x = torch.randn(200, 32, 256, device="cuda", requires_grad=True)
    peaks = {}
    for reversible in (True, False):
        module.reversible = reversible
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        module(x).outputs.sum().backward()
        torch.cuda.synchronize()
        peaks[reversible] = torch.cuda.max_memory_allocated() - base
    assert peaks[False] > 3 * peaks[True], peaks
