"""End to end through fairseq's own command-line tools (subprocess)."""

import json
import math
import subprocess
import sys

import pytest
import sacrebleu

from fairseq_revrnn.core.attention import ATTENTION_TYPES

from .data import BIN, PLUGIN, REPO, cli
from .fairseq_helpers import TINY_NMT

COMMON = [
    "--optimizer", "adam", "--lr", "0.003", "--max-tokens", "1500", "--num-workers", "0",
    "--log-format", "json", "--log-interval", "1", "--no-epoch-checkpoints", "--seed", "1",
]  # fmt: skip
MEMORY_KEYS = {"mem_savings", "mem_savings_ideal", "enc_mem_savings", "dec_mem_savings"}


def json_logs(output: str, tag: str) -> list[dict]:
    found = []
    for line in output.splitlines():
        if f"| {tag} |" in line:
            found.append(json.loads(line.split(f"| {tag} | ", 1)[1]))
    return found


def translation_args(data, save, cell, attention):
    extra = ["--attention-slice-dim", "6"] if "slice" in attention else []
    return [
        data, "--user-dir", PLUGIN, "--arch", f"rev_{cell}", *TINY_NMT, "--attention", attention, *extra,
        "--criterion", "rev_label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--save-dir", save, *COMMON,
    ]  # fmt: skip


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("attention", ATTENTION_TYPES)
def test_translation_train_generate_resume(multi30k_bin, tmp_path, cell, attention):
    save = tmp_path / "checkpoints"
    args = translation_args(multi30k_bin, save, cell, attention)
    train = cli("fairseq-train", *args, "--max-update", "2", cwd=tmp_path)
    assert (save / "checkpoint_last.pt").exists()
    steps = json_logs(train.stderr + train.stdout, "train_inner")
    assert len(steps) == 2 and MEMORY_KEYS <= set(steps[-1])
    assert all(math.isfinite(float(s["loss"])) for s in steps)
    assert float(steps[-1]["dec_mem_savings"]) > 1.0
    if attention == "hidden":  # every h is kept; an LSTM still saves c
        assert float(steps[-1]["enc_mem_savings"]) < (2.0 if cell == "lstm" else 1.0)
    else:
        assert float(steps[-1]["enc_mem_savings"]) > 1.0

    gen = cli(
        "fairseq-generate", multi30k_bin, "--user-dir", PLUGIN, "--path", save / "checkpoint_last.pt",
        "--beam", "5", "--gen-subset", "test", "--batch-size", "16", "--required-batch-size-multiple", "1",
        "--max-len-a", "1", "--max-len-b", "5",
        cwd=tmp_path,
    )  # fmt: skip
    hyps = {
        int(line.split("\t")[0][2:]): line.split("\t")[2] for line in gen.stdout.splitlines() if line.startswith("H-")
    }
    refs = {
        int(line.split("\t")[0][2:]): line.split("\t")[1] for line in gen.stdout.splitlines() if line.startswith("T-")
    }
    assert len(hyps) == len(refs) == 60
    order = sorted(refs)
    bleu = sacrebleu.corpus_bleu([hyps[i] for i in order], [[refs[i] for i in order]])
    assert 0.0 <= bleu.score <= 100.0

    resume = cli("fairseq-train", *args, "--max-update", "3", cwd=tmp_path)
    out = resume.stderr + resume.stdout
    assert "Loaded checkpoint" in out and "@ 2 updates" in out
    assert json_logs(out, "train_inner")[-1]["num_updates"] == "3"


def test_interactive_translates_stdin(multi30k_bin, tmp_path):
    save = tmp_path / "checkpoints"
    cli("fairseq-train", *translation_args(multi30k_bin, save, "lstm", "emb+slice"), "--max-update", "1", cwd=tmp_path)
    proc = subprocess.run(
        [str(BIN / "fairseq-interactive"), str(multi30k_bin), "--user-dir", str(PLUGIN),
         "--path", str(save / "checkpoint_last.pt"), "--beam", "5", "--source-lang", "en", "--target-lang", "de",
         "--max-len-b", "5"],
        input="a man is riding a bike .\ntwo dogs play in the snow .\n", capture_output=True, text=True, cwd=tmp_path,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sum(line.startswith("H-") for line in proc.stdout.splitlines()) == 2


def test_language_model_train_eval_resume(ptb_bin, tmp_path):
    save = tmp_path / "checkpoints"
    args = [
        ptb_bin, "--user-dir", PLUGIN, "--task", "language_modeling", "--arch", "rev_lstm_lm",
        "--decoder-embed-dim", "32", "--decoder-hidden-size", "32", "--tokens-per-sample", "35",
        "--sample-break-mode", "none", "--criterion", "rev_cross_entropy", "--save-dir", save, *COMMON,
    ]  # fmt: skip
    train = cli("fairseq-train", *args, "--max-update", "3", cwd=tmp_path)
    steps = json_logs(train.stderr + train.stdout, "train_inner")
    assert {"mem_savings", "mem_savings_ideal"} <= set(steps[-1])
    assert not {"enc_mem_savings", "dec_mem_savings"} & set(steps[-1])
    evaluation = cli(
        "fairseq-eval-lm", ptb_bin, "--user-dir", PLUGIN, "--path", save / "checkpoint_last.pt",
        "--tokens-per-sample", "35", "--gen-subset", "test", "--max-tokens", "2000", cwd=tmp_path,
    )  # fmt: skip
    line = [ln for ln in (evaluation.stderr + evaluation.stdout).splitlines() if "Perplexity:" in ln][-1]
    perplexity = float(line.rsplit("Perplexity:", 1)[1])
    assert 1.0 < perplexity < 2 * 10000
    resume = cli("fairseq-train", *args, "--max-update", "4", cwd=tmp_path)
    assert json_logs(resume.stderr + resume.stdout, "train_inner")[-1]["num_updates"] == "4"


def test_checkpoints_of_argparse_models_load_with_the_plugin(multi30k_bin, tmp_path):
    """fairseq's own `lstm` stores an argparse.Namespace: plain torch 2.13 refuses it."""
    save = tmp_path / "lstm"
    cli(
        "fairseq-train", multi30k_bin, "--arch", "lstm", "--encoder-embed-dim", "16", "--decoder-embed-dim", "16",
        "--encoder-hidden-size", "16", "--decoder-hidden-size", "16", "--decoder-out-embed-dim", "16",
        "--criterion", "cross_entropy", "--save-dir", save, "--max-update", "1", *COMMON, cwd=tmp_path,
    )  # fmt: skip
    gen = ["fairseq-generate", multi30k_bin, "--path", save / "checkpoint_last.pt", "--gen-subset", "test",
           "--beam", "2", "--max-len-b", "3", "--batch-size", "32", "--required-batch-size-multiple", "1"]  # fmt: skip
    without = cli(*gen, cwd=tmp_path, check=False)
    assert without.returncode != 0 and "Weights only load failed" in without.stderr
    with_plugin = cli(*gen, "--user-dir", PLUGIN, cwd=tmp_path)
    assert sum(line.startswith("H-") for line in with_plugin.stdout.splitlines()) == 60


def test_safe_loading_still_refuses_other_objects(tmp_path):
    code = (
        "import torch, collections, fairseq_revrnn\n"
        "class Evil:\n    pass\n"
        f"torch.save({{'x': Evil()}}, r'{tmp_path / 'evil.pt'}')\n"
        "try:\n    torch.load(r'"
        + str(tmp_path / "evil.pt")
        + "')\nexcept Exception as e:\n    print('REFUSED', type(e).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert "REFUSED" in out.stdout, out.stderr[-2000:]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--max-forget-bits", "0"], "--max-forget-bits"),
        (["--attention", "bahdanau"], "--attention"),
        (["--attention-slice-dim", "100"], "--attention-slice-dim must be in 1..24"),
    ],
)
def test_bad_options_exit_non_zero_naming_the_option(multi30k_bin, tmp_path, extra, message):
    args = translation_args(multi30k_bin, tmp_path / "c", "lstm", "emb+slice")
    proc = cli("fairseq-train", *args, *extra, "--max-update", "1", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_user_dir_works_from_an_installed_copy(multi30k_bin, tmp_path):
    """A regular (non-editable) install, used as --user-dir from another directory."""
    target = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target),
         str(REPO)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    installed = target / "fairseq_revrnn"
    assert (installed / "core" / "engine.py").exists()
    args = translation_args(multi30k_bin, tmp_path / "ckpt", "gru", "slice")
    args[args.index("--user-dir") + 1] = installed
    train = cli("fairseq-train", *args, "--max-update", "1", cwd=tmp_path)
    assert f"'user_dir': '{installed}'" in train.stdout + train.stderr
    assert (tmp_path / "ckpt" / "checkpoint_last.pt").exists()
