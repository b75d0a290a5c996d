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


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_reversal_is_exact_on_cuda(dtype):
    torch.manual_seed(0)
    module = ReversibleRNN("lstm", 16, [32, 24], max_forget_bits=2, slice_dim=4, max_hidden_forget=0.9375)
    module = module.cuda().to(dtype)
    x = (torch.randn(300, 8, 16, device="cuda") * 3).to(dtype)
    forward, recovered, pushes = module.trace_exact(x)
    assert pushes > 0
    assert all(torch.equal(a, b) for fa, ra in zip(forward, recovered) for a, b in zip(fa, ra))


@pytest.mark.cli
@pytest.mark.parametrize("flag", ["--fp16", "--bf16", "--memory-efficient-fp16"])
def test_fairseq_half_precision_training_on_cuda(multi30k_bin, tmp_path, flag):
    import math

    from .data import cli
    from .test_cli import MEMORY_KEYS, json_logs, translation_args

    args = translation_args(multi30k_bin, tmp_path / "checkpoints", "lstm", "emb+slice")
    train = cli("fairseq-train", *args, flag, "--max-update", "3", cwd=tmp_path)
    steps = json_logs(train.stderr + train.stdout, "train_inner")
    assert len(steps) == 3 and MEMORY_KEYS <= set(steps[-1])
    assert all(math.isfinite(float(s["loss"])) for s in steps)


def test_fused_step_keeps_far_less_than_fairseqs_lstm_on_cuda(multi30k_bin):
    """A whole training step (model + criterion + backward) on the GPU, measured with
    ``torch.cuda.max_memory_allocated`` through ``StepMemory``."""
    from fairseq_revrnn.recipes.steps import build, training_step

    from .fairseq_helpers import TINY_NMT, sample

    results = {}
    for name, args in {
        "rev": ["--arch", "rev_lstm", *TINY_NMT, "--criterion", "rev_cross_entropy"],
        "lstm": ["--arch", "lstm", *TINY_NMT, "--decoder-out-embed-dim", "40", "--criterion", "cross_entropy"],
    }.items():
        task, model, criterion = build(multi30k_bin, *args)
        batch = sample(task, n=32)
        from fairseq import utils

        results[name] = training_step(model.cuda(), criterion, utils.move_to_cuda(batch), "cuda")
    assert results["lstm"].live > 5 * results["rev"].live, results
