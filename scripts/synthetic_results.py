#!/usr/bin/env python
"""Synthetic memory tasks at CPU scale, through ``fairseq-train --task rnn_synthetic``.

    .venv/bin/python scripts/synthetic_results.py [--quick] [--work-dir runs/synthetic] [--plot-dir DIR]

1. The reversible paper's table 1 (appendix B): an NF-RevGRU (``rev_gru_lm --no-forgetting``)
   on ``repeat`` and an LSTM (fairseq's ``lstm_lm``) on ``remember``, one layer of 8, 16 and 32
   units, lengths 20, 35 and 50: the most tokens per sequence predicted correctly over the
   run's validations (on 10,000 sequences, as the paper) and the bits per unit above chance,
   (tokens - L/8) * log2(8) / H, beside the paper's numbers.
2. The NRU paper's copy and denoise tasks (T=100, 10 symbols of 8): ``nru_lm``, ``lstm_lm`` and
   ``rev_lstm_lm`` of about 20k parameters (the paper's models have about 23.5k), the same
   updates each: the update at which the validation recall accuracy first reaches 99%
   ("steps to solve"), the best recall accuracy and the final validation loss beside the
   memoryless baseline.

Every run trains on fresh sequences (a new draw every epoch), with Adam and seed 1; the
learning curves are drawn as PNGs into ``--plot-dir``. The whole script is sized to about 35
minutes on a 2-core CPU; ``--quick`` runs a few updates of the smallest configurations (the
tests use it).
"""

import argparse
import logging
import math
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from fairseq_revrnn.recipes.logs import number, records

# fairseq (imported above) sets the root logger to DEBUG: keep matplotlib's font search out of the output.
logging.getLogger("matplotlib").setLevel(logging.WARNING)
from matplotlib import colormaps  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EMBED = 16  # >= the tokens a task feeds (10): an embedding then spans every linear map of one-hot inputs
EPOCH_UPDATES = 50  # updates per epoch: each epoch draws fresh sequences
SOLVED = 99.0  # recall accuracy (%) at which a copy / denoise run counts as solved
PAPER_BATCHES, PAPER_BATCH = 1_000_000, 20_000  # appendix B
PAPER_TABLE1 = {  # (hidden, length): NF-RevGRU tokens, bits/unit; LSTM tokens, bits/unit
    (8, 20): (7.9, 2.0, 7.4, 1.8),
    (8, 35): (13.1, 3.3, 9.7, 2.0),
    (8, 50): (18.6, 4.6, 13.0, 2.5),
    (16, 20): (19.9, 3.3, 13.7, 2.1),
    (16, 35): (25.4, 3.9, 14.3, 1.9),
    (16, 50): (27.3, 3.9, 17.2, 2.1),
    (32, 20): (20.0, 2.6, 20.0, 2.6),
    (32, 35): (35.0, 5.6, 20.6, 2.4),
    (32, 50): (47.9, 6.2, 21.5, 2.3),
}
REV_NO_DROPOUT = ["--dropout-in", "0", "--dropout-out", "0", "--dropout-hidden", "0", "--dropout-embed", "0"]


@dataclass(frozen=True)
class Budget:
    """Sizes of one invocation: which configurations, how many updates of how many sequences."""

    hidden: tuple[int, ...]
    lengths: tuple[int, ...]
    table_updates: int
    table_batch: int
    table_valid: int
    table_every: int
    lag: int
    copy_updates: int
    copy_batch: int
    copy_valid: int
    copy_every: int


FULL = Budget((8, 16, 32), (20, 35, 50), 1200, 256, 10000, 200, 100, 1200, 64, 1000, 100)
QUICK = Budget((8,), (20,), 4, 32, 64, 2, 10, 4, 16, 32, 2)


def nf_revgru(hidden: int) -> list[str]:
    return ["--arch", "rev_gru_lm", "--no-forgetting", "--decoder-layers", "1", "--decoder-hidden-size", str(hidden),
            "--decoder-embed-dim", str(EMBED), *REV_NO_DROPOUT, "--criterion", "rev_cross_entropy"]  # fmt: skip


def lstm(hidden: int) -> list[str]:
    return ["--arch", "lstm_lm", "--decoder-layers", "1", "--decoder-hidden-size", str(hidden),
            "--decoder-out-embed-dim", str(hidden), "--decoder-embed-dim", str(EMBED), "--dropout", "0",
            "--criterion", "cross_entropy"]  # fmt: skip


COPY_MODELS = {
    "NRU (nru_lm)": ["--arch", "nru_lm", "--decoder-layers", "1", "--decoder-hidden-size", "64", "--memory-size", "64",
                     "--memory-heads", "4", "--decoder-embed-dim", str(EMBED), "--dropout", "0",
                     "--criterion", "cross_entropy"],
    "LSTM (lstm_lm)": lstm(64),
    "RevLSTM (rev_lstm_lm)": ["--arch", "rev_lstm_lm", "--decoder-layers", "1", "--decoder-hidden-size", "72",
                              "--decoder-embed-dim", str(EMBED), *REV_NO_DROPOUT, "--criterion", "rev_cross_entropy"],
}  # fmt: skip


@dataclass
class Run:
    """One fairseq-train run's json records, size and wall time."""

    label: str
    params: int
    train: list[dict]
    valid: list[dict]
    seconds: float

    def valid_series(self, key: str) -> tuple[list[float], list[float]]:
        pairs = [(number(r, "valid_num_updates"), number(r, f"valid_{key}")) for r in self.valid]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        return [x for x, _ in pairs], [y for _, y in pairs]

    def train_series(self, key: str) -> tuple[list[float], list[float]]:
        return [number(r, "num_updates") for r in self.train], [number(r, key) for r in self.train]


def train(label: str, args: list[str], log: Path) -> Run:
    """fairseq-train with ``args`` (its output kept in ``log``); exits naming the log if it fails."""
    cmd = [str(BIN / "fairseq-train"), "--user-dir", str(REPO / "fairseq_revrnn"), "--task", "rnn_synthetic",
           "--optimizer", "adam", "--lr", "0.003", "--required-batch-size-multiple", "1", "--num-workers", "0",
           "--log-format", "json", "--no-save", "--seed", "1", "--validate-interval", "1000000", *args]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    text = proc.stdout + proc.stderr
    log.write_text(" ".join(cmd) + "\n" + text, encoding="utf-8")
    if proc.returncode != 0:
        raise SystemExit(f"fairseq-train failed (see {log}):\n{proc.stderr[-3000:]}")
    params = re.search(r"num\. (?:shared )?model params: ([\d,]+)", text)
    return Run(label, int(params.group(1).replace(",", "")) if params else 0, records(text, "train_inner"),
               records(text, "valid"), seconds)  # fmt: skip


def schedule(updates: int, batch: int, valid: int, every: int) -> list[str]:
    log_every = max(1, min(25, updates // 4))
    return ["--max-update", str(updates), "--batch-size", str(batch), "--train-size", str(batch * EPOCH_UPDATES),
            "--valid-size", str(valid), "--validate-interval-updates", str(every),
            "--log-interval", str(log_every)]  # fmt: skip


def tokens_predicted(run: Run, length: int) -> float:
    """The most tokens per sequence predicted correctly over the run's validations (the paper's measure)."""
    return max(run.valid_series("accuracy")[1]) * length / 100


def bits_per_unit(tokens: float, length: int, hidden: int, symbols: int = 8) -> float:
    """Bits stored per hidden unit above chance: (tokens - L / n) * log2(n) / H."""
    return (tokens - length / symbols) * math.log2(symbols) / hidden


def table1(budget: Budget, work: Path, bar: tqdm) -> tuple[list[str], dict]:
    rows = [
        "| hidden | length | NF-RevGRU tokens | paper | NF-RevGRU bits/unit | paper | LSTM tokens | paper "
        "| LSTM bits/unit | paper | minutes (both) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    runs = {}
    for hidden in budget.hidden:
        for length in budget.lengths:
            sched = schedule(budget.table_updates, budget.table_batch, budget.table_valid, budget.table_every)
            task = ["--seq-len", str(length)]
            rev = train("NF-RevGRU", [*nf_revgru(hidden), "--synthetic-task", "repeat", *task, *sched],
                        work / f"repeat-nf_revgru-h{hidden}-l{length}.log")  # fmt: skip
            bar.update()
            base = train("LSTM", [*lstm(hidden), "--synthetic-task", "remember", *task, *sched],
                         work / f"remember-lstm-h{hidden}-l{length}.log")  # fmt: skip
            bar.update()
            runs[hidden, length] = (rev, base)
            ours = [tokens_predicted(rev, length), tokens_predicted(base, length)]
            paper = PAPER_TABLE1.get((hidden, length), (math.nan,) * 4)
            cells = [f"{ours[0]:.2f}", f"{paper[0]}", f"{bits_per_unit(ours[0], length, hidden):.2f}", f"{paper[1]}",
                     f"{ours[1]:.2f}", f"{paper[2]}", f"{bits_per_unit(ours[1], length, hidden):.2f}", f"{paper[3]}",
                     f"{(rev.seconds + base.seconds) / 60:.1f}"]  # fmt: skip
            rows.append(f"| {hidden} | {length} | " + " | ".join(cells) + " |")
    return rows, runs


def paper_formula_notes() -> list[str]:
    """Rows where the paper's bits/unit differ from (tokens - L/8) * 3 / H of its own token counts."""
    notes = []
    for (hidden, length), (rev_tokens, rev_bits, lstm_tokens, lstm_bits) in PAPER_TABLE1.items():
        for name, tokens, bits in (("NF-RevGRU", rev_tokens, rev_bits), ("LSTM", lstm_tokens, lstm_bits)):
            formula = bits_per_unit(tokens, length, hidden)
            if abs(formula - bits) > 0.15:
                notes.append(f"H={hidden} L={length} {name}: {tokens} tokens -> {formula:.2f} (paper: {bits})")
    return notes


def copy_tasks(budget: Budget, work: Path, bar: tqdm) -> tuple[list[str], dict]:
    rows = [
        f"| task | model | params | updates | steps to solve (recall acc >= {SOLVED:.0f}%) | best recall acc % "
        "| final valid loss (bits) | memoryless baseline (bits) | minutes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    runs = {}
    for task in ("copy", "denoise"):
        for label, model in COPY_MODELS.items():
            sched = schedule(budget.copy_updates, budget.copy_batch, budget.copy_valid, budget.copy_every)
            args = [*model, "--synthetic-task", task, "--lag", str(budget.lag), "--clip-norm", "1", *sched]
            run = train(label, args, work / f"{task}-{model[1]}.log")
            bar.update()
            runs[task, label] = run
            steps, acc = run.valid_series("recall_accuracy")
            solved = next((f"{s:.0f}" for s, a in zip(steps, acc) if a >= SOLVED), "not solved")
            last = run.valid[-1]
            cells = [task, label, f"{run.params:,}", str(budget.copy_updates), solved, f"{max(acc):.2f}",
                     f"{number(last, 'valid_loss'):.3f}", f"{number(last, 'valid_baseline'):.3f}",
                     f"{run.seconds / 60:.1f}"]  # fmt: skip
            rows.append("| " + " | ".join(cells) + " |")
    return rows, runs


def table1_figure(runs: dict, budget: Budget) -> Figure:
    """Tokens predicted over updates, one panel per hidden size: NF-RevGRU solid, LSTM dashed."""
    fig = Figure(figsize=(4 * len(budget.hidden), 4), dpi=100, layout="constrained")
    axes = fig.subplots(1, len(budget.hidden), squeeze=False)[0]
    colours = colormaps["tab10"]
    for ax, hidden in zip(axes, budget.hidden):
        for i, length in enumerate(budget.lengths):
            for run, style in zip(runs[hidden, length], ("-", "--")):
                xs, ys = run.valid_series("accuracy")
                task = "repeat" if style == "-" else "remember"
                ax.plot(xs, [y * length / 100 for y in ys], style, marker="o", markersize=3, color=colours(i),
                        label=f"{run.label} {task}, L={length}")  # fmt: skip
        ax.set_title(f"{hidden} hidden units")
        ax.set_xlabel("updates")
        ax.set_ylabel("tokens predicted correctly (of L)")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize="x-small")
    fig.suptitle("Appendix B at CPU scale: NF-RevGRU on repeat vs LSTM on remember")
    return fig


def loss_figure(runs: dict, task: str, lag: int) -> Figure:
    """Training loss (line) and validation loss (markers) over updates, with the memoryless baseline."""
    fig = Figure(figsize=(7, 4.5), dpi=100, layout="constrained")
    ax = fig.subplots()
    colours = colormaps["tab10"]
    baseline = None
    for i, label in enumerate(COPY_MODELS):
        run = runs[task, label]
        ax.plot(*run.train_series("loss"), color=colours(i), alpha=0.6, label=f"{label} train")
        ax.plot(*run.valid_series("loss"), "o", color=colours(i), markersize=4, label=f"{label} valid")
        baseline = number(run.valid[-1], "valid_baseline")
    if baseline is not None:
        ax.axhline(baseline, color="black", linestyle="--", linewidth=1, label="memoryless baseline")
    ax.set_yscale("log")
    ax.set_xlabel("updates")
    ax.set_ylabel("cross entropy (bits per position)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.suptitle(f"{task}, T={lag}: NRU vs LSTM vs RevLSTM")
    return fig


def budget_lines(budget: Budget) -> list[str]:
    table_seqs = budget.table_updates * budget.table_batch
    paper_seqs = PAPER_BATCHES * PAPER_BATCH
    return [
        f"Table 1: {budget.table_updates:,} updates x {budget.table_batch} sequences = {table_seqs:,} sequences per "
        f"model; appendix B: {PAPER_BATCHES:,} batches x {PAPER_BATCH:,} = {paper_seqs:,}, "
        f"{paper_seqs / table_seqs:,.0f} times ours ({PAPER_BATCHES / budget.table_updates:,.0f} times the updates).",
        f"Copy / denoise: {budget.copy_updates:,} updates x {budget.copy_batch} sequences = "
        f"{budget.copy_updates * budget.copy_batch:,} sequences per model; the NRU paper trains until the models "
        "converge (NRU's gradient norm falls after about 25k steps, its figure 7).",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few updates of the smallest configurations")
    parser.add_argument("--work-dir", type=Path, default=Path("runs/synthetic"), help="logs and summary.md")
    parser.add_argument("--plot-dir", type=Path, help="where the PNGs go (default: WORK_DIR/plots)")
    args = parser.parse_args()
    budget = QUICK if args.quick else FULL
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    plots = (args.plot_dir or work / "plots").resolve()
    plots.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    total = 2 * len(budget.hidden) * len(budget.lengths) + 2 * len(COPY_MODELS)
    with tqdm(total=total, desc="fairseq-train runs") as bar:
        t1_rows, t1_runs = table1(budget, work, bar)
        copy_rows, copy_runs = copy_tasks(budget, work, bar)
    written = [plots / "synthetic_table1.png", plots / "synthetic_copy.png", plots / "synthetic_denoise.png"]
    table1_figure(t1_runs, budget).savefig(written[0])
    for path, task in zip(written[1:], ("copy", "denoise")):
        loss_figure(copy_runs, task, budget.lag).savefig(path)
    baseline = number(copy_runs["copy", next(iter(COPY_MODELS))].valid[-1], "valid_baseline")
    notes = paper_formula_notes()
    lines = [
        f"## Appendix B, table 1 at CPU scale ({'quick' if args.quick else 'full'} budget)",
        "",
        "Tokens: the most of the L scored positions predicted correctly over the validations "
        f"({budget.table_valid:,} sequences each, every {budget.table_every} updates); "
        "bits/unit: (tokens - L/8) * log2(8) / H.",
        "",
        *t1_rows,
        "",
        *(
            ["The paper's bits/unit that do not follow from its own token counts by that formula:", *notes, ""]
            if notes
            else []
        ),  # fmt: skip
        f"## NRU paper's copy and denoise tasks, T={budget.lag}, 10 symbols of 8",
        "",
        *copy_rows,
        "",
        f"copy's memoryless baseline: {baseline:.3f} bits = {baseline * math.log(2):.3f} nats per position "
        f"(the NRU paper: 10 log(8) / (T + 20) = {10 * math.log(8) / (budget.lag + 20):.3f} nats).",
        "",
        "## CPU budget against the papers'",
        "",
        "Setup: one layer, embeddings of 16, no dropout, Adam at lr 0.003 (the papers: 0.001), seed 1, fresh "
        f"sequences every {EPOCH_UPDATES} updates; batches of {budget.table_batch} (table 1) and {budget.copy_batch} "
        "(copy, denoise, gradient norm clipped at 1); reversible models with compiled half-steps where a compiler "
        "is found (--rev-compile auto).",
        *budget_lines(budget),
        "",
        f"Wall time: {(time.perf_counter() - start) / 60:.1f} minutes. Plots: " + ", ".join(str(p) for p in written),
    ]
    text = "\n".join(lines)
    (work / "summary.md").write_text(text + "\n", encoding="utf-8")
    print("\n" + text)


if __name__ == "__main__":
    main()
