"""The recipes' results table: distances to the baseline run and the paper's PTB figures."""

import json
import subprocess
import sys

from fairseq_revrnn.recipes import peak_rss, plots
from fairseq_revrnn.recipes.logs import number, records
from fairseq_revrnn.recipes.results import summarise, table


def make_run(root, name, info, valid_ppls, test=None):
    """A run directory as the recipes leave it: train.log (json records), run.json, evaluation output."""
    run = root / name
    run.mkdir()
    lines = []
    for epoch, ppl in enumerate(valid_ppls, 1):
        lines.append(f'| valid | {{"epoch": {epoch}, "valid_ppl": "{ppl}", "valid_num_updates": "{10 * epoch}"}}')
        lines.append(f'| train | {{"epoch": {epoch}, "train_num_updates": "{10 * epoch}", "train_wps": "100"}}')
    (run / "train.log").write_text("\n".join(f"2026-01-01 00:00:00 | INFO {line}" for line in lines) + "\n")
    (run / "run.json").write_text(json.dumps(info))
    if test is not None:
        (run / "eval.log").write_text(f"| Loss (base 2): 6.0, Perplexity: {test}\n")
    return run


def test_language_model_rows_are_compared_with_the_baseline_and_the_paper(tmp_path):
    base = {"task": "language_model", "size": "cpu", "data": "ptb"}
    runs = [
        make_run(tmp_path, "rev3", {**base, "model": "rev", "cell": "lstm", "bits": "3"}, [150.0, 120.0, 121.0], 115),
        make_run(tmp_path, "revdf", {**base, "model": "rev", "cell": "lstm", "bits": "3", "forgetting": "discrete"},
                 [130.0]),
        make_run(tmp_path, "gru", {**base, "model": "rev", "cell": "gru", "bits": "3"}, [140.0]),
        make_run(tmp_path, "lstm", {**base, "model": "baseline", "cell": "lstm"}, [125.0, 100.0], 96),
    ]  # fmt: skip
    rows = [summarise(run) for run in runs]
    text = table(rows)
    rev3, revdf, gru, lstm = rows
    assert rev3["valid_ppl"] == 120.0 and rev3["epochs"] == 3 and rev3["test_ppl"] == 115.0
    assert rev3["ppl_ratio"] == 1.2 and lstm["ppl_ratio"] == 1.0 and revdf["ppl_ratio"] == 1.3
    assert (rev3["paper_valid_ppl"], rev3["paper_savings"]) == (72.8, 10.0)
    assert lstm["paper_valid_ppl"] == 73.0 and lstm["paper_savings"] is None
    assert revdf["paper_valid_ppl"] is None and gru["paper_valid_ppl"] is None  # no paper figure to set beside
    assert "| rev3 | 3 | 30 | 100 | 120.00 | 1.200 | 115.00 |" in text


def test_translation_rows_get_the_bleu_gap_and_ppl_ratio_only_when_a_baseline_is_there(tmp_path):
    info = {"task": "translation", "model": "rev_lstm", "attention": "Emb+20H", "bits": "3", "size": "paper"}
    rev = make_run(tmp_path, "rev", info, [20.0])
    lstm = make_run(tmp_path, "lstm", {"task": "translation", "model": "lstm", "size": "paper"}, [18.0])
    references = ["a man rides a red bike", "two dogs play in the snow"]
    for run, hypotheses in ((rev, references), (lstm, ["a man rides a bike", "two dogs run in the snow"])):
        out = [f"T-{i}\t{ref}\nH-{i}\t-0.1\t{hyp}" for i, (ref, hyp) in enumerate(zip(references, hypotheses))]
        (run / "generate-test.txt").write_text("\n".join(out) + "\n")
    rows = [summarise(rev), summarise(lstm)]
    table(rows)
    assert rows[0]["test_bleu"] > rows[1]["test_bleu"]
    assert rows[0]["bleu_gap"] == rows[0]["test_bleu"] - rows[1]["test_bleu"] and rows[1]["bleu_gap"] == 0
    assert rows[0]["ppl_ratio"] == 20.0 / 18.0 and rows[1]["ppl_ratio"] == 1.0
    alone = [summarise(rev)]
    table(alone)
    assert alone[0]["bleu_gap"] is None and alone[0]["ppl_ratio"] is None


def peak_of(*code: str) -> tuple[float, int]:
    """Run ``python -c CODE`` through peak_rss.py by path, as the recipes do: the reported MB and exit code."""
    proc = subprocess.run(
        [sys.executable, peak_rss.__file__, sys.executable, "-c", *code], capture_output=True, text=True
    )
    (record,) = records(proc.stdout, peak_rss.TAG)
    assert record["command"].startswith("python")
    return number(record, "peak_rss_mb"), proc.returncode


def test_peak_rss_is_the_childs_own_in_mb_and_keeps_its_exit_code():
    big, code = peak_of("data = b'x' * (300 << 20); raise SystemExit(3)")
    small, ok = peak_of("pass")
    assert code == 3 and ok == 0
    assert 300 <= big < 400  # 300 MB written: MB, not KB or bytes
    assert small < 100  # the wrapper's parent is small: its RSS does not hide the child's


def test_peak_rss_column_takes_the_largest_process_and_the_baseline_ratio(tmp_path):
    base = {"task": "language_model", "size": "cpu", "data": "ptb"}
    rev = make_run(tmp_path, "rev", {**base, "model": "rev", "cell": "lstm", "bits": "3"}, [120.0])
    lstm = make_run(tmp_path, "lstm", {**base, "model": "baseline", "cell": "lstm"}, [100.0])
    for run, peaks in ((rev, (700, 800)), (lstm, (1200,))):  # the rev run was resumed once: two processes
        with (run / "train.log").open("a") as log:
            for mb in peaks:
                log.write(f'| {peak_rss.TAG} | {{"peak_rss_mb": "{mb}", "command": "fairseq-train"}}\n')
    rows = [summarise(rev), summarise(lstm)]
    table(rows)
    assert (rows[0]["peak_rss"], rows[1]["peak_rss"]) == (800.0, 1200.0)
    assert rows[0]["rss_ratio"] == 1.5 and rows[1]["rss_ratio"] == 1.0


def test_a_resumed_runs_redone_updates_count_once(tmp_path):
    """A process stopped mid-epoch logged updates 150 and 200 after its checkpoint at 100; the resumed
    process trains them again. Its records replace the stopped one's in the words/s median and the curves."""
    inner = [(50, 10.0), (100, 10.0), (150, 1.0), (200, 1.0), (150, 30.0), (200, 30.0), (250, 30.0)]
    lines = [f'| train_inner | {{"num_updates": "{n}", "wps": "{w}", "ppl": "{w}"}}' for n, w in inner]
    run = make_run(tmp_path, "rev", {"task": "language_model", "model": "rev"}, [100.0])
    (run / "train.log").write_text((run / "train.log").read_text() + "\n".join(lines) + "\n")
    assert summarise(run)["wps"] == 30.0  # median of 10, 10, 30, 30, 30; with the redone ones it would be 10
    xs, ys = plots.load_run(run / "train.log", "rev").train_series("ppl")
    assert xs == [50, 100, 150, 200, 250] and ys == [10.0, 10.0, 30.0, 30.0, 30.0]
