#!/usr/bin/env python
"""Host syncs and buffer memory of the two overflow policies (docs/design.md, section 3).

For a 2 x 32 stack (batch 8, random inputs, 3 bits and no limit), one training
step (forward + backward) under the CPU policy (plan one step at a time: a
buffer is pushed only when full) and the accelerator policy (plan
``read_interval`` steps, one read per interval at most), both run here on the
CPU: host syncs per step, the paper's actual savings, and buffer pushes.

    .venv/bin/python scripts/bench_overflow_reads.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fairseq_revrnn.core import (  # noqa: E402
    ReversibleRNN,
    total,
    walks,
)
from fairseq_revrnn.core.buffer import read_interval  # noqa: E402
from fairseq_revrnn.core.fixed_point import Forgetting  # noqa: E402
from fairseq_revrnn.core.meter import count_syncs  # noqa: E402

POLICIES = {"cpu": torch.device("cpu"), "accelerator": torch.device("cuda")}


def measure(cell: str, bits, steps: int, policy: str) -> tuple[int, float, int]:
    walks.read_interval = lambda growth, device: read_interval(growth, POLICIES[policy])
    torch.manual_seed(0)
    module = ReversibleRNN(cell, 32, [32, 32], max_forget_bits=bits, compile="off")
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
    print("\n| cell | bits | T | policy | read interval | host syncs | syncs/step | actual savings | pushes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for cell in ("lstm", "gru"):
        for bits in (3, None):
            for steps in (200, 1000):
                for policy, device in POLICIES.items():
                    growth = Forgetting(bits).growth_bits
                    syncs, savings, pushes = measure(cell, bits, steps, policy)
                    print(f"| {cell} | {bits or 'none'} | {steps} | {policy} | {read_interval(growth, device)} "
                          f"| {syncs} | {syncs / steps:.2f} | {savings:.2f}x | {pushes} |")  # fmt: skip


if __name__ == "__main__":
    main()
