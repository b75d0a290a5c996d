"""The language-model recipes (examples/language_model/*.sh) end to end on a small PTB subset.

Each script runs under ``bash`` exactly as a user would run it; WikiText-2's
download path fetches a small zip in the official layout from a real HTTP
server on 127.0.0.1.
"""

from __future__ import annotations

import json
import math
import subprocess
import zipfile
from pathlib import Path

import pytest

from fairseq_revrnn.recipes.logs import number, read_records, records
from fairseq_revrnn.recipes.results import summarise

from .data import recipe, succeeded, table_rows
from .http_server import serve

pytestmark = pytest.mark.cli

LINES = 200
SPLITS = ("train", "valid", "test")
# Shrinks the cpu-sized models so that a few updates take seconds; EXTRA overrides the recipe's 2 layers.
TINY = {"HIDDEN": "16", "LOG_INTERVAL": "1", "EXTRA": "--decoder-layers 1 --num-workers 0"}


def run(script: str, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return recipe(f"language_model/{script}", *args, cwd=cwd, timeout=300, **env)


ok = succeeded


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A directory where prepare-ptb.sh has written data/ptb (first LINES lines) and data-bin/ptb."""
    root = tmp_path_factory.mktemp("lm")
    ok(run("prepare-ptb.sh", root, "data-bin/ptb", LINES=str(LINES)))
    return root


def test_prepare_ptb_writes_the_subset_and_binarises_it(workdir):
    for split in SPLITS:
        lines = (workdir / "data" / "ptb" / f"ptb.{split}.txt").read_text(encoding="utf-8").splitlines()
        assert len(lines) == LINES and all(lines)
        for ext in ("bin", "idx"):
            assert (workdir / "data-bin" / "ptb" / f"{split}.{ext}").stat().st_size > 0
    words = {w for line in (workdir / "data" / "ptb" / "ptb.train.txt").open(encoding="utf-8") for w in line.split()}
    entries = (workdir / "data-bin" / "ptb" / "dict.txt").read_text(encoding="utf-8").splitlines()
    listed = {line.split()[0] for line in entries if not line.startswith("madeupword")}  # fairseq's padding
    assert listed == words - {"<unk>"}  # <unk> is one of fairseq's special symbols, not listed


@pytest.fixture(scope="module", params=["rev", "baseline"])
def trained(request, workdir):
    """(model, save dir, completed process) of a 2-update cpu-sized run, shrunk by EXTRA."""
    model = request.param
    save = workdir / "checkpoints" / model
    proc = run("train-lm.sh", workdir, DATA="data-bin/ptb", MODEL=model, MAX_UPDATE="2", SAVE_DIR=str(save), **TINY)
    return model, save, ok(proc)


def test_train_writes_checkpoints_and_the_json_log(trained):
    model, save, proc = trained
    assert (save / "checkpoint_last.pt").exists() and (save / "checkpoint_best.pt").exists()
    log = save / "train.log"
    steps = read_records(log, "train_inner")
    assert [s["num_updates"] for s in steps] == ["1", "2"]
    assert all(math.isfinite(number(s, "loss")) for s in steps)
    assert records(proc.stdout, "train_inner") == steps  # teed: the terminal saw the same records
    (valid,) = read_records(log, "valid")
    assert math.isfinite(number(valid, "valid_loss"))
    text = log.read_text(encoding="utf-8")
    if model == "rev":
        assert "model: RevRNNLanguageModel" in text and "'criterion': {'_name': 'rev_cross_entropy'" in text
        assert "'decoder_layers': 1" in text and "'decoder_hidden_size': 16" in text
        assert all(number(s, "mem_savings") > 1.0 and number(s, "mem_savings_ideal") > 1.0 for s in steps)
    else:
        assert "model: LSTMLanguageModel" in text and "'criterion': {'_name': 'cross_entropy'" in text
        assert "decoder_layers=1" in text and "decoder_hidden_size=16" in text
        assert not any("mem_savings" in s for s in steps)
    info = json.loads((save / "run.json").read_text())
    assert info["task"] == "language_model" and info["model"] == model and info["size"] == "cpu"


def test_eval_lm_prints_a_finite_perplexity(trained, workdir):
    model, save, _ = trained
    proc = ok(run("eval-lm.sh", workdir, DATA="data-bin/ptb", SAVE_DIR=str(save)))
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith(f"test perplexity of {save / 'checkpoint_best.pt'}: ")
    perplexity = float(last.rsplit(": ", 1)[1])
    vocabulary = len((workdir / "data-bin" / "ptb" / "dict.txt").read_text(encoding="utf-8").splitlines())
    assert 1.0 < perplexity < 4 * vocabulary  # 2 updates: still near uniform over the vocabulary
    assert f"Perplexity: {last.rsplit(': ', 1)[1]}" in (save / "eval.log").read_text(encoding="utf-8")
    row = summarise(save)  # the results table reads the same files
    assert row["test_ppl"] == perplexity and row["updates"] == 2
    assert (row["savings"] is not None) == (model == "rev")


def _wikitext_from_ptb(workdir: Path, dest: Path) -> Path:
    """PTB text under WikiText-2's file names."""
    dest.mkdir(parents=True)
    for split in SPLITS:
        text = (workdir / "data" / "ptb" / f"ptb.{split}.txt").read_text(encoding="utf-8")
        (dest / f"wiki.{split}.tokens").write_text(text, encoding="utf-8")
    return dest


def test_wikitext2_from_a_local_directory(workdir, tmp_path):
    tokens = _wikitext_from_ptb(workdir, tmp_path / "mine")
    ok(run("prepare-wikitext2.sh", tmp_path, WIKITEXT2_DIR=str(tokens)))
    out = tmp_path / "data-bin" / "wikitext-2"
    assert (out / "dict.txt").read_text() == (workdir / "data-bin" / "ptb" / "dict.txt").read_text()
    assert all((out / f"{split}.bin").stat().st_size > 0 for split in SPLITS)
    assert not (tmp_path / "data").exists()  # nothing downloaded or copied


def test_wikitext2_download_from_127_0_0_1(workdir, tmp_path):
    tokens = _wikitext_from_ptb(workdir, tmp_path / "tokens")
    site = tmp_path / "site"
    site.mkdir()
    with zipfile.ZipFile(site / "wikitext-2-v1.zip", "w") as z:
        for split in SPLITS:
            z.write(tokens / f"wiki.{split}.tokens", f"wikitext-2/wiki.{split}.tokens")
    work = tmp_path / "work"
    work.mkdir()
    with serve(site) as url:
        ok(run("prepare-wikitext2.sh", work, "bin", WIKITEXT2_URL=url + "wikitext-2-v1.zip"))
    raw = work / "data" / "wikitext-2"
    assert (raw / "wikitext-2-v1.zip").read_bytes() == (site / "wikitext-2-v1.zip").read_bytes()
    assert (raw / "wikitext-2" / "wiki.valid.tokens").read_text() == (tokens / "wiki.valid.tokens").read_text()
    assert (work / "bin" / "dict.txt").read_text() == (workdir / "data-bin" / "ptb" / "dict.txt").read_text()


def test_wikitext2_download_failure_names_the_url(tmp_path):
    with serve(tmp_path) as url:
        proc = run("prepare-wikitext2.sh", tmp_path, WIKITEXT2_URL=url + "missing.zip")
    assert proc.returncode == 1
    assert f"cannot download {url}missing.zip" in proc.stderr and "404" in proc.stderr


@pytest.fixture
def fake_data(tmp_path) -> Path:
    """Enough of a binarised directory to pass the scripts' checks (they must stop before fairseq reads it)."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "dict.txt").write_text("the 1\n")
    return tmp_path / "bin"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"SIZE": "huge"}, "SIZE=huge is not allowed; choose one of: cpu paper"),
        ({"CELL": "rnn"}, "CELL=rnn is not allowed; choose one of: lstm gru"),
        ({"BITS": "0"}, "BITS=0 is not allowed; choose 1..10, none (no limit) or nf (no forgetting)"),
        ({"BITS": "11"}, "BITS=11 is not allowed; choose 1..10"),
        ({"FORGETTING": "df"}, "FORGETTING=df is not allowed; choose one of: fractional discrete"),
        ({"FORGETTING": "discrete", "BITS": "none"}, "FORGETTING=discrete needs BITS=1..10 (the largest shift)"),
        ({"MODEL": "x"}, "MODEL=x is not allowed; choose one of: rev baseline"),
        ({"MODEL": "baseline", "CELL": "gru"}, "CELL=gru is not allowed with MODEL=baseline"),
        ({"HIDDEN": "33"}, "HIDDEN=33 must be a positive even number"),
        ({"SIZE": "paper", "HIDDEN": "64"}, "HIDDEN=64 applies to SIZE=cpu only"),
        ({"MAX_UPDATE": "ten"}, "MAX_UPDATE=ten must be a non-negative integer"),
        ({"BATCH": "0"}, "BATCH=0 must be a positive integer"),
        ({"PATIENCE": "0"}, "PATIENCE=0 must be -1 (never stop early) or a positive integer"),
        ({"DATA": "no/such/dir"}, "DATA=no/such/dir is not a binarised data directory"),
    ],
)
def test_train_refuses_bad_values_before_training(fake_data, tmp_path, env, message):
    save = tmp_path / "save"
    proc = run("train-lm.sh", tmp_path, **{"DATA": str(fake_data), "SAVE_DIR": str(save), **env})
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert not save.exists() and proc.stdout == ""


@pytest.mark.parametrize(
    "script, env, message",
    [
        ("eval-lm.sh", {}, "SAVE_DIR is not set"),
        ("eval-lm.sh", {"SAVE_DIR": "run", "SUBSET": "all"}, "SUBSET=all is not allowed; choose one of: test valid"),
        ("eval-lm.sh", {"SAVE_DIR": "run"}, "CHECKPOINT=run/checkpoint_best.pt does not exist"),
        ("prepare-ptb.sh", {"LINES": "abc"}, "LINES=abc must be a positive integer"),
    ],
)
def test_other_scripts_refuse_bad_values(tmp_path, script, env, message):
    proc = run(script, tmp_path, **env)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_wikitext2_local_directory_must_hold_the_three_files(tmp_path):
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "wiki.train.tokens").write_text("a b c\n")
    proc = run("prepare-wikitext2.sh", tmp_path, WIKITEXT2_DIR=str(tmp_path / "partial"))
    assert proc.returncode == 1
    assert "WIKITEXT2_DIR" in proc.stderr and "lacks wiki.valid.tokens, wiki.test.tokens" in proc.stderr
    assert not (tmp_path / "data-bin").exists()


def test_converged_ptb_trains_evaluates_and_sets_the_paper_beside(workdir):
    proc = recipe("converged.sh", cwd=workdir, TASK="ptb", RUNS="conv", MAX_UPDATE="2", timeout=900, **TINY)
    ok(proc)
    runs = workdir / "conv"
    table = (runs / "results.md").read_text().splitlines()
    assert "valid ppl / baseline" in table[0] and "paper valid ppl (1150/650)" in table[0]
    rows = table_rows(runs / "results.md")
    assert set(rows) == {"rev-lstm-bits3", "baseline", "rev-lstm-bits2", "rev-lstm-bits5", "rev-lstm-bitsnone"}
    assert rows["baseline"]["valid ppl / baseline"] == "1.000"
    assert rows["rev-lstm-bits3"]["paper valid ppl (1150/650)"] == "72.8"
    assert rows["baseline"]["RSS: baseline / this"] == "1.00" and float(rows["rev-lstm-bits3"]["peak RSS MB"]) > 100
    for name in rows:
        assert math.isfinite(summarise(runs / name)["test_ppl"])
        assert "'batch_size': 64," in (runs / name / "train.log").read_text()
    assert (runs / "ptb_memory.png").read_bytes().startswith(b"\x89PNG")
    # ONLY: one run trains further (a larger cap), is evaluated and tabulated; the others are left alone.
    again = ok(
        recipe(
            "converged.sh", cwd=workdir, TASK="ptb", RUNS="conv", MAX_UPDATE="3", ONLY="baseline", timeout=900, **TINY
        )
    ).stdout
    assert again.count("training (") == 1 and "baseline: training (" in again
    assert set(table_rows(runs / "results.md")) == {"baseline"}
    assert "@ 3 updates" in (runs / "baseline" / "train.log").read_text()
    assert "@ 3 updates" not in (runs / "rev-lstm-bits3" / "train.log").read_text()
