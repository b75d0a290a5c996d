#!/usr/bin/env python
"""Compress the input- and forget-gate weights of a g2_lstm / g2_lstm_lm checkpoint
(Li et al. 2018, section 4.3): round to multiples of R (then clip to [-C, C]) and/or
replace each gate's matrix by its rank-K SVD reconstruction.

    .venv/bin/python scripts/compress_gates.py --path IN.pt --out OUT.pt --round-step 0.5 --clip 1.0
    .venv/bin/python scripts/compress_gates.py --path IN.pt --out OUT.pt --rank 16

The paper's settings: language model R 0.2, C 0.4, ranks 128 and 64 (hidden 1150);
translation R 0.5, C 1.0, ranks 32 and 16 (hidden 256). The matrices are stored dense,
so ``fairseq-generate`` / ``fairseq-eval-lm --user-dir fairseq_revrnn`` load OUT.pt as
they load IN.pt; the report gives the parameters a factored form would have. What is
compressed and how: ``fairseq_revrnn/units/compression.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

OPTIONS = {"round_step": "--round-step", "clip": "--clip", "rank": "--rank"}


def g2_model_class(arch: str):
    """The registered model class of ``arch`` if it is a G2-LSTM model, else None."""
    from fairseq.models import ARCH_MODEL_REGISTRY

    from fairseq_revrnn.models.g2_lstm import G2LSTMLanguageModel, G2LSTMModel

    model = ARCH_MODEL_REGISTRY.get(arch)
    return model if model is not None and issubclass(model, (G2LSTMModel, G2LSTMLanguageModel)) else None


def summary(reports, rank) -> str:
    """One line per gate block, then the totals."""
    lines = []
    for r in reports:
        factored = "" if r.factored is None else f", factored {r.factored}"
        lines.append(
            f"{r.name} [{r.gate}] {r.shape[0]}x{r.shape[1]}: {r.distinct} distinct values, "
            f"{100 * r.zeros:.1f}% zeros, largest change {r.max_change:.4f}{factored}"
        )
    dense = sum(r.dense for r in reports)
    total = f"{len(reports)} gate blocks, {dense} parameters"
    if rank is not None:
        factored = sum(r.factored for r in reports)
        total += f"; rank {rank} factored: {factored} ({dense / factored:.1f}x fewer)"
    return "\n".join(lines + [total])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", type=Path, required=True, help="a g2_lstm / g2_lstm_lm checkpoint")
    parser.add_argument("--out", type=Path, required=True, help="where to write the compressed checkpoint")
    parser.add_argument("--round-step", type=float, help="round the gate weights to multiples of R (> 0)")
    parser.add_argument("--clip", type=float, help="then clip them to [-C, C] (needs --round-step)")
    parser.add_argument("--rank", type=int, help="keep K singular values of each gate's matrix (1 <= K <= its rank)")
    args = parser.parse_args(argv)

    from fairseq_revrnn.units.compression import GateCompression, compress_state_dict

    try:
        spec = GateCompression(args.round_step, args.clip, args.rank, names=OPTIONS)
    except ValueError as error:
        parser.error(str(error))
    if not args.path.is_file():
        parser.error(f"--path {args.path}: no such file")

    from fairseq import checkpoint_utils
    from omegaconf import OmegaConf

    import fairseq_revrnn  # noqa: F401  (registers the models and the checkpoint allow-list)

    state = checkpoint_utils.load_checkpoint_to_cpu(str(args.path))
    arch = state["cfg"]["model"]["_name"] if state.get("cfg") is not None else None
    if g2_model_class(arch) is None:
        parser.error(f"--path {args.path} is a {arch!r} checkpoint, not a g2_lstm / g2_lstm_lm model")
    try:
        reports = compress_state_dict(state["model"], spec)
    except ValueError as error:
        parser.error(str(error))
    state["cfg"] = OmegaConf.to_container(state["cfg"], resolve=True, enum_to_str=True)
    state["gate_compression"] = {"round_step": args.round_step, "clip": args.clip, "rank": args.rank}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint_utils.torch_persistent_save(state, str(args.out))
    print(summary(reports, args.rank))
    print(f"wrote {args.out} ({arch})")


if __name__ == "__main__":
    main()
