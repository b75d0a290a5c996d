"""The output layer and loss fused into the reversible Function (core, no fairseq):
the same sums and gradients as logits followed by fairseq's loss formula."""

import pytest
import torch

from fairseq_revrnn.core import OutputHead, ReversibleRNN
from fairseq_revrnn.core.loss import TokenLoss

from .helpers import max_relative_error

PAD = 1


def reference_sums(logits, target, epsilon):
    """fairseq's ``label_smoothed_nll_loss`` (epsilon 0: cross entropy), summed, and n_correct."""
    wide = torch.promote_types(logits.dtype, torch.float32)
    lprobs = torch.log_softmax(logits.to(wide), -1).reshape(-1, logits.shape[-1])
    target = target.reshape(-1)
    keep = target.ne(PAD)
    nll = -lprobs.gather(1, target.unsqueeze(1)).squeeze(1)[keep].sum()
    smooth = -lprobs.sum(-1)[keep].sum()
    eps_i = epsilon / (lprobs.shape[-1] - 1)
    correct = (lprobs.argmax(-1).eq(target) & keep).sum()
    return torch.stack([(1 - epsilon - eps_i) * nll + eps_i * smooth, nll, correct.to(wide)])


def head_tensors(dt, tied_proj: bool):
    g = torch.Generator().manual_seed(5)
    named = {
        "w_out": torch.randn(13, 7 if tied_proj else 6, generator=g, dtype=dt),
        "b_out": torch.randn(13, generator=g, dtype=dt),
        "w_a": torch.randn(6, 5, generator=g, dtype=dt),
        "w_c": torch.randn(6, 5 + 6, generator=g, dtype=dt),
        "src_embed": torch.randn(12, 5, generator=g, dtype=dt),
    }
    if tied_proj:
        named["w_proj"] = torch.randn(7, 6, generator=g, dtype=dt)
    for t in named.values():
        t.requires_grad_()
    return named


@pytest.mark.parametrize("epsilon", [0.0, 0.1])
@pytest.mark.parametrize("block", [1, 13 * 3, 10**6])
@pytest.mark.parametrize("reversible", [True, False])
def test_fused_sums_and_gradients_equal_logits_then_loss(epsilon, block, reversible):
    """Block sizes of one row, one step and everything; targets with padding; attention head."""
    dt = torch.float64
    module = ReversibleRNN("lstm", 5, [8, 6], max_forget_bits=3).to(dt)
    module.reversible = reversible
    x = torch.randn(9, 3, 5, dtype=dt, requires_grad=True)
    target = torch.randint(2, 13, (9, 3))
    target[6:, 1] = PAD
    src = {"src_tokens": torch.randint(2, 12, (4, 3)), "src_pad": torch.zeros(4, 3, dtype=torch.bool)}
    named = head_tensors(dt, tied_proj=True)
    leaves = [x, *named.values(), *module.parameters()]
    weights = torch.tensor([0.7, 0.3, 5.0], dtype=dt)  # gradient through loss and nll_loss

    unfused = module(x, head=OutputHead(1, **named, **src)).outputs
    target[:3] = unfused.argmax(-1)[:3]  # some correct predictions
    ref = reference_sums(unfused, target, epsilon)
    ref_grads = torch.autograd.grad((ref[:2] * weights[:2]).sum(), leaves)

    loss = TokenLoss(PAD, epsilon, block_elements=block)
    sums = module(x, head=OutputHead(1, loss=loss, **named, **src, target=target)).outputs
    assert sums.shape == (3,)
    assert torch.allclose(sums, ref, rtol=1e-12, atol=1e-12)
    assert sums[2] > 0
    grads = torch.autograd.grad((sums * weights).sum(), leaves)
    assert max_relative_error(grads, ref_grads) <= 1e-9


@pytest.mark.parametrize("dt", [torch.float16, torch.bfloat16])
def test_fused_loss_in_half_precision_is_close_to_float32(dt):
    """Log-probabilities and the output layer's gradient sums are kept in float32."""
    torch.manual_seed(0)
    module = ReversibleRNN("gru", 5, [6], max_forget_bits=3)
    x = torch.randn(20, 4, 5)
    target = torch.randint(2, 13, (20, 4))
    named = head_tensors(torch.float32, tied_proj=False)
    named.pop("w_a"), named.pop("w_c"), named.pop("src_embed")
    results = []
    for dtype in (torch.float32, dt):
        m = module.to(dtype)
        leaves = {k: v.detach().to(dtype).requires_grad_() for k, v in named.items()}
        sums = m(x.to(dtype), head=OutputHead(loss=TokenLoss(PAD, 0.1, 13), **leaves, target=target)).outputs
        assert sums.dtype == torch.float32
        results.append((sums, torch.autograd.grad(sums[0], list(leaves.values()))))
    (s32, g32), (s16, g16) = results
    assert torch.allclose(s16, s32, rtol=2e-2)
    assert max_relative_error([g.float() for g in g16], g32) <= 5e-2


def test_fused_head_needs_loss_and_target_together():
    named = head_tensors(torch.float32, tied_proj=False)
    with pytest.raises(ValueError, match="both loss and target"):
        OutputHead(w_out=named["w_out"], loss=TokenLoss(PAD))
    with pytest.raises(ValueError, match="epsilon"):
        TokenLoss(PAD, epsilon=1.0)
