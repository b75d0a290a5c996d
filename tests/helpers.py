"""Shared test helpers: run a stack in both modes on the same loss."""

import torch


def loss_and_grads(module, x, valid=None, state=None, reversible=True, seed=0):
    """A loss touching outputs, slices and final states; grads of x, state, params."""
    module.reversible = reversible
    torch.manual_seed(seed)
    out = module(x, valid, state)
    g = torch.Generator().manual_seed(123)
    loss = (out.outputs * torch.randn(out.outputs.shape, generator=g, dtype=out.outputs.dtype)).sum()
    if out.slices.numel():
        loss = loss + (out.slices * torch.randn(out.slices.shape, generator=g, dtype=out.slices.dtype)).sum()
    for layer in out.final:
        for v in layer:
            loss = loss + (v * torch.randn(v.shape, generator=g, dtype=v.dtype)).sum()
    leaves = [x] + [v for layer in (state or []) for v in layer] + list(module.parameters())
    return out, torch.autograd.grad(loss, leaves)


def max_relative_error(a, b):
    return max(((u - v).abs().max() / v.abs().max().clamp_min(1e-30)).item() for u, v in zip(a, b))


def padded_inputs(steps: int, features: int = 5):
    """(T, 3, features) float64 inputs with gradient, and a mask padding the last two sequences
    (lengths T, T - 7 and 5)."""
    x = torch.randn(steps, 3, features, dtype=torch.float64, requires_grad=True)
    valid = torch.arange(steps)[:, None] < torch.tensor([steps, steps - 7, 5])
    return x, valid


def assert_exact_and_ordinary(module, x, valid=None, same_outputs: bool = True) -> None:
    """``module`` reverses every state exactly and its reversible gradients equal the ordinary
    mode's (both modes computing the same outputs)."""
    forward, recovered, _ = module.trace_exact(x, valid)
    assert all(torch.equal(a, b) for f, r in zip(forward, recovered) for a, b in zip(f, r))
    (out_rev, g_rev), (out_ord, g_ord) = (loss_and_grads(module, x, valid, reversible=r) for r in (True, False))
    if same_outputs:
        assert torch.equal(out_rev.outputs, out_ord.outputs)
    assert max_relative_error(g_rev, g_ord) <= 1e-6
