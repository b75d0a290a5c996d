#!/usr/bin/env python
"""Keep the test suite honest: apply small, plausible bugs one at a time and
check that the fast tests catch each.

    .venv/bin/python scripts/mutate.py            # or: make mutate
    .venv/bin/python scripts/mutate.py --list     # the mutations, without running anything
    .venv/bin/python scripts/mutate.py --only 3 7 # some of them

Each mutation replaces one exact piece of source text (it must occur exactly
once), runs ``pytest -m "not cli" -x`` and restores the file, whatever
happens. A mutation the tests do not catch "survives": the report lists them
and the exit status is 1 if any did. Add a mutation here whenever a bug slips
past the tests, together with the test that now catches it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "fairseq_revrnn"


@dataclass(frozen=True)
class Mutation:
    what: str
    path: str
    old: str
    new: str


MUTATIONS = [
    Mutation("padding counted in the ideal bits", "core/buffer.py", "lost = lost * valid", "lost = lost + 0 * valid"),
    Mutation(
        "GRU no-forgetting surrogate multiplies by z",
        "core/cells.py",
        "keep = old.h if fg.disabled else G.z * old.h",
        "keep = G.z * old.h",
    ),
    Mutation("output bias gradient a mean, not a sum", "core/walks.py", "db = g.sum(0)", "db = g.mean(0)"),
    Mutation(
        "output weight gradient from the wrong tensor",
        "core/walks.py",
        "grads[w] = g.t() @ self.head_features.reshape(",
        "grads[w] = g.t() @ self.head_out.reshape(",
    ),
    Mutation(
        "ExactState.index_select leaves the buffers unreordered",
        "core/engine.py",
        "[HalfState(*(b.index_select(order) for b in half.present())) for half in bufs]",
        "[HalfState(*(b.copy() for b in half.present())) for half in bufs]",
    ),
    Mutation(
        "reorder_incremental_state does nothing",
        "models/common.py",
        'reordered = {"state": cached["state"].index_select(new_order)}',
        'reordered = {"state": cached["state"]}',
    ),
    Mutation(
        "advance restarts with fresh buffers",
        "core/engine.py",
        "[HalfState(*(b.copy() for b in half.present())) for half in bufs]",
        "[HalfState(*(InfoBuffer(tuple(b.buf.shape), b.buf.device) for b in half.present())) for half in bufs]",
    ),
    Mutation(
        "the checkpoint allow-list replaced by unsafe loading",
        "checkpoints.py",
        "add(list(FAIRSEQ_CHECKPOINT_TYPES))",
        '__import__("os").environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"',
    ),
    Mutation(
        "backward walks chunks of one step",
        "core/walks.py",
        "for cs, ce in reversed(call.chunks()):",
        "for cs, ce in reversed([(t, t + 1) for t in range(call.steps)]):",
    ),
    Mutation(
        "memory ratios assume plain numbers (several workers send tensors)",
        "criterions/memory_logging.py",
        'naive = sum(float(utils.item(meters[f"_mem_{p}_naive"].sum)) for p in parts)',
        'naive = sum(meters[f"_mem_{p}_naive"].sum for p in parts)',
    ),
    Mutation(
        "fixed point converted through the narrow float dtype",
        "core/fixed_point.py",
        "return h.to(wide_dtype(dtype)).mul_(float(2.0**-radix)).to(dtype)",
        "return h.to(dtype).mul_(float(2.0**-radix))",
    ),
    Mutation(
        "the bound on h's forget value ignored by the LSTM gates",
        "core/cells.py",
        "fg.hidden.limit(sp)",
        "fg.limit(sp)",
    ),
    Mutation(
        "a dropout of 1 accepted at model build",
        "models/common.py",
        "not 0 <= p < 1:",
        "not 0 <= p <= 1:",
    ),
    Mutation(
        "the fused loss's gradient forgets the label-smoothing term",
        "core/loss.py",
        "dlogits = p.mul_(g_nll + g_smooth * vocab).sub_(g_smooth)",
        "dlogits = p.mul_(g_nll)",
    ),
    Mutation(
        "the output layer's last block of gradients is never added",
        "core/loss.py",
        "        self.flush()\n        self.dlogits = self.inputs = None",
        "        self.dlogits = self.inputs = None",
    ),
    Mutation(
        "the autograd context keeps the call with its tensors (and the head's cache)",
        "core/function.py",
        "ctx.call = call.skeleton()",
        "ctx.call = call",
    ),
    Mutation(
        "the host-side bound trusted past the overflow limit (no push ever)",
        "core/buffer.py",
        "return bits + self.growth_bits * (steps - 1) <= self.overflow_bits",
        "return True",
    ),
    Mutation(
        "the loss gradient computed under autograd (every block's logits kept)",
        "core/head.py",
        "with torch.no_grad():\n                dout = dout(out.detach())",
        "with torch.enable_grad():\n                dout = dout(out.detach())",
    ),
]


def apply(m: Mutation) -> tuple[Path, str]:
    path = PKG / m.path
    text = path.read_text(encoding="utf-8")
    count = text.count(m.old)
    if count != 1:
        raise SystemExit(f"mutation {m.what!r}: expected the text once in {m.path}, found it {count} times")
    path.write_text(text.replace(m.old, m.new), encoding="utf-8")
    return path, text


def caught(timeout: int) -> tuple[bool, str]:
    """Run the fast tests; True if they fail (the mutation is caught), with the first failure."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-m", "not cli", "-p", "no:cacheprovider", "tests"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    failed = [line for line in proc.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return proc.returncode != 0, (failed[0] if failed else proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--only", type=int, nargs="+", help="run only these mutations (numbers from --list)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per test run")
    args = parser.parse_args()
    chosen = [(i, m) for i, m in enumerate(MUTATIONS, 1) if not args.only or i in args.only]
    if args.list:
        for i, m in chosen:
            print(f"{i:2d}. {m.what} ({m.path})")
        return
    survivors = []
    for i, m in tqdm(chosen, desc="mutations"):
        path, original = apply(m)
        start = time.time()
        try:
            ok, detail = caught(args.timeout)
        finally:
            path.write_text(original, encoding="utf-8")
        verdict = "caught  " if ok else "SURVIVED"
        tqdm.write(f"{i:2d}. {verdict} {m.what} ({time.time() - start:.0f} s): {detail}")
        if not ok:
            survivors.append(m.what)
    print(f"\n{len(chosen) - len(survivors)} of {len(chosen)} mutations caught by the fast tests")
    for what in survivors:
        print(f"survived: {what}")
    sys.exit(1 if survivors else 0)


if __name__ == "__main__":
    main()
