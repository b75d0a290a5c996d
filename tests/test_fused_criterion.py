"""The criterions' fused loss (default) against ``--no-fused-loss`` (fairseq's own path over
the model's logits): the same loss, nll_loss, accuracy, logged metrics and gradients."""

import pytest
import torch

from .fairseq_helpers import TINY_NMT, build, sample
from .helpers import max_relative_error

pytest.importorskip("fairseq")

LS = ["--criterion", "rev_label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--report-accuracy"]
CE = ["--criterion", "rev_cross_entropy"]
TINY_LM = ["--arch", "rev_lstm_lm", "--decoder-embed-dim", "32", "--decoder-hidden-sizes", "48,32"]


def step(task, model, criterion, batch, seed: int = 3):
    torch.manual_seed(seed)
    model.zero_grad()
    loss, size, log = criterion(model, batch)
    loss.backward()
    return loss.detach(), size, log, [p.grad.clone() for p in model.parameters()]


def compare_paths(data, *extra, task="translation", n=8):
    t, model, fused = build(data, *extra, task=task)
    unfused = build(data, *extra, "--no-fused-loss", task=task)[2]
    assert fused.fused_loss and not unfused.fused_loss
    model.train()
    batch = sample(t, n=n)
    assert batch["target"].eq(t.target_dictionary.pad()).any(), "the batch has padding"
    a, b = step(t, model, fused, batch), step(t, model, unfused, batch)
    assert torch.allclose(a[0], b[0], rtol=1e-5) and a[1] == b[1]
    assert a[2].keys() == b[2].keys()
    for key, value in a[2].items():
        assert float(value) == pytest.approx(float(b[2][key]), rel=1e-5), key
    assert max_relative_error(a[3], b[3]) <= 1e-4
    return a[2]


@pytest.mark.parametrize("criterion", [LS, CE], ids=["label_smoothed", "cross_entropy"])
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("attention", ["emb+slice", "hidden", "none"])
def test_translation_fused_loss_equals_fairseqs_path(multi30k_bin, criterion, tied, attention):
    extra = ["--share-decoder-input-output-embed"] if tied else []
    log = compare_paths(
        multi30k_bin, "--arch", "rev_lstm", *TINY_NMT, "--attention", attention, *criterion, *extra,
        "--dropout-hidden", "0.2", "--dropout-embed", "0.1",
    )  # fmt: skip
    assert log["loss"] > 0 and (criterion is CE or log["n_correct"] >= 0)


@pytest.mark.parametrize("criterion", [LS, CE], ids=["label_smoothed", "cross_entropy"])
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_language_model_fused_loss_equals_fairseqs_path(ptb_bin, criterion, tied):
    extra = ["--share-decoder-input-output-embed"] if tied else []
    compare_paths(
        ptb_bin, *TINY_LM, *criterion, *extra, "--tokens-per-sample", "30", "--sample-break-mode", "eos",
        task="language_modeling",
    )  # fmt: skip


def test_ignore_prefix_size_is_honoured(multi30k_bin):
    compare_paths(multi30k_bin, "--arch", "rev_gru", *TINY_NMT, *LS, "--ignore-prefix-size", "2")


def test_validation_needs_no_backward(multi30k_bin):
    """Under ``model.eval()`` and ``no_grad`` (fairseq's validation) the fused loss equals fairseq's."""
    t, model, fused = build(multi30k_bin, "--arch", "rev_lstm", *TINY_NMT, *LS)
    unfused = build(multi30k_bin, "--arch", "rev_lstm", *TINY_NMT, *LS, "--no-fused-loss")[2]
    model.eval()
    batch = sample(t, n=8)
    with torch.no_grad():
        a, b = fused(model, batch), unfused(model, batch)
    assert torch.allclose(a[0], b[0], rtol=1e-5)
    assert a[2]["n_correct"] == b[2]["n_correct"]
