"""G2-LSTM and NRU end to end through fairseq's own command-line tools and criterions:
train a few updates, then beam search or fairseq-eval-lm from the checkpoint."""

import math

import pytest

from .data import PLUGIN, cli
from .test_cli import COMMON, json_logs

pytestmark = pytest.mark.cli

TRANSLATION = {
    "g2_lstm": ["--encoder-hidden-size", "32", "--encoder-layers", "2", "--encoder-bidirectional"],
    "nru": ["--encoder-hidden-size", "32", "--memory-size", "16", "--memory-heads", "4", "--nru-layer-norm"],
}
LANGUAGE_MODEL = {
    "g2_lstm_lm": ["--decoder-hidden-size", "32", "--gates", "sharpened"],
    "nru_lm": ["--decoder-hidden-size", "32", "--memory-size", "16", "--memory-heads", "1", "--nru-relu-heads"],
}


def train(data, save, arch: str, *args, updates: int = 2) -> list[dict]:
    proc = cli(
        "fairseq-train", data, "--user-dir", PLUGIN, "--arch", arch, "--save-dir", save, "--max-update", updates,
        "--clip-norm", "1", *args, *COMMON, cwd=save.parent,
    )  # fmt: skip
    steps = json_logs(proc.stderr + proc.stdout, "train_inner")
    assert len(steps) == updates and all(math.isfinite(float(s["loss"])) for s in steps)
    assert (save / "checkpoint_last.pt").exists()
    return steps


@pytest.mark.parametrize("arch", TRANSLATION)
def test_translation_trains_with_fairseqs_criterion_and_beam_searches(multi30k_bin, tmp_path, arch):
    save = tmp_path / "checkpoints"
    train(multi30k_bin, save, arch, "--encoder-embed-dim", "24", *TRANSLATION[arch],
          "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1")  # fmt: skip
    gen = cli(
        "fairseq-generate", multi30k_bin, "--user-dir", PLUGIN, "--path", save / "checkpoint_last.pt",
        "--beam", "5", "--gen-subset", "test", "--batch-size", "32", "--required-batch-size-multiple", "1",
        "--max-len-a", "1", "--max-len-b", "5", cwd=tmp_path,
    )  # fmt: skip
    hypotheses = [line for line in gen.stdout.splitlines() if line.startswith("H-")]
    assert len(hypotheses) == 60
    assert all(math.isfinite(float(line.split("\t")[1])) for line in hypotheses)


@pytest.mark.parametrize("arch", LANGUAGE_MODEL)
def test_language_model_trains_and_evaluates(ptb_bin, tmp_path, arch):
    save = tmp_path / "checkpoints"
    train(ptb_bin, save, arch, "--task", "language_modeling", "--decoder-embed-dim", "24", *LANGUAGE_MODEL[arch],
          "--tokens-per-sample", "35", "--criterion", "cross_entropy", updates=3)  # fmt: skip
    evaluation = cli(
        "fairseq-eval-lm", ptb_bin, "--user-dir", PLUGIN, "--path", save / "checkpoint_last.pt",
        "--tokens-per-sample", "35", "--gen-subset", "test", "--max-tokens", "2000", cwd=tmp_path,
    )  # fmt: skip
    line = [ln for ln in (evaluation.stderr + evaluation.stdout).splitlines() if "Perplexity:" in ln][-1]
    assert 1.0 < float(line.rsplit("Perplexity:", 1)[1]) < 2 * 10000


def test_a_bad_gates_value_exits_non_zero_naming_the_option(multi30k_bin, tmp_path):
    proc = cli(
        "fairseq-train", multi30k_bin, "--user-dir", PLUGIN, "--arch", "g2_lstm", "--gates", "hard",
        "--save-dir", tmp_path / "c", "--max-update", "1", *COMMON, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "--gates: invalid choice: 'hard' (choose from 'sigmoid', 'sharpened', 'gumbel')" in proc.stderr
