#!/usr/bin/env python
"""Benchmark the reversible core against its own ordinary mode and cuDNN-style torch RNNs.

For each configuration it measures, in one run: time per training step
(forward + backward) in reversible and ordinary mode and for ``torch.nn.LSTM``
/ ``torch.nn.GRU`` of the same size; bytes autograd saves for backward in
both modes; and the paper's memory metric (actual and ideal savings).

    python scripts/bench_core.py            # full table (2 cells x H {256,650} x T {35,70,200})
    python scripts/bench_core.py --quick    # one small configuration, < 1 minute
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from fairseq_revrnn.core import ReversibleRNN, SavedTensorMeter, total


@dataclass
class Row:
    cell: str
    hidden: int
    steps: int
    rev_ms: float
    ord_ms: float
    torch_ms: float
    rev_bytes: int
    ord_bytes: int
    savings: float
    ideal_savings: float
    rev_peak: float = float("nan")
    ord_peak: float = float("nan")
    torch_peak: float = float("nan")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak(fn, device: torch.device) -> float:
    """Peak GPU bytes allocated during one call (nan on CPU)."""
    if device.type != "cuda":
        return float("nan")
    _sync(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    _sync(device)
    return float(torch.cuda.max_memory_allocated(device))


def _time(fns: list, device: torch.device, repeats: int) -> list[float]:
    """Median seconds per call of each function, measured in interleaved rounds
    after a warm-up so that machine noise hits all of them alike."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            out.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def measure(cell: str, hidden: int, steps: int, batch: int, layers: int, bits: int, repeats: int, device) -> Row:
    torch.manual_seed(0)
    model = ReversibleRNN(cell, hidden, [hidden] * layers, max_forget_bits=bits).to(device)
    baseline = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(hidden, hidden, layers).to(device)
    x = torch.randn(steps, batch, hidden, device=device, requires_grad=True)
    weights = torch.randn(steps, batch, hidden, device=device)

    def step(reversible: bool):
        def run():
            model.reversible = reversible
            out = model(x)
            (out.outputs * weights).sum().backward()

        return run

    def step_torch():
        out, _ = baseline(x)
        (out * weights).sum().backward()

    fns = [step(True), step(False), step_torch]
    rev_s, ord_s, torch_s = _time(fns, device, repeats)
    rev_peak, ord_peak, torch_peak = (_peak(fn, device) for fn in fns)
    saved = {}
    for reversible in (True, False):
        model.reversible = reversible
        with SavedTensorMeter(exclude=list(model.parameters())) as meter:
            out = model(x)
        saved[reversible] = meter.bytes
        if reversible:
            stats = total(out.memory)
        del out
    return Row(
        cell,
        hidden,
        steps,
        1000 * rev_s,
        1000 * ord_s,
        1000 * torch_s,
        saved[True],
        saved[False],
        stats.savings,
        stats.ideal_savings,
        rev_peak,
        ord_peak,
        torch_peak,
    )


def table(rows: list[Row], device: torch.device) -> str:
    head = (
        "| cell | H | T | reversible ms | ordinary ms | rev/ord | torch ms | rev/torch "
        "| saved MB rev | saved MB ord | saved-bytes reduction | savings actual | savings ideal |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    if device.type == "cuda":
        lines[0] += " peak MB rev | peak MB ord | peak MB torch |"
        lines[1] += "---|---|---|"
    for r in rows:
        line = (
            f"| {r.cell} | {r.hidden} | {r.steps} | {r.rev_ms:.1f} | {r.ord_ms:.1f} | {r.rev_ms / r.ord_ms:.2f}x "
            f"| {r.torch_ms:.1f} | {r.rev_ms / r.torch_ms:.2f}x "
            f"| {r.rev_bytes / 2**20:.2f} | {r.ord_bytes / 2**20:.2f} "
            f"| {r.ord_bytes / r.rev_bytes:.1f}x | {r.savings:.1f}x | {r.ideal_savings:.1f}x |"
        )
        if device.type == "cuda":
            line += f" {r.rev_peak / 2**20:.1f} | {r.ord_peak / 2**20:.1f} | {r.torch_peak / 2**20:.1f} |"
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one small configuration (LSTM, H=256, T=35)")
    parser.add_argument("--cells", nargs="+", default=["lstm", "gru"], choices=["lstm", "gru"])
    parser.add_argument("--hidden", nargs="+", type=int, default=[256, 650])
    parser.add_argument("--steps", nargs="+", type=int, default=[35, 70, 200])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--bits", type=int, default=3, help="max forget bits")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.quick:
        args.cells, args.hidden, args.steps = ["lstm"], [256], [35]
    device = torch.device(args.device)
    configs = [(c, h, t) for c in args.cells for h in args.hidden for t in args.steps]
    print(
        f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
        f"batch={args.batch} layers={args.layers} bits={args.bits} repeats={args.repeats}"
    )
    rows = [
        measure(c, h, t, args.batch, args.layers, args.bits, args.repeats, device)
        for c, h, t in tqdm(configs, desc="configurations")
    ]
    print(table(rows, device))
    rev = sum(r.rev_ms for r in rows)
    ordinary = sum(r.ord_ms for r in rows)
    reduction = statistics.geometric_mean([r.ord_bytes / r.rev_bytes for r in rows])
    print(f"reversible/ordinary step time: {rev / ordinary:.2f}x, saved-bytes reduction: {reduction:.1f}x")


if __name__ == "__main__":
    main()
