"""The Multi30K recipe end to end: prepare (local directory and download), the grid's
train and evaluate scripts, the results table, and its argument checks."""

import gzip
import subprocess
from pathlib import Path

import pytest

from fairseq_revrnn.recipes.text import moses

from .data import MULTI30K, head_lines, recipe, succeeded, table_rows
from .http_server import serve

pytestmark = pytest.mark.cli

LINES = 120


def script(name: str, *args, cwd: Path, **env) -> subprocess.CompletedProcess:
    return recipe(f"translation/{name}", *args, cwd=cwd, **env)


def ok(proc: subprocess.CompletedProcess) -> str:
    succeeded(proc)
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory) -> Path:
    """The first lines of the raw (untokenised) Multi30K files, in the dataset's layout."""
    if not (MULTI30K / "train.en.gz").exists():
        pytest.skip(f"Multi30K not found at {MULTI30K} (the shared data directory)")
    raw = tmp_path_factory.mktemp("multi30k_raw")
    for split in ("train", "val", "test_2016_flickr"):
        for lang in ("en", "de"):
            head = head_lines(MULTI30K / f"{split}.{lang}.gz", LINES)
            with gzip.open(raw / f"{split}.{lang}.gz", "wt", encoding="utf-8") as f:
                f.writelines(line + "\n" for line in head)
    return raw


@pytest.fixture(scope="module")
def prepared(raw_dir, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("multi30k_recipe")
    ok(script("prepare-multi30k.sh", cwd=work, MULTI30K_DIR=str(raw_dir)))
    return work


def test_tokenisation_reproduces_the_published_files():
    if not (MULTI30K / "train.lc.norm.tok.de.gz").exists():
        pytest.skip(f"Multi30K not found at {MULTI30K}")
    for lang in ("en", "de"):
        raw = head_lines(MULTI30K / f"train.{lang}.gz", 3000)
        published = [line.strip() for line in head_lines(MULTI30K / f"train.lc.norm.tok.{lang}.gz", 3000)]
        same = sum(ours == ref for ours, ref in zip(moses(raw, lang), published))
        assert same >= 0.995 * len(published), f"{lang}: only {same} of {len(published)} lines identical"


def test_local_directory_is_tokenised_and_binarised(prepared):
    tok = prepared / "data" / "multi30k"
    for split in ("train", "valid", "test"):
        for lang in ("en", "de"):
            lines = (tok / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()
            assert len(lines) == LINES
            assert all(line == line.lower() for line in lines)
    assert (tok / "train.en").read_text(encoding="utf-8").startswith("two young , white males are outside")
    binarised = prepared / "data-bin" / "multi30k.en-de"
    for name in ("dict.en.txt", "dict.de.txt", "train.en-de.en.bin", "test.en-de.de.idx"):
        assert (binarised / name).exists(), name


def test_download_path_fetches_the_same_files_over_http(raw_dir, prepared, tmp_path):
    with serve(raw_dir) as url:
        out = ok(script("prepare-multi30k.sh", "tok", cwd=tmp_path, MULTI30K_URL=url, DEST="bin"))
    assert "download train.en.gz" in out
    for split in ("train", "valid", "test"):
        for lang in ("en", "de"):
            assert (tmp_path / "tok" / f"{split}.{lang}").read_bytes() == (
                prepared / "data" / "multi30k" / f"{split}.{lang}"
            ).read_bytes()
    assert (tmp_path / "bin" / "dict.de.txt").exists()


def test_download_failure_names_the_url(tmp_path):
    with serve(tmp_path) as url:
        proc = script("prepare-multi30k.sh", "tok", cwd=tmp_path, MULTI30K_URL=url)
    assert proc.returncode != 0
    assert f"cannot download {url}train.en.gz" in proc.stderr


def test_grid_trains_evaluates_and_tabulates(prepared):
    proc = script(
        "train-multi30k-grid.sh", cwd=prepared, MODELS="rev_gru", ATTENTIONS="Emb+8H", BITS_LIST="2", SIZE="cpu",
        OPTIM="adam", HIDDEN="32", MAX_UPDATE="2", LOG_INTERVAL="1",
        GEN_EXTRA="--max-len-a 1 --max-len-b 3",
    )  # fmt: skip
    ok(proc)
    runs = prepared / "checkpoints" / "multi30k"
    for run in ("rev_gru.Emb+8H.2", "lstm"):
        assert (runs / run / "checkpoint_best.pt").exists()
        for subset in ("valid", "test"):
            generated = (runs / run / f"generate-{subset}.txt").read_text(encoding="utf-8")
            assert sum(line.startswith("H-") for line in generated.splitlines()) == LINES
    rows = table_rows(runs / "results.md")
    assert set(rows) == {"rev_gru.Emb+8H.2", "lstm"}
    rev, lstm = rows["rev_gru.Emb+8H.2"], rows["lstm"]
    assert (rev["epochs"], rev["updates"]) == ("1", "2") and float(rev["savings"]) > 1.0
    assert lstm["savings"] == "-"  # the baseline logs no memory savings
    assert lstm["test BLEU - baseline"] == "0.00" and rev["test BLEU - baseline"] != "-"
    assert lstm["valid ppl / baseline"] == "1.000" and float(rev["valid ppl / baseline"]) > 0
    # fairseq-train's peak RSS, recorded by the recipe, and the baseline's over ours
    assert float(rev["peak RSS MB"]) > 100 and lstm["RSS: baseline / this"] == "1.00"
    assert float(rev["RSS: baseline / this"]) == pytest.approx(
        float(lstm["peak RSS MB"]) / float(rev["peak RSS MB"]), rel=0.01
    )
    for figure in ("multi30k_memory.png", "multi30k_perplexity.png"):
        assert (runs / figure).read_bytes().startswith(b"\x89PNG")
    assert '"attention": "Emb+8H"' in (runs / "rev_gru.Emb+8H.2" / "run.json").read_text()


@pytest.mark.parametrize(
    "env, message",
    [
        ({"TGT": "xx"}, "no language pair en-xx; source and target must be two of en, de, fr, cs"),
        ({"SRC": "de"}, "no language pair de-de"),
        ({"MULTI30K_DIR": "/nonexistent/multi30k"}, "/nonexistent/multi30k is not a directory"),
    ],
)
def test_prepare_refuses_bad_arguments(tmp_path, env, message):
    proc = script("prepare-multi30k.sh", cwd=tmp_path, **env)
    assert proc.returncode != 0 and message in proc.stderr
    assert not (tmp_path / "data-bin").exists()


def test_prepare_names_missing_files(raw_dir, tmp_path):
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "train.en.gz").write_bytes((raw_dir / "train.en.gz").read_bytes())
    proc = script("prepare-multi30k.sh", cwd=tmp_path, MULTI30K_DIR=str(tmp_path / "partial"))
    assert proc.returncode != 0 and "lacks train.de.gz, val.en.gz" in proc.stderr


@pytest.mark.parametrize(
    "env, message",
    [
        ({"MODEL": "transformer"}, "MODEL=transformer is not allowed; choose one of: rev_lstm rev_gru lstm"),
        ({"ATTENTION": "bahdanau"}, "ATTENTION=bahdanau is not allowed"),
        ({"ATTENTION": "EmbH+xH"}, "the slice size must be a number"),
        ({"BITS": "0"}, "BITS=0 is not allowed; choose 1..10, none (no limit) or nf (no forgetting)"),
        ({"HIDDEN": "33"}, "HIDDEN=33 must be a positive even number"),
        ({"OPTIM": "rmsprop"}, "OPTIM=rmsprop is not allowed; choose one of: sgd adam"),
        ({"OPTIM": "adam", "PATIENCE": "none"}, "PATIENCE=none must be -1 (never stop early) or a positive integer"),
        ({"DATA": "/nonexistent"}, "DATA=/nonexistent is not a directory"),
    ],
)
def test_train_refuses_bad_settings_before_training(prepared, tmp_path, env, message):
    proc = script("train-multi30k.sh", cwd=prepared, SAVE_DIR=str(tmp_path / "run"), **env)
    assert proc.returncode != 0 and message in proc.stderr
    assert not (tmp_path / "run" / "train.log").exists()


def test_results_set_the_papers_bleu_beside_paper_sized_runs(tmp_path):
    from fairseq_revrnn.recipes.results import summarise

    record = '| train | {"epoch": 1, "train_num_updates": "10", "train_wps": "100.0", "train_mem_savings": "7.5"}\n'
    for size in ("paper", "cpu"):
        run = tmp_path / size
        run.mkdir()
        (run / "train.log").write_text(f"2026-01-01 00:00:00 | INFO {record}")
        (run / "run.json").write_text(
            f'{{"task": "translation", "model": "rev_lstm", "attention": "Emb+20H", "bits": "3", "size": "{size}"}}'
        )
    paper, cpu = summarise(tmp_path / "paper"), summarise(tmp_path / "cpu")
    assert paper["paper_valid_bleu"] == 37.54 and cpu["paper_valid_bleu"] is None
    assert paper["updates"] == 10 and paper["savings"] == 7.5 and paper["test_bleu"] is None


def test_converged_trains_each_model_once_then_evaluates_and_tabulates(prepared):
    env = dict(SIZE="cpu", HIDDEN="48", MAX_UPDATE="2", LOG_INTERVAL="1", SUBSETS="test")
    env["GEN_EXTRA"] = "--max-len-a 1 --max-len-b 3"
    out = ok(recipe("converged.sh", cwd=prepared, TASK="multi30k", RUNS="conv", **env))
    runs = prepared / "conv"
    names = ("rev_lstm.Emb+20H.3", "lstm", "rev_gru.Emb+20H.3", "rev_lstm.Emb+20H.none")
    for name in names:
        assert f"{name}: training (" in out and (runs / name / "generate-test.txt").exists()
        assert '"optim": "adam"' in (runs / name / "run.json").read_text()
    assert set(table_rows(runs / "results.md")) == set(names)
    assert (runs / "multi30k_perplexity.png").read_bytes().startswith(b"\x89PNG")
    # Run again: every run is done, so nothing trains; evaluation and the table are redone.
    again = ok(recipe("converged.sh", cwd=prepared, TASK="multi30k", RUNS="conv", **env))
    assert "training (" not in again and again.count("trained before (MAX_EPOCH=15 MAX_UPDATE=2)") == 4
    for name in names:
        assert (runs / name / "train.log").read_text().count("done training") == 1
    # A larger cap trains further, from the checkpoint; ONLY leaves the other runs alone and out of the table.
    longer_env = {**env, "MAX_UPDATE": "3", "ONLY": "rev_gru.Emb+20H.3"}
    longer = ok(recipe("converged.sh", cwd=prepared, TASK="multi30k", RUNS="conv", **longer_env))
    assert longer.count("training (") == 1 and "rev_gru.Emb+20H.3: training (" in longer
    for name in names:
        log = (runs / name / "train.log").read_text()
        assert ("Loaded checkpoint" in log and "@ 3 updates" in log) == (name == "rev_gru.Emb+20H.3")
    assert list(table_rows(runs / "results.md")) == ["rev_gru.Emb+20H.3"]


@pytest.mark.parametrize(
    "env, message",
    [
        ({"TASK": "wmt"}, "TASK=wmt is not allowed; choose one of: multi30k ptb"),
        ({"JOBS": "0"}, "JOBS=0 must be"),
        (
            {"TASK": "ptb", "ONLY": "baseline rev-lstm-bits7"},
            "ONLY=rev-lstm-bits7 is not allowed; choose one of: rev-lstm-bits3 baseline rev-lstm-bits2 rev-lstm-bits5 "
            "rev-lstm-bitsnone",
        ),
    ],
)
def test_converged_refuses_bad_settings(tmp_path, env, message):
    proc = recipe("converged.sh", cwd=tmp_path, **env)
    assert proc.returncode == 2 and message in proc.stderr and list(tmp_path.iterdir()) == []
