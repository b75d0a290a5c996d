"""Multi30K task 1 (Flickr30K captions), the paper's main translation task.

Takes the raw ``{train,val,test_2016_flickr}.{lang}.gz`` files from a local
directory (``--data-dir``, or ``MULTI30K_DIR``) or downloads them from the
dataset's official repository (``--url``, or ``MULTI30K_URL``), then
lowercases, normalises and Moses-tokenises them as the paper did and writes
``OUT/{train,valid,test}.{src,tgt}`` for ``fairseq-preprocess``.

    python -m fairseq_revrnn.recipes.multi30k OUT [--source-lang en --target-lang de] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import gzip
import os
from pathlib import Path

from .download import DataError, fetch, require_files
from .text import moses, write_lines

OFFICIAL_URL = "https://github.com/multi30k/dataset/raw/master/data/task1/raw/"
LANGUAGES = ("en", "de", "fr", "cs")
SPLITS = {"train": "train", "valid": "val", "test": "test_2016_flickr"}  # fairseq's name: the dataset's


def raw_names(src: str, tgt: str) -> list[str]:
    return [f"{split}.{lang}.gz" for split in SPLITS.values() for lang in (src, tgt)]


def check_pair(src: str, tgt: str) -> None:
    """Refuse a language pair Multi30K task 1 does not have, naming the allowed languages."""
    if src not in LANGUAGES or tgt not in LANGUAGES or src == tgt:
        allowed = ", ".join(LANGUAGES)
        raise DataError(f"Multi30K: no language pair {src}-{tgt}; source and target must be two of {allowed}")


def raw_files(src: str, tgt: str, data_dir: Path | None, url: str, cache: Path) -> Path:
    """The directory holding the raw files: ``data_dir`` as given, or ``cache`` after downloading them."""
    names = raw_names(src, tgt)
    if data_dir is not None:
        return require_files(data_dir, names, "Multi30K local directory (--data-dir / MULTI30K_DIR)")
    for name in names:
        fetch(url.rstrip("/") + "/" + name, cache / name)
    return cache


def prepare(out: Path, src: str = "en", tgt: str = "de", data_dir: Path | None = None, url: str = OFFICIAL_URL) -> Path:
    """Write the tokenised splits into ``out``; returns ``out``."""
    check_pair(src, tgt)
    raw = raw_files(src, tgt, data_dir, url, out / "raw")
    out.mkdir(parents=True, exist_ok=True)
    for split, name in SPLITS.items():
        counts = set()
        for lang in (src, tgt):
            with gzip.open(raw / f"{name}.{lang}.gz", "rt", encoding="utf-8") as f:
                counts.add(write_lines(out / f"{split}.{lang}", moses(f, lang, desc=f"tokenise {name}.{lang}")))
        if len(counts) != 1:
            raise DataError(f"Multi30K {name}: {src} and {tgt} have different numbers of lines {sorted(counts)}")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="where to write {train,valid,test}.{src,tgt}")
    parser.add_argument("--source-lang", default="en", help=f"one of {', '.join(LANGUAGES)} (default en)")
    parser.add_argument("--target-lang", default="de", help=f"one of {', '.join(LANGUAGES)} (default de)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=os.environ.get("MULTI30K_DIR") or None,
        help="local directory with the raw *.gz files (default: $MULTI30K_DIR; else download)",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("MULTI30K_URL") or OFFICIAL_URL,
        help="base URL of the raw files (default: $MULTI30K_URL or the official repository)",
    )
    args = parser.parse_args(argv)
    out = prepare(args.out, args.source_lang, args.target_lang, args.data_dir, args.url)
    for split in SPLITS:
        path = out / f"{split}.{args.source_lang}"
        print(f"{out / split}.{{{args.source_lang},{args.target_lang}}}: {sum(1 for _ in open(path))} pairs")


if __name__ == "__main__":
    main()
