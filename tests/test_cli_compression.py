"""Gate compression end to end: train a G2-LSTM a few updates with fairseq-train, compress its
checkpoint with scripts/compress_gates.py, and load the result in fairseq-generate /
fairseq-eval-lm unchanged; the gate values of the trained models (the histograms' data)."""

import math
import subprocess
import sys

import pytest

from fairseq_revrnn.recipes.gate_values import gate_values

from .data import PLUGIN, REPO, cli
from .test_cli_units import train

pytestmark = pytest.mark.cli

SCRIPT = REPO / "scripts" / "compress_gates.py"


def compress(checkpoint, out, *args, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--path", str(checkpoint), "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_a_compressed_translation_model_beam_searches(multi30k_bin, tmp_path):
    save = tmp_path / "checkpoints"
    train(multi30k_bin, save, "g2_lstm", "--encoder-embed-dim", "24", "--encoder-hidden-size", "32",
          "--criterion", "cross_entropy")  # fmt: skip
    for name, args in {"round_clip": ["--round-step", "0.5", "--clip", "1.0"], "rank": ["--rank", "8"]}.items():
        out = tmp_path / f"{name}.pt"
        report = compress(save / "checkpoint_last.pt", out, *args).stdout
        assert "8 gate blocks" in report  # i and f of encoder and decoder, weight_ih and weight_hh
        gen = cli(
            "fairseq-generate", multi30k_bin, "--user-dir", PLUGIN, "--path", out, "--beam", "5",
            "--gen-subset", "test", "--batch-size", "32", "--required-batch-size-multiple", "1",
            "--max-len-a", "1", "--max-len-b", "5", cwd=tmp_path,
        )  # fmt: skip
        hypotheses = [line for line in gen.stdout.splitlines() if line.startswith("H-")]
        assert len(hypotheses) == 60, name
    values = gate_values(save / "checkpoint_last.pt", multi30k_bin, "valid")
    assert values["input"].numel() == values["forget"].numel() == 32 * tokens(multi30k_bin / "valid.en-de.de")
    assert 0 < float(values["forget"].min()) and float(values["forget"].max()) < 1
    refused = compress(save / "checkpoint_last.pt", tmp_path / "x.pt", "--rank", "33", check=False)
    assert refused.returncode == 2 and "--rank 33 is larger than the rank" in refused.stderr
    assert not (tmp_path / "x.pt").exists()


def test_a_compressed_language_model_evaluates(ptb_bin, tmp_path):
    save = tmp_path / "checkpoints"
    train(ptb_bin, save, "g2_lstm_lm", "--task", "language_modeling", "--decoder-embed-dim", "24",
          "--decoder-hidden-size", "32", "--tokens-per-sample", "35", "--criterion", "cross_entropy")  # fmt: skip
    out = tmp_path / "compressed.pt"
    report = compress(save / "checkpoint_last.pt", out, "--round-step", "0.2", "--clip", "0.4", "--rank", "4").stdout
    assert "rank 4 factored" in report
    evaluation = cli(
        "fairseq-eval-lm", ptb_bin, "--user-dir", PLUGIN, "--path", out,
        "--tokens-per-sample", "35", "--gen-subset", "test", "--max-tokens", "2000", cwd=tmp_path,
    )  # fmt: skip
    line = [ln for ln in (evaluation.stderr + evaluation.stdout).splitlines() if "Perplexity:" in ln][-1]
    assert math.isfinite(float(line.rsplit("Perplexity:", 1)[1]))
    values = gate_values(save / "checkpoint_last.pt", ptb_bin, "valid")
    assert values["input"].numel() == 32 * tokens(ptb_bin / "valid")


def tokens(prefix) -> int:
    """Tokens (end-of-sentence marks included) in a binarised split: the decoder's real steps."""
    from fairseq.data import data_utils

    dataset = data_utils.load_indexed_dataset(str(prefix), None)  # its sizes live in its memory map
    return int(dataset.sizes.sum())


def test_a_checkpoint_of_another_model_is_refused(multi30k_bin, tmp_path):
    save = tmp_path / "checkpoints"
    train(multi30k_bin, save, "nru", "--encoder-embed-dim", "16", "--encoder-hidden-size", "16",
          "--memory-size", "4", "--memory-heads", "1", "--criterion", "cross_entropy", updates=1)  # fmt: skip
    proc = compress(save / "checkpoint_last.pt", tmp_path / "x.pt", "--round-step", "0.5", check=False)
    assert proc.returncode == 2 and "is a 'nru' checkpoint, not a g2_lstm / g2_lstm_lm model" in proc.stderr
