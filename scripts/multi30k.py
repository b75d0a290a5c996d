"""Multi30K data for the scripts, from a local copy of the task-1 files.

The paper used lowercased, Moses-tokenised text, which the dataset publishes
as ``*.lc.norm.tok.{en,de}.gz``. ``--data-dir`` or ``MULTI30K_DIR`` points at
a directory holding them (e.g. ``../shared/data/multi30k``).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

SPLITS = ("train", "val", "test_2016_flickr")


def locate(data_dir: str | None) -> Path:
    """The directory with ``{split}.lc.norm.tok.{en,de}.gz`` for every split."""
    chosen = data_dir or os.environ.get("MULTI30K_DIR")
    if not chosen:
        raise SystemExit("give --data-dir or set MULTI30K_DIR to a directory with the Multi30K task-1 files")
    path = Path(chosen)
    missing = [f for f in _files() if not (path / f).exists()]
    if missing:
        raise SystemExit(f"{path} lacks Multi30K files: {', '.join(missing)}")
    return path


def _files() -> list[str]:
    return [f"{split}.lc.norm.tok.{lang}.gz" for split in SPLITS for lang in ("en", "de")]


def write_plain(src: Path, dest: Path, limit: int | None = None) -> Path:
    """Decompress each split into ``dest/{split}.{lang}`` (optionally the first lines only)."""
    dest.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        for lang in ("en", "de"):
            with gzip.open(src / f"{split}.lc.norm.tok.{lang}.gz", "rt", encoding="utf-8") as f:
                lines = f.readlines() if limit is None else [line for _, line in zip(range(limit), f)]
            (dest / f"{split}.{lang}").write_text("".join(lines), encoding="utf-8")
    return dest
