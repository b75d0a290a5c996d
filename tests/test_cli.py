"""End to end through fairseq's own command-line tools (subprocess)."""

import json
import math
import subprocess
import sys

import pytest
import sacrebleu
import torch

from fairseq_revrnn.core.attention import ATTENTION_TYPES

from .data import BIN, EXAMPLES, PLUGIN, REPO, cli
from .fairseq_helpers import TINY_NMT, resolved_defaults

pytestmark = pytest.mark.cli

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


def test_an_architecture_without_options_saves_the_dataclass_defaults(multi30k_bin, tmp_path):
    """``--arch rev_lstm`` and no model option: the checkpoint's model cfg is RevRNNConfig's
    defaults, tied ones resolved (the decoder's sizes are the encoder's, the maximum positions
    the task's)."""
    from fairseq import checkpoint_utils
    from omegaconf import OmegaConf

    from fairseq_revrnn.models.rev_rnn import RevRNNConfig

    save = tmp_path / "checkpoints"
    cli(
        "fairseq-train", multi30k_bin, "--user-dir", PLUGIN, "--arch", "rev_lstm", "--criterion", "rev_cross_entropy",
        "--save-dir", save, "--max-update", "1", "--disable-validation", *COMMON, cwd=tmp_path,
    )  # fmt: skip
    cfg = checkpoint_utils.load_checkpoint_to_cpu(str(save / "checkpoint_last.pt"))["cfg"]
    model = OmegaConf.to_container(cfg.model, resolve=True)
    assert model == {"_name": "rev_lstm", **resolved_defaults(RevRNNConfig, OmegaConf.to_container(cfg.task))}


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


def lm_args(data, save, tokens_per_sample: int = 35, break_mode: str = "none") -> list:
    return [
        data, "--user-dir", PLUGIN, "--task", "language_modeling", "--arch", "rev_lstm_lm",
        "--decoder-embed-dim", "32", "--decoder-hidden-size", "32", "--tokens-per-sample", tokens_per_sample,
        "--sample-break-mode", break_mode, "--criterion", "rev_cross_entropy", "--save-dir", save, *COMMON,
    ]  # fmt: skip


def test_language_model_train_eval_resume(ptb_bin, tmp_path):
    """Trains with --rev-overflow bound (no host syncs for the buffers) and other radices than the
    paper's, which the checkpoint keeps for fairseq-eval-lm and the resumed run."""
    save = tmp_path / "checkpoints"
    args = [*lm_args(ptb_bin, save), "--rev-overflow", "bound", "--hidden-radix", "16", "--forget-radix", "8"]
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
    saved = torch.load(save / "checkpoint_last.pt", weights_only=False)["cfg"]["model"]
    assert (saved["rev_overflow"], saved["hidden_radix"], saved["forget_radix"]) == ("bound", 16, 8)


def test_g2_gates_train_and_beam_search(multi30k_bin, tmp_path):
    """--gates gumbel on a reversible model: trains with noise (exact reversal is tested in
    test_g2_gates.py), decodes with plain sigmoids; the checkpoint keeps the gate options."""
    save = tmp_path / "checkpoints"
    args = [*translation_args(multi30k_bin, save, "gru", "emb+slice"), "--gates", "gumbel"]
    train = cli("fairseq-train", *args, "--max-update", "2", cwd=tmp_path)
    steps = json_logs(train.stderr + train.stdout, "train_inner")
    assert len(steps) == 2 and all(math.isfinite(float(s["loss"])) for s in steps)
    saved = torch.load(save / "checkpoint_last.pt", weights_only=False)["cfg"]["model"]
    assert (saved["gates"], saved["gate_temperature"]) == ("gumbel", None)
    gen = cli(
        "fairseq-generate", multi30k_bin, "--user-dir", PLUGIN, "--path", save / "checkpoint_last.pt",
        "--beam", "5", "--gen-subset", "test", "--batch-size", "16", "--required-batch-size-multiple", "1",
        "--max-len-a", "1", "--max-len-b", "5", cwd=tmp_path,
    )  # fmt: skip
    assert sum(line.startswith("H-") for line in gen.stdout.splitlines()) == 60


def test_discrete_forgetting_trains_and_evaluates(ptb_bin, tmp_path):
    """--discrete-forgetting on a language model: trains (sampled shifts), fairseq-eval-lm
    evaluates (most likely shifts); the logged savings are those of whole bits."""
    save = tmp_path / "checkpoints"
    args = [*lm_args(ptb_bin, save), "--discrete-forgetting", "--max-forget-bits", "2", "--df-estimator", "categorical"]
    train = cli("fairseq-train", *args, "--max-update", "3", cwd=tmp_path)
    steps = json_logs(train.stderr + train.stdout, "train_inner")
    assert len(steps) == 3 and all(math.isfinite(float(s["loss"])) for s in steps)
    assert float(steps[-1]["mem_savings_ideal"]) >= 16.0, "at most 2 of 32 bits destroyed per unit and step"
    evaluation = cli(
        "fairseq-eval-lm", ptb_bin, "--user-dir", PLUGIN, "--path", save / "checkpoint_last.pt",
        "--tokens-per-sample", "35", "--gen-subset", "test", "--max-tokens", "2000", cwd=tmp_path,
    )  # fmt: skip
    assert "Perplexity:" in evaluation.stderr + evaluation.stdout


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
        (["--dropout-embed", "1.0"], "--dropout-embed must be a probability in [0, 1); got 1.0"),
        (["--max-hidden-forget", "1"], "--max-hidden-forget must be a number in (0.125, 1)"),
        (["--rev-compile", "yes"], "--rev-compile: invalid choice: 'yes' (choose from 'auto', 'on', 'off')"),
        (
            ["--rev-overflow", "no"],
            "--rev-overflow: invalid choice: 'no' (choose from 'auto', 'read', 'margin', 'bound')",
        ),
        (["--gates", "binary"], "--gates: invalid choice: 'binary' (choose from 'sigmoid', 'sharpened', 'gumbel')"),
        (["--hidden-radix", "0"], "--hidden-radix must be an integer in 1..51; got 0"),
        (["--discrete-forgetting", "--gates", "gumbel"], "--gates gumbel and --discrete-forgetting exclude each other"),
        (["--discrete-forgetting", "--max-forget-bits", "none"], "--discrete-forgetting needs --max-forget-bits"),
        (["--df-estimator", "hard"], "--df-estimator: invalid choice: 'hard' (choose from 'gumbel', 'categorical')"),
        (["--forget-radix", "4", "--max-forget-bits", "5"], "--max-forget-bits must be at most --forget-radix (4)"),
        (["--gate-temperature", "0.5"], "--gate-temperature is only used with --gates sharpened or gumbel"),
        (["--gates", "gumbel", "--gate-temperature", "-1"], "--gate-temperature must be a number > 0; got -1.0"),
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


def count_test_hypotheses(data, checkpoint, cwd) -> int:
    """How many test sentences ``fairseq-generate`` (beam 2) translates from ``checkpoint``."""
    gen = cli(
        "fairseq-generate", data, "--user-dir", PLUGIN, "--path", checkpoint, "--beam", "2", "--gen-subset", "test",
        "--batch-size", "32", "--required-batch-size-multiple", "1", "--max-len-b", "5", cwd=cwd,
    )  # fmt: skip
    return sum(line.startswith("H-") for line in gen.stdout.splitlines())


def test_compiled_half_steps_train_and_generate(multi30k_bin, tmp_path, compiling):
    """``--rev-compile on``: the log says the half-steps are compiled and counts the graphs
    built; beam search (batch sizes change as hypotheses finish) decodes the test set."""
    save = tmp_path / "checkpoints"
    args = translation_args(multi30k_bin, save, "lstm", "emb+slice")
    train = cli("fairseq-train", *args, "--rev-compile", "on", "--max-update", "2", cwd=tmp_path)
    log = train.stderr + train.stdout
    assert "half-steps on cpu run fused by torch.compile (compile='on')" in log
    assert "building half-step graph 1 " in log
    steps = json_logs(log, "train_inner")
    assert len(steps) == 2 and all(math.isfinite(float(s["loss"])) for s in steps)
    assert count_test_hypotheses(multi30k_bin, save / "checkpoint_last.pt", tmp_path) == 60


def test_memory_efficient_fp16_trains_and_generates_on_cpu(multi30k_bin, tmp_path):
    save = tmp_path / "checkpoints"
    args = translation_args(multi30k_bin, save, "lstm", "emb+slice")
    train = cli("fairseq-train", *args, "--memory-efficient-fp16", "--max-update", "2", cwd=tmp_path)
    steps = json_logs(train.stderr + train.stdout, "train_inner")
    assert len(steps) == 2 and MEMORY_KEYS <= set(steps[-1])
    assert "loss_scale" in steps[-1], "fairseq's fp16 optimiser logs its loss scale"
    assert all(math.isfinite(float(s["loss"])) for s in steps)
    assert count_test_hypotheses(multi30k_bin, save / "checkpoint_last.pt", tmp_path) == 60


def test_language_model_eos_break_mode_and_interactive(ptb_bin, tmp_path):
    """Both go through fairseq code that needs numpy < 2 (np.compat)."""
    save = tmp_path / "checkpoints"
    cli("fairseq-train", *lm_args(ptb_bin, save, 100, "eos"), "--max-update", "2", cwd=tmp_path)
    proc = subprocess.run(
        [str(BIN / "fairseq-interactive"), str(ptb_bin), "--user-dir", str(PLUGIN), "--task", "language_modeling",
         "--path", str(save / "checkpoint_last.pt"), "--beam", "2", "--max-len-b", "4"],
        input="the company said\nit is\n", capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    hyps = [line.split("\t")[2] for line in proc.stdout.splitlines() if line.startswith("H-")]
    assert len(hyps) == 2 and hyps[0].startswith("the company said") and hyps[1].startswith("it is")


def tensorboard_scalars(logdir) -> dict[tuple[str, str], dict[int, float]]:
    """(subdirectory, tag) -> {step: value} from tensorboardX event files (TFRecord framing)."""
    import struct

    from tensorboardX.proto import event_pb2

    found: dict = {}
    for path in logdir.glob("*/events.out.tfevents.*"):
        data, i = path.read_bytes(), 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            event = event_pb2.Event.FromString(data[i + 12 : i + 12 + n])
            i += 16 + n
            for value in event.summary.value:
                found.setdefault((path.parent.name, value.tag), {})[event.step] = value.simple_value
    return found


def test_tensorboard_event_files_hold_the_memory_metrics(multi30k_bin, tmp_path):
    logdir = tmp_path / "tb"
    args = translation_args(multi30k_bin, tmp_path / "checkpoints", "gru", "slice")
    train = cli("fairseq-train", *args, "--max-update", "3", "--tensorboard-logdir", logdir, cwd=tmp_path)
    steps = json_logs(train.stderr + train.stdout, "train_inner")
    scalars = tensorboard_scalars(logdir)
    for key in sorted(MEMORY_KEYS):
        logged = scalars[("train_inner", key)]
        assert sorted(logged) == [1, 2, 3]
        for record in steps:
            assert logged[int(record["num_updates"])] == pytest.approx(float(record[key]), abs=0.01)
    assert ("valid", "mem_savings") in scalars


def test_hydra_train_with_the_example_config(multi30k_bin, tmp_path):
    save = tmp_path / "hydra-checkpoints"
    proc = cli(
        "fairseq-hydra-train", "--config-dir", EXAMPLES / "translation" / "config",
        "--config-name", "rev_lstm_multi30k", f"task.data={multi30k_bin}", f"common.user_dir={PLUGIN}",
        f"checkpoint.save_dir={save}", "optimization.max_update=2", "common.log_interval=1",
        "+model.encoder_hidden_size=48", "+model.decoder_hidden_size=48", "model.attention_slice_dim=6",
        cwd=tmp_path,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    steps = [json.loads(line.split(" - ", 1)[1]) for line in out.splitlines() if "[train_inner]" in line]
    assert [s["num_updates"] for s in steps] == ["1", "2"] and MEMORY_KEYS <= set(steps[-1])
    assert (save / "checkpoint_last.pt").exists() and not (tmp_path / "outputs").exists()
    assert count_test_hypotheses(multi30k_bin, save / "checkpoint_last.pt", tmp_path) == 60


def test_long_sequences_train_stably_with_the_default_forget_bound(ptb_bin, tmp_path):
    """T=2000: with the paper's RevLSTM (p up to 1023/1024) |h| grows towards 1000 and the loss
    jumps far above the 13.3 bits of a uniform guess; the default bound on p keeps it near."""
    args = lm_args(ptb_bin, tmp_path / "checkpoints", 2000)
    args[args.index("--max-tokens") : args.index("--max-tokens") + 2] = ["--batch-size", "4"]
    train = cli("fairseq-train", *args, "--max-update", "3", "--no-save", "--disable-validation", cwd=tmp_path)
    steps = json_logs(train.stderr + train.stdout, "train_inner")
    assert len(steps) == 3
    assert all(float(s["loss"]) < 14.0 and float(s["gnorm"]) < 50 for s in steps), steps
