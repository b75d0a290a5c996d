"""fairseq-train words/s: the reversible translation model against fairseq's ``lstm``.

Multi30K en-de, one layer of 256 units (embeddings 256), fixed batches of
sentences, Adam, no validation. Models, all in one run and taken in turns:
``rev_lstm`` with compiled half-steps (``--rev-compile on``), the same eager
(``--rev-compile off``), and fairseq's ``lstm`` of the same size. Words/s is
fairseq's ``wps`` averaged over the logged intervals (10 updates each) after
the first ``--skip`` (the compiled model builds its graphs in the first 30
updates, as its log shows), median over ``--repeats`` runs; ratios are
against fairseq's ``lstm``.

    .venv/bin/python scripts/bench_train.py --work /tmp/bench-memory
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from bench_memory import fairseq_train, mt_models, prepare
from tqdm import tqdm


def models(size: int) -> dict[str, list[str]]:
    mt = mt_models(size)
    rev = mt["rev"]
    return {"rev compiled": rev + ["--rev-compile", "on"], "rev eager": rev + ["--rev-compile", "off"],
            "lstm (fairseq)": mt["lstm (fairseq)"]}  # fmt: skip


def words_per_second(data: Path, args: list[str], batch: int, updates: int, skip: int, work: Path) -> float:
    logs = fairseq_train(data, args, batch, updates, work)[1]
    return statistics.mean(float(r["wps"]) for r in logs[skip:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("bench-memory"), help="data and scratch directory")
    parser.add_argument("--size", type=int, default=256, help="embedding and hidden size")
    parser.add_argument("--batches", default="64,512", help="batch sizes (sentences)")
    parser.add_argument("--updates", type=int, default=60, help="updates per run (logged every 10)")
    parser.add_argument("--skip", type=int, default=3, help="logged intervals left out at the start")
    parser.add_argument("--repeats", type=int, default=2, help="runs per model and batch size")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    data, _ = prepare(args.work)
    runs = models(args.size)
    batches = [int(b) for b in args.batches.split(",") if b]
    wps = {(name, b): [] for name in runs for b in batches}
    with tqdm(total=len(wps) * args.repeats, desc="bench_train") as bar:
        for batch in batches:
            for _ in range(args.repeats):
                for name, margs in runs.items():
                    wps[name, batch].append(words_per_second(data, margs, batch, args.updates, args.skip, args.work))
                    bar.update()
    print(f"torch={torch.__version__} threads={torch.get_num_threads()} translation 1x{args.size}, "
          f"updates {10 * args.skip + 1}-{args.updates}, median of {args.repeats} runs taken in turns")  # fmt: skip
    print("\n| batch | model | target words/s | runs | / lstm |\n|---|---|---|---|---|")
    for batch in batches:
        base = statistics.median(wps["lstm (fairseq)", batch])
        for name in runs:
            w = statistics.median(wps[name, batch])
            print(f"| {batch} | {name} | {w:.0f} | {', '.join(f'{x:.0f}' for x in wps[name, batch])} "
                  f"| {w / base:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
