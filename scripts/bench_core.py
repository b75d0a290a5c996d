#!/usr/bin/env python
"""Benchmark the reversible core against its own ordinary mode, cuDNN-style torch
RNNs, and those RNNs under activation checkpointing (what a user short of memory
would pick instead).

For each configuration it measures, in one run: time per training step
(forward + backward) in reversible and ordinary mode, for ``torch.nn.LSTM`` /
``torch.nn.GRU`` of the same size, and for that torch RNN run in chunks of
about sqrt(T) steps, each under ``torch.utils.checkpoint`` (non-reentrant),
carrying the state between chunks; bytes kept for backward; the paper's memory
metric (actual and ideal savings); and top-level operators dispatched per time
step and layer in a whole training step (``core.meter.ops_per_step``: on a GPU
each is a host-side dispatch and most a kernel launch); and the floating-point
operations of the matrix products (``core.meter.count_flops``, counted on eager
code) with the rate they ran at, which tells whether a model is slower because
it computes more or because its products are smaller.

Kept bytes: for the two modes, what ``SavedTensorMeter`` sees saved
(parameters excluded, unique storages, the input ``x`` included). A checkpoint
keeps its chunks' inputs and RNG states in its own frame, out of sight of
saved-tensor hooks, so for it the bytes are ``StepMemory``'s live bytes
between forward and backward (everything allocated in the forward and still
alive once the output is dropped and only the loss held) plus ``x``, allocated
before. Measured both ways, the two modes and the plain torch RNN agree to
within a few KB.

    python scripts/bench_core.py            # full table (2 cells x H {256,650} x T {35,70,200})
    python scripts/bench_core.py --quick    # one small configuration, < 1 minute
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint
from tqdm import tqdm

from fairseq_revrnn.core import ReversibleRNN, SavedTensorMeter, total
from fairseq_revrnn.core.meter import StepMemory, count_flops, ops_per_step


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
    ckpt_ms: float
    ckpt_bytes: int
    ops: tuple[float, float, float, float]  # per step and layer: rev, ord, torch, checkpoint
    flops: tuple[float, float]  # matrix-product GFLOP of a training step: rev, torch
    rev_peak: float = float("nan")
    ord_peak: float = float("nan")
    torch_peak: float = float("nan")
    ckpt_peak: float = float("nan")


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


def run_checkpointed(rnn: torch.nn.RNNBase, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """``rnn(x)``'s outputs, recomputing each chunk of ``chunk`` steps in the
    backward instead of keeping its activations; only the states between
    chunks (and each chunk's input) are kept."""
    state, outs = None, []
    for start in range(0, x.shape[0], chunk):
        out, state = checkpoint(rnn, x[start : start + chunk], state, use_reentrant=False)
        outs.append(out)
    return torch.cat(outs)


def kept_bytes(forward, x: torch.Tensor, weights: torch.Tensor, device: torch.device) -> int:
    """Bytes allocated by ``forward()`` and still alive between forward and
    backward once only the loss is held, plus ``x`` (see the module docstring)."""
    with StepMemory(device) as memory:
        out = forward()
        loss = (out * weights).sum()
        del out
        memory.mark("forward")
    loss.backward()
    return memory.live["forward"] + x.numel() * x.element_size()


def measure(
    cell: str,
    hidden: int,
    steps: int,
    batch: int,
    layers: int,
    bits: int,
    repeats: int,
    device,
    chunk: int = 0,
    compile: str = "auto",
) -> Row:
    """One configuration; ``chunk`` steps per checkpoint (0: about sqrt(T)); ``compile``
    the reversible stack's half-step mode."""
    torch.manual_seed(0)
    chunk = chunk or max(1, round(math.sqrt(steps)))
    model = ReversibleRNN(cell, hidden, [hidden] * layers, max_forget_bits=bits, compile=compile).to(device)
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

    def step_checkpointed():
        (run_checkpointed(baseline, x, chunk) * weights).sum().backward()

    fns = [step(True), step(False), step_torch, step_checkpointed]
    ops = tuple(ops_per_step(fn, steps, layers) for fn in fns)
    mode, model.compile = model.compile, "off"  # the counter sees eager ops; the products are the same
    flops = (count_flops(fns[0]) / 1e9, count_flops(step_torch) / 1e9)
    model.compile = mode
    rev_s, ord_s, torch_s, ckpt_s = _time(fns, device, repeats)
    rev_peak, ord_peak, torch_peak, ckpt_peak = (_peak(fn, device) for fn in fns)
    saved = {}
    for reversible in (True, False):
        model.reversible = reversible
        with SavedTensorMeter(exclude=list(model.parameters())) as meter:
            out = model(x)
        saved[reversible] = meter.bytes
        if reversible:
            stats = total(out.memory)
        del out
    ckpt_bytes = kept_bytes(lambda: run_checkpointed(baseline, x, chunk), x, weights, device)
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
        1000 * ckpt_s,
        ckpt_bytes,
        ops,
        flops,
        rev_peak,
        ord_peak,
        torch_peak,
        ckpt_peak,
    )


def table(rows: list[Row], device: torch.device) -> str:
    head = (
        "| cell | H | T | reversible ms | ordinary ms | rev/ord | torch ms | rev/torch "
        "| saved MB rev | saved MB ord | saved-bytes reduction | savings actual | savings ideal "
        "| ckpt ms | rev/ckpt | saved MB ckpt | ops/step rev | ops/step ord | ops/step torch | ops/step ckpt "
        "| GFLOP rev | GFLOP torch | rev/torch GFLOP | GFLOP/s rev | GFLOP/s torch |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    if device.type == "cuda":
        lines[0] += " peak MB rev | peak MB ord | peak MB torch | peak MB ckpt |"
        lines[1] += "---|---|---|---|"
    for r in rows:
        line = (
            f"| {r.cell} | {r.hidden} | {r.steps} | {r.rev_ms:.1f} | {r.ord_ms:.1f} | {r.rev_ms / r.ord_ms:.2f}x "
            f"| {r.torch_ms:.1f} | {r.rev_ms / r.torch_ms:.2f}x "
            f"| {r.rev_bytes / 2**20:.2f} | {r.ord_bytes / 2**20:.2f} "
            f"| {r.ord_bytes / r.rev_bytes:.1f}x | {r.savings:.1f}x | {r.ideal_savings:.1f}x "
            f"| {r.ckpt_ms:.1f} | {r.rev_ms / r.ckpt_ms:.2f}x | {r.ckpt_bytes / 2**20:.2f} "
            f"| {' | '.join(f'{n:.1f}' for n in r.ops)} "
            f"| {r.flops[0]:.2f} | {r.flops[1]:.2f} | {r.flops[0] / r.flops[1]:.2f}x "
            f"| {1000 * r.flops[0] / r.rev_ms:.0f} | {1000 * r.flops[1] / r.torch_ms:.0f} |"
        )
        if device.type == "cuda":
            peaks = (r.rev_peak, r.ord_peak, r.torch_peak, r.ckpt_peak)
            line += " " + " | ".join(f"{p / 2**20:.1f}" for p in peaks) + " |"
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
    parser.add_argument("--checkpoint-chunk", type=int, default=0, help="steps per checkpoint (0: about sqrt(T))")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", default="auto", choices=["auto", "on", "off"], help="half-steps compiled or not")
    args = parser.parse_args()
    if args.quick:
        args.cells, args.hidden, args.steps = ["lstm"], [256], [35]
    device = torch.device(args.device)
    configs = [(c, h, t) for c in args.cells for h in args.hidden for t in args.steps]
    print(
        f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
        f"batch={args.batch} layers={args.layers} bits={args.bits} repeats={args.repeats} "
        f"checkpoint chunk={args.checkpoint_chunk or 'sqrt(T)'} compile={args.compile}"
    )
    rows = [
        measure(c, h, t, args.batch, args.layers, args.bits, args.repeats, device, args.checkpoint_chunk, args.compile)
        for c, h, t in tqdm(configs, desc="configurations")
    ]
    print(table(rows, device))
    rev = sum(r.rev_ms for r in rows)
    ordinary = sum(r.ord_ms for r in rows)
    reduction = statistics.geometric_mean([r.ord_bytes / r.rev_bytes for r in rows])
    print(f"reversible/ordinary step time: {rev / ordinary:.2f}x, saved-bytes reduction: {reduction:.1f}x")


if __name__ == "__main__":
    main()
