#!/usr/bin/env python
"""Host syncs and buffer memory of the overflow plans (docs/design.md, section 3).

For a 2 x 32 stack (batch 8, random inputs, 3 bits and no limit), one training
step (forward + backward) under each ``overflow`` mode, all run here on the
CPU: ``read`` (auto's choice on a CPU: plan one step at a time, a buffer is
pushed only when full), ``margin`` (auto's choice on an accelerator: plan
16 / bits steps, one read per interval at most) and ``bound`` (never read,
push on the worst case). Printed: host syncs per step, the paper's actual
savings, and buffer pushes.

    .venv/bin/python scripts/bench_overflow_reads.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fairseq_revrnn.core import ReversibleRNN, total  # noqa: E402
from fairseq_revrnn.core.buffer import overflow_plan  # noqa: E402
from fairseq_revrnn.core.fixed_point import Forgetting  # noqa: E402
from fairseq_revrnn.core.meter import count_syncs  # noqa: E402

MODES = ("read", "margin", "bound")


def measure(cell: str, bits, steps: int, mode: str) -> tuple[int, float, int]:
    torch.manual_seed(0)
    module = ReversibleRNN(cell, 32, [32, 32], max_forget_bits=bits, compile="off", overflow=mode)
    x = torch.randn(steps, 8, 32, requires_grad=True)
    stats = []

    def step() -> None:
        out = module(x)
        out.outputs.sum().backward()
        stats.append(total(out.memory))

    syncs = count_syncs(step, warmup=0).total
    pushes = module.trace_exact(x)[2]
    return syncs, stats[-1].savings, pushes


def main() -> None:
    print(f"torch={torch.__version__}; 2 x 32 stack, batch 8, one training step")
    print("\n| cell | bits | T | overflow | steps planned | host syncs | syncs/step | actual savings | pushes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for cell in ("lstm", "gru"):
        for bits in (3, None):
            for steps in (200, 1000):
                for mode in MODES:
                    plan = overflow_plan(mode, Forgetting(bits).growth_bits, torch.device("cpu"))
                    syncs, savings, pushes = measure(cell, bits, steps, mode)
                    print(f"| {cell} | {bits or 'none'} | {steps} | {mode} | {plan.steps} "
                          f"| {syncs} | {syncs / steps:.2f} | {savings:.2f}x | {pushes} |")  # fmt: skip


if __name__ == "__main__":
    main()
