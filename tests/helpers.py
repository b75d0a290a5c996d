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
