"""Two training processes (gloo on CPU, ranks started by hand) against one
process over the same batches: every model and criterion of the plugin."""

import math
import os
import socket
import subprocess

import pytest

from fairseq_revrnn.recipes.logs import records

from .data import BIN, PLUGIN
from .fairseq_helpers import TINY_NMT

pytestmark = pytest.mark.cli

NO_DROPOUT = ["--dropout-in", "0", "--dropout-out", "0", "--dropout-hidden", "0", "--dropout-embed", "0"]
COMMON = [
    "--optimizer", "adam", "--lr", "0.003", "--num-workers", "0", "--log-format", "json", "--log-interval", "1",
    "--no-save", "--disable-validation", "--seed", "1", "--max-update", "3", "--cpu",
]  # fmt: skip
REV_LM = [
    "--task", "language_modeling", "--arch", "rev_lstm_lm", "--decoder-embed-dim", "32", "--decoder-hidden-size", "32",
    "--tokens-per-sample", "35", "--sample-break-mode", "none", "--criterion", "rev_cross_entropy", "--batch-size", "4",
    *NO_DROPOUT,
]  # fmt: skip
MODELS = {
    "rev_lstm": (
        "multi30k_bin",
        ["--arch", "rev_lstm", *TINY_NMT, "--attention-slice-dim", "6", "--encoder-layers", "2",
         "--decoder-layers", "2", "--criterion", "rev_label_smoothed_cross_entropy", "--label-smoothing", "0.1",
         "--batch-size", "8", *NO_DROPOUT],
        {"mem_savings", "mem_savings_ideal", "enc_mem_savings", "dec_mem_savings"},
    ),
    "rev_lstm_lm": ("ptb_bin", REV_LM, {"mem_savings", "mem_savings_ideal"}),
    # The deterministic options of later issues together: sharpened gates, radices, host-sync-free overflow.
    "rev_gru_lm options": (
        "ptb_bin",
        [*REV_LM, "--cell-type", "gru", "--gates", "sharpened", "--hidden-radix", "20", "--forget-radix", "12",
         "--rev-overflow", "bound"],
        {"mem_savings", "mem_savings_ideal"},
    ),
    "g2_lstm": (
        "multi30k_bin",
        ["--arch", "g2_lstm", *TINY_NMT, "--gates", "sharpened", "--dropout", "0",
         "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--batch-size", "8"],
        set(),
    ),
    "nru_lm": (
        "ptb_bin",
        ["--task", "language_modeling", "--arch", "nru_lm", "--decoder-embed-dim", "24", "--decoder-hidden-size", "32",
         "--memory-size", "16", "--memory-heads", "1", "--tokens-per-sample", "35", "--sample-break-mode", "none",
         "--criterion", "cross_entropy", "--batch-size", "4", "--dropout", "0"],
        set(),
    ),
}  # fmt: skip
# Options that draw noise (Gumbel gates, discrete forgetting's samples): each rank draws its own, so they
# are checked to train, not to match one process.
NOISY = {
    "rev_lstm_lm discrete forgetting": [*REV_LM, "--discrete-forgetting", "--max-forget-bits", "3"],
    "rev_gru_lm gumbel gates": [*REV_LM, "--cell-type", "gru", "--gates", "gumbel"],
    "g2_lstm_lm gumbel": ["--task", "language_modeling", "--arch", "g2_lstm_lm", "--decoder-embed-dim", "24",
                          "--decoder-hidden-size", "32", "--gates", "gumbel", "--tokens-per-sample", "35",
                          "--criterion", "cross_entropy", "--batch-size", "4"],
}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(args: list, world: int, cwd, ddp_backend: str = "legacy_ddp") -> list[subprocess.CompletedProcess]:
    """fairseq-train with ``world`` ranks started by hand (one thread each). On CPU fairseq's
    ``c10d`` backend fails for its own models too (DistributedDataParallel with device_ids)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    flags = []
    if world > 1:
        flags = ["--distributed-world-size", str(world), "--distributed-init-method", f"tcp://127.0.0.1:{free_port()}",
                 "--distributed-no-spawn", "--distributed-backend", "gloo", "--ddp-backend", ddp_backend]  # fmt: skip
    rank = (lambda r: ["--distributed-rank", str(r)]) if world > 1 else (lambda r: [])
    procs = [
        subprocess.Popen(
            [str(BIN / "fairseq-train"), *map(str, args), *flags, *rank(r)],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for r in range(world)
    ]
    done = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, ""))
    return done


@pytest.mark.parametrize(
    "name, ddp_backend",
    [("rev_lstm", "legacy_ddp"), ("rev_lstm_lm", "no_c10d"), ("rev_gru_lm options", "legacy_ddp"),
     ("g2_lstm", "legacy_ddp"), ("nru_lm", "no_c10d")],
)  # fmt: skip
def test_two_ranks_train_like_one_process_with_the_same_total_batch(name, ddp_backend, request, tmp_path):
    fixture, model_args, memory_keys = MODELS[name]
    args = [request.getfixturevalue(fixture), "--user-dir", PLUGIN, *model_args, *COMMON]
    ranks = train(args, 2, tmp_path, ddp_backend)
    for rank, proc in enumerate(ranks):
        assert proc.returncode == 0, f"rank {rank} failed:\n{proc.stdout[-4000:]}"
    (single,) = train([*args, "--update-freq", "2"], 1, tmp_path)
    assert single.returncode == 0, single.stdout[-4000:]
    two = records(ranks[0].stdout, "train_inner")
    one = records(single.stdout, "train_inner")
    assert [r["num_updates"] for r in two] == [r["num_updates"] for r in one] == ["1", "2", "3"]
    for a, b in zip(two, one):
        assert memory_keys <= set(a), sorted(a)
        assert a["wpb"] == b["wpb"] and a["bsz"] == b["bsz"], "both runs see the same total batch"
        for key in ("loss", *sorted(memory_keys)):
            assert float(a[key]) == pytest.approx(float(b[key]), abs=2e-3, rel=1e-3), (key, a, b)


@pytest.mark.parametrize("name", NOISY)
def test_two_ranks_train_the_noisy_options(name, ptb_bin, tmp_path):
    ranks = train([ptb_bin, "--user-dir", PLUGIN, *NOISY[name], *COMMON], 2, tmp_path)
    for rank, proc in enumerate(ranks):
        assert proc.returncode == 0, f"rank {rank} failed:\n{proc.stdout[-4000:]}"
    steps = records(ranks[0].stdout, "train_inner")
    assert [r["num_updates"] for r in steps] == ["1", "2", "3"]
    assert all(math.isfinite(float(r["loss"])) and float(r["bsz"]) == 8 for r in steps)  # both ranks' 4 sequences
