"""Heads run inside the reversible Function: same gradients, nothing T x B x H kept."""

import torch

from fairseq_revrnn.core import ReversibleRNN, SavedTensorMeter, StepHead

from .helpers import max_relative_error


class ContextHead(StepHead):
    """logits_t = W [y_t ; mean_j(ctx_j * y_t-score)] + b: uses a context tensor."""

    def precompute(self, w, b, ctx):
        return w, b, ctx * 2.0

    def step(self, y, pre, t):
        w, b, ctx = pre
        scores = torch.softmax(torch.einsum("sbh,bh->bs", ctx, y[:, : ctx.shape[-1]]), dim=1)
        context = torch.einsum("bs,sbh->bh", scores, ctx)
        return torch.cat([y, context], dim=1) @ w.t() + b


def test_head_gradients_match_ordinary_mode_and_reach_the_context():
    torch.manual_seed(0)
    dt = torch.float64
    module = ReversibleRNN("lstm", 5, [8, 6], max_forget_bits=3, slice_dim=2).to(dt)
    x = torch.randn(9, 3, 5, dtype=dt, requires_grad=True)
    ctx = torch.randn(4, 3, 2, dtype=dt, requires_grad=True)
    w = torch.randn(7, 8, dtype=dt, requires_grad=True)
    b = torch.randn(7, dtype=dt, requires_grad=True)
    valid = torch.ones(9, 3, dtype=torch.bool)
    valid[:3, 1] = False
    results = []
    for reversible in (True, False):
        module.reversible = reversible
        out = module(x, valid, head=ContextHead([w, b, ctx]))
        assert out.outputs.shape == (9, 3, 7)
        loss = torch.log_softmax(out.outputs, -1)[..., 0].sum() + out.slices.sum()
        results.append((out.outputs, torch.autograd.grad(loss, [x, ctx, w, b, *module.parameters()])))
    (o_r, g_r), (o_o, g_o) = results
    assert torch.allclose(o_r, o_o, rtol=1e-12, atol=1e-12)
    assert max_relative_error(g_r, g_o) <= 1e-6
    assert g_r[1].abs().sum() > 0


def test_head_keeps_no_top_layer_outputs():
    torch.manual_seed(0)
    module = ReversibleRNN("gru", 16, [32, 32], max_forget_bits=3)
    x = torch.randn(50, 4, 16, requires_grad=True)
    w = torch.randn(11, 32, requires_grad=True)
    b = torch.zeros(11, requires_grad=True)
    head = ContextHead([torch.cat([w, torch.zeros(11, 2)], 1).detach().requires_grad_(), b, torch.randn(3, 4, 2)])
    with SavedTensorMeter(exclude=list(module.parameters())) as meter:
        out = module(x, head=head)
    out.outputs.sum().backward()
    assert (50, 4, 32) not in meter.shapes and (50, 4, 16) in meter.shapes  # only the given input


def test_output_head_gradients_match_ordinary_mode_through_its_linear_layer():
    """The output projection's weight and bias gradients are computed by the engine for all steps
    at once (``linear_slots``); ordinary autograd is the reference."""
    from fairseq_revrnn.core import OutputHead

    dt = torch.float64
    module = ReversibleRNN("gru", 5, [8, 6], max_forget_bits=3, slice_dim=2).to(dt)
    x = torch.randn(9, 3, 5, dtype=dt, requires_grad=True)
    src_tokens = torch.randint(2, 12, (4, 3))
    src_pad = torch.zeros(4, 3, dtype=torch.bool)
    src_pad[3, 1] = True
    leaves = {
        "w_out": torch.randn(13, 7, dtype=dt), "b_out": torch.randn(13, dtype=dt),
        "w_proj": torch.randn(7, 6, dtype=dt), "w_a": torch.randn(6, 5 + 2, dtype=dt),
        "w_c": torch.randn(6, 7 + 6, dtype=dt), "slices": torch.randn(4, 3, 2, dtype=dt),
        "src_embed": torch.randn(12, 5, dtype=dt),
    }  # fmt: skip
    for t in leaves.values():
        t.requires_grad_()
    results = []
    for reversible in (True, False):
        module.reversible = reversible
        head = OutputHead(1, **leaves, src_tokens=src_tokens, src_pad=src_pad)
        assert head.linear_slots is not None and head.linear_slots[1] is not None
        out = module(x, head=head)
        loss = torch.log_softmax(out.outputs, -1)[..., :4].sum() * 3.0
        results.append(torch.autograd.grad(loss, [*leaves.values(), x, *module.parameters()]))
    assert max_relative_error(results[0], results[1]) <= 1e-6
    assert all(g.abs().sum() > 0 for g in results[0])
