"""What a whole fairseq training step holds, measured from the allocator (``StepMemory``) and
from the autograd graph (``graph_tensors``), not from ``save_for_backward`` hooks.

Bound (reversible, fused loss): between forward and backward the step keeps
  fixed:     16 int64 words per unit, state variable and layer, per sequence (states, buffers)
  per step:  the buffers' overflow words (at most one per ~53 forgotten bits) and, per source
             position, the attention slice (k floats) and the padding masks (16 bytes allowed)
and nothing with a T x B x {H, E, V} or S x B x H footprint. ``--no-fused-loss`` and
``--no-reversible`` break it: the test sees their logits and states.
"""

import math

import pytest
import torch

from fairseq_revrnn.core.meter import StepMemory, graph_tensors

from .fairseq_helpers import TINY_NMT, build, synthetic_batch

pytest.importorskip("fairseq")

BATCH, BITS, K = 6, 3, 6
LENGTHS = (10, 40)
NMT = [*TINY_NMT, "--encoder-layers", "2", "--decoder-layers", "2", "--max-forget-bits", str(BITS)]
NMT += ["--criterion", "rev_label_smoothed_cross_entropy", "--label-smoothing", "0.1"]
LM = ["--arch", "rev_lstm_lm", "--decoder-embed-dim", "40", "--decoder-hidden-sizes", "48,48", "--tokens-per-sample"]
LM_TAIL = ["--max-forget-bits", str(BITS), "--criterion", "rev_cross_entropy"]


def measure(model, criterion, batch):
    """Live bytes after the forward, the step's peak, and the shapes the graph keeps (parameters excluded)."""
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    with StepMemory() as meter:
        loss, _, _ = criterion(model, batch)
        meter.mark("forward")
        kept = [tuple(t.shape) for t in graph_tensors(loss) if t.untyped_storage().data_ptr() not in params]
        loss.backward()
    return meter.live["forward"], meter.peak, kept


def bound(length: int, source_length: int, layer_units: list[int], nvars: int, slice_dim: int) -> int:
    words = 16 + math.ceil(max(length, source_length) * BITS / 53)
    return BATCH * (sum(layer_units) * nvars * 8 * words + source_length * (4 * slice_dim + 16))


def too_big(shape, steps: int, dims) -> bool:
    """A per-position footprint: batch rows (or steps x batch rows flattened), and at
    least half of steps x batch x the smallest model dimension."""
    rows = BATCH in shape or steps * BATCH in shape
    return rows and math.prod(shape) >= steps * BATCH * min(dims) // 2


@pytest.mark.parametrize("attention", ["none", "slice", "emb", "emb+slice"])
def test_translation_step_keeps_only_buffers_and_slices(multi30k_bin, attention):
    k = K if "slice" in attention else 0
    extra = ["--attention-slice-dim", str(K)] if k else []
    task, model, criterion = build(multi30k_bin, "--arch", "rev_lstm", *NMT, "--attention", attention, *extra)
    dims = (48, 40, len(task.target_dictionary))
    for length in LENGTHS:
        live, _, kept = measure(model, criterion, synthetic_batch(task, BATCH, length, length))
        assert not [s for s in kept if too_big(s, length, dims)], kept
        assert live <= bound(length, length, [48] * 4, 2, k), (length, live)


def test_hidden_attention_keeps_exactly_the_encoder_states(multi30k_bin):
    task, model, criterion = build(multi30k_bin, "--arch", "rev_gru", *NMT, "--attention", "hidden")
    _, _, kept = measure(model, criterion, synthetic_batch(task, BATCH, 30, 30))
    assert [s for s in kept if too_big(s, 30, (48, 40))] == [(30, BATCH, 48)]


def test_language_model_step_keeps_only_buffers(ptb_bin):
    lives = []
    for length in LENGTHS:
        task, model, criterion = build(ptb_bin, *LM, str(length), *LM_TAIL, task="language_modeling")
        live, _, kept = measure(model, criterion, synthetic_batch(task, BATCH, length))
        assert not [s for s in kept if too_big(s, length, (48, 40, len(task.target_dictionary)))], kept
        assert live <= bound(length, 0, [48, 48], 2, 0), (length, live)
        lives.append(live)


def test_peak_grows_with_length_only_by_buffers_and_slices(multi30k_bin):
    """With a small loss block the step's peak (backward included) hardly depends on T."""
    task, model, criterion = build(
        multi30k_bin, "--arch", "rev_lstm", *NMT, "--attention-slice-dim", str(K), "--fused-loss-block-mb", "0.01"
    )
    peaks = [measure(model, criterion, synthetic_batch(task, BATCH, n, n))[1] for n in LENGTHS]
    growth = bound(LENGTHS[1], LENGTHS[1], [48] * 4, 2, K) - bound(LENGTHS[0], LENGTHS[0], [48] * 4, 2, K)
    assert peaks[1] - peaks[0] <= 2 * growth, peaks


@pytest.mark.parametrize("flag", ["--no-fused-loss", "--no-reversible"])
def test_the_meter_sees_logits_and_states_of_the_other_paths(multi30k_bin, flag):
    task, model, criterion = build(multi30k_bin, "--arch", "rev_lstm", *NMT, "--attention-slice-dim", str(K), flag)
    length = LENGTHS[1]
    live, _, kept = measure(model, criterion, synthetic_batch(task, BATCH, length, length))
    vocab = len(task.target_dictionary)
    assert [s for s in kept if math.prod(s) == length * BATCH * vocab], "the logits are kept"
    assert live > length * BATCH * vocab * 4 > bound(length, length, [48] * 4, 2, K)


def test_the_autograd_context_holds_tensors_only_through_save_for_backward():
    """The reversible Function's context keeps a tensorless description of the call: no attention
    keys, annotations, inputs or head tensors in its attributes."""
    from fairseq_revrnn.core import EmbeddingInput, OutputHead, ReversibleRNN
    from fairseq_revrnn.core.meter import context_tensors

    module = ReversibleRNN("lstm", 8, [12], slice_dim=2)
    emb = torch.randn(20, 8, requires_grad=True)
    named = {"w_out": torch.randn(20, 12), "w_a": torch.randn(12, 8), "w_c": torch.randn(12, 20)}
    head = OutputHead(0, **named, src_embed=emb, src_tokens=torch.randint(1, 20, (5, 3)))
    out = module(EmbeddingInput(torch.randint(1, 20, (7, 3)), emb), head=head)
    node = out.outputs.grad_fn
    assert type(node).__name__ == "ReversibleStackFunctionBackward"
    assert context_tensors(node) == []
    assert len(node.saved_tensors) > 0
