"""The README's main job, `scripts/demo.py`, on small settings: both parts, its table and its plots;
and without Multi30K, the language-model part alone."""

import os
import subprocess
import sys

import pytest
from PIL import Image

from .data import REPO
from .test_recipe_multi30k import raw_dir  # noqa: F401  (fixture: a small raw Multi30K directory)

pytestmark = pytest.mark.cli

TINY = [
    "--ptb-lines", "300", "--lm-updates", "3", "--lm-hidden", "32", "--mt-updates", "3", "--mt-hidden", "32",
    "--mt-slice", "8", "--log-interval", "1",
]  # fmt: skip


def demo(workdir, **env) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "demo.py"), "--workdir", str(workdir), *TINY],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def table_rows(stdout: str) -> dict[tuple[str, str], list[str]]:
    """The demo's table: from its header on (the recipes' "| peak_rss |" records come before it)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| task | model | updates |"))
    rows = [line.strip("| ").split(" | ") for line in lines[start:] if line.startswith("| ")]
    return {(r[0], r[1]): r for r in rows[1:]}


def test_demo_trains_evaluates_tabulates_and_plots(raw_dir, tmp_path):  # noqa: F811
    proc = demo(tmp_path, MULTI30K_DIR=str(raw_dir))
    rows = table_rows(proc.stdout)
    assert set(rows) == {
        ("PTB LM", "RevLSTM LM"), ("PTB LM", "LSTM LM (fairseq)"),
        ("Multi30K en-de", "rev_lstm"), ("Multi30K en-de", "LSTM (fairseq)"),
    }  # fmt: skip
    for (task, model), (_, _, updates, valid_ppl, test_ppl, bleu, actual, ideal, wps, rss) in rows.items():
        assert updates == "3" and float(valid_ppl) > 1 and float(wps) > 0 and float(rss) > 100
        assert (test_ppl != "-") == (task == "PTB LM") and (bleu != "-") == (task != "PTB LM")
        reversible = model in ("RevLSTM LM", "rev_lstm")
        assert (actual != "-") == reversible
        if reversible:
            assert 1 < float(actual) < float(ideal)
    assert "words/s reversible/standard" in proc.stdout and "peak RSS standard/reversible" in proc.stdout
    assert (tmp_path / "summary.md").read_text().startswith("| task | model |")
    for name in ("ptb_memory", "ptb_perplexity", "multi30k_memory", "multi30k_perplexity"):
        with Image.open(tmp_path / "plots" / f"{name}.png") as image:
            assert image.format == "PNG" and image.size == (1000, 450)
        assert str(tmp_path / "plots" / f"{name}.png") in proc.stdout


def test_demo_without_multi30k_still_runs_the_language_model(tmp_path):
    proc = demo(tmp_path, MULTI30K_DIR=str(tmp_path / "no-such-dir"))
    assert "Multi30K could not be had" in proc.stdout + proc.stderr
    assert {task for task, _ in table_rows(proc.stdout)} == {"PTB LM"}
    assert (tmp_path / "plots" / "ptb_perplexity.png").exists()
    assert not (tmp_path / "plots" / "multi30k_perplexity.png").exists()
