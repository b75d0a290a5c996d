"""Reading ``fairseq-generate`` output: hypotheses, references and their sacrebleu score.

BLEU is computed on the text as the model sees it (for Multi30K: lowercased,
tokenised), as the paper reports it.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def pairs(output: str) -> tuple[list[str], list[str]]:
    """Hypotheses and references in sentence-id order from ``H-``/``T-`` lines."""
    hyps, refs = {}, {}
    for line in output.splitlines():
        if line.startswith("H-"):
            fields = line.split("\t")
            hyps[int(fields[0][2:])] = fields[2] if len(fields) > 2 else ""
        elif line.startswith("T-"):
            fields = line.split("\t")
            refs[int(fields[0][2:])] = fields[1] if len(fields) > 1 else ""
    if not refs or set(hyps) != set(refs):
        raise ValueError(f"fairseq-generate output has {len(hyps)} hypotheses for {len(refs)} references")
    order = sorted(refs)
    return [hyps[i] for i in order], [refs[i] for i in order]


def bleu(output: str) -> float:
    """Corpus BLEU (sacrebleu) of a ``fairseq-generate`` output."""
    import sacrebleu

    hyps, refs = pairs(output)
    return sacrebleu.corpus_bleu(hyps, [refs], force=True).score


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="sacrebleu BLEU of saved fairseq-generate outputs")
    parser.add_argument("outputs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for path in args.outputs:
        print(f"{path}\tBLEU {bleu(path.read_text(encoding='utf-8')):.2f}")


if __name__ == "__main__":
    main()
