"""Reading fairseq's logs: the json records ``--log-format json`` writes, by tag."""

from __future__ import annotations

import json
from pathlib import Path


def records(text: str, tag: str) -> list[dict]:
    """Every ``| tag | {...}`` json record in fairseq output (``train_inner``, ``train``, ``valid``...)."""
    marker = f"| {tag} | "
    return [json.loads(line.split(marker, 1)[1]) for line in text.splitlines() if marker in line]


def read_records(path: Path, tag: str) -> list[dict]:
    return records(Path(path).read_text(encoding="utf-8", errors="replace"), tag)


def number(record: dict, key: str) -> float | None:
    """A numeric field of a record (fairseq writes them as strings), or None if absent."""
    value = record.get(key)
    return None if value is None else float(value)


def without_redone(recs: list[dict], key: str) -> list[dict]:
    """``recs`` without those a resumed run trained again. fairseq resumes from the last checkpoint, so
    what a stopped process logged after it (``key``, e.g. ``num_updates``, not below a later record's) is
    redone by the next process, whose records replace it."""
    kept: list[dict] = []
    for rec in recs:
        x = number(rec, key)
        while x is not None and kept and (number(kept[-1], key) or 0) >= x:
            kept.pop()
        kept.append(rec)
    return kept
