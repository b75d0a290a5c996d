"""``fairseq-train --task rnn_synthetic`` end to end, and the results script's quick mode."""

import math
import subprocess
import sys

import pytest

from fairseq_revrnn.recipes.logs import read_records

from .data import PLUGIN, REPO, cli
from .test_cli import json_logs

pytestmark = pytest.mark.cli

REV = ["--arch", "rev_lstm_lm", "--dropout-in", "0", "--dropout-out", "0", "--dropout-hidden", "0",
       "--dropout-embed", "0", "--criterion", "rev_cross_entropy"]  # fmt: skip
LSTM = ["--arch", "lstm_lm", "--decoder-out-embed-dim", "16", "--dropout", "0", "--criterion", "cross_entropy"]


@pytest.mark.parametrize("model", [REV, LSTM], ids=["rev_lstm_lm", "lstm_lm"])
def test_variable_copy_trains_and_validation_logs_accuracy(tmp_path, model):
    """The results script's quick run (below) trains the other four problems, with both pairs of
    model and criterion too; this one it does not run."""
    proc = cli(
        "fairseq-train", "--user-dir", PLUGIN, "--task", "rnn_synthetic", "--synthetic-task", "variable_copy",
        "--seq-len", "5", "--lag", "12", "--train-size", "48", "--valid-size", "16", *model, "--decoder-layers", "1",
        "--decoder-embed-dim", "16", "--decoder-hidden-size", "16", "--optimizer", "adam", "--lr", "0.01",
        "--batch-size", "16", "--required-batch-size-multiple", "1", "--max-update", "3", "--log-format", "json",
        "--log-interval", "1", "--no-save", "--num-workers", "0", "--seed", "1", cwd=tmp_path,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert len(json_logs(out, "train_inner")) == 3
    (valid,) = json_logs(out, "valid")
    assert math.isfinite(float(valid["valid_loss"]))
    for key in ("valid_accuracy", "valid_recall_accuracy"):
        assert 0 <= float(valid[key]) <= 100
    assert 0 < float(valid["valid_baseline"]) < 3  # log2(8) bits at the recall positions, 0 elsewhere
    if model is REV:
        assert float(valid["valid_mem_savings"]) > 1


def test_results_script_quick_mode_writes_its_tables_and_plots(tmp_path):
    work = tmp_path / "work"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "synthetic_results.py"), "--quick", "--work-dir", str(work)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "| 8 | 20 | " in out and "| 7.9 | " in out  # our row beside the paper's numbers
    for task in ("copy", "denoise"):
        for model in ("NRU (nru_lm)", "LSTM (lstm_lm)", "RevLSTM (rev_lstm_lm)"):
            assert f"| {task} | {model} | " in out
    assert "20,000,000,000" in out  # the paper's budget, stated beside ours
    assert "fairseq-train runs" in proc.stderr  # the progress bar
    assert (work / "summary.md").read_text() in out + "\n"
    for name in ("synthetic_table1", "synthetic_copy", "synthetic_denoise"):
        assert (work / "plots" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    runs = {"-".join(log.stem.split("-")[:2]): log for log in work.glob("*.log")}
    assert sorted(runs) == ["copy-lstm_lm", "copy-nru_lm", "copy-rev_lstm_lm", "denoise-lstm_lm", "denoise-nru_lm",
                            "denoise-rev_lstm_lm", "remember-lstm", "repeat-nf_revgru"]  # fmt: skip
    for name, log in runs.items():  # every problem but variable_copy, with both criterions: valid logs accuracy
        criterion = "rev_cross_entropy" if "rev" in name else "cross_entropy"
        assert f"--synthetic-task {name.split('-')[0]} " in log.read_text()
        assert f"--criterion {criterion} " in log.read_text()
        valid = read_records(log, "valid")
        assert valid and all(0 <= float(record["valid_accuracy"]) <= 100 for record in valid), log
