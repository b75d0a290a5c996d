"""Compiled half-steps (``compile=``): exact with themselves, close to eager, no
recompiles per batch, and a clear error for a bad mode."""

import pytest
import torch

from fairseq_revrnn.core import ReversibleRNN
from fairseq_revrnn.core.halfstep import compiled_graphs

from .helpers import loss_and_grads, max_relative_error


def test_a_bad_compile_mode_names_the_allowed_ones():
    with pytest.raises(ValueError, match="compile must be one of auto, on, off; got 'yes'"):
        ReversibleRNN("lstm", 4, [4], compile="yes")


def test_half_precision_runs_eagerly_and_on_names_the_dtypes(compiling):
    module = ReversibleRNN("gru", 4, [4], compile="on").to(torch.bfloat16)
    with pytest.raises(ValueError, match="supports float32 and float64 models, not torch.bfloat16"):
        module(torch.randn(2, 1, 4, dtype=torch.bfloat16))
    module.compile = "auto"
    graphs = compiled_graphs()
    module(torch.randn(2, 1, 4, dtype=torch.bfloat16))
    assert compiled_graphs() == graphs


def test_on_refuses_when_torch_compile_is_disabled(compiling):
    torch._dynamo.config.disable = True
    module = ReversibleRNN("gru", 4, [4], compile="on")
    with pytest.raises(ValueError, match="TORCH_COMPILE_DISABLE"):
        module(torch.randn(2, 1, 4))
    assert ReversibleRNN("gru", 4, [4], compile="auto")(torch.randn(2, 1, 4)).outputs.shape == (2, 1, 4)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_compiled_and_eager_each_reverse_exactly_and_agree_in_value(cell, compiling):
    weights = ReversibleRNN(cell, 6, [8, 6]).state_dict()
    runs = {}
    for mode in ("on", "off"):
        module = ReversibleRNN(cell, 6, [8, 6], slice_dim=2, chunk_size=3, compile=mode)
        module.load_state_dict(weights)
        x = torch.randn(9, 3, 6, generator=torch.Generator().manual_seed(1), requires_grad=True)
        valid = (torch.arange(9).unsqueeze(1) < torch.tensor([9, 5, 2])).flip(0)
        forward, recovered, _ = module.trace_exact(x, valid)
        assert all(torch.equal(a, b) for f, r in zip(forward, recovered) for a, b in zip(f, r)), mode
        runs[mode] = loss_and_grads(module, x, valid)
    (out_on, g_on), (out_off, g_off) = runs["on"], runs["off"]
    assert torch.allclose(out_on.outputs, out_off.outputs, atol=1e-5)
    assert max_relative_error(g_on, g_off) < 1e-4


def test_new_batch_sizes_do_not_recompile(compiling):
    """After a second batch size (which makes the batch dimension dynamic), training
    steps of any batch size reuse the compiled half-steps."""
    module = ReversibleRNN("lstm", 5, [6, 6], slice_dim=2, compile="on")

    def train_step(batch: int) -> None:
        x = torch.randn(4, batch, 5, requires_grad=True)
        valid = torch.ones(4, batch, dtype=torch.bool)
        valid[-1, 0] = False
        loss_and_grads(module, x, valid)

    for batch in (3, 4):
        train_step(batch)
    graphs = compiled_graphs()
    for batch in (5, 7, 9, 12):
        train_step(batch)
    assert compiled_graphs() == graphs
