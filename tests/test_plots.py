"""The plotting command on the logs of real short fairseq-train runs."""

import subprocess
import sys

import pytest
from PIL import Image

from fairseq_revrnn.recipes import plots

from .data import PLUGIN, REPO, cli
from .fairseq_helpers import TINY_NMT
from .test_cli import COMMON

pytestmark = pytest.mark.cli

SCHEDULE = ["--max-update", "6", "--validate-interval-updates", "3", "--no-save"]  # 5 updates per epoch
TAB10_BLUE, TAB10_ORANGE = (31, 119, 180), (255, 127, 14)  # the first and second run's colours


@pytest.fixture(scope="module")
def logs(multi30k_bin, tmp_path_factory):
    """Captured output of a rev_lstm run and a fairseq `lstm` baseline, each in a directory named after it."""
    root = tmp_path_factory.mktemp("plots")
    runs = {
        "rev_lstm": [
            "--user-dir", PLUGIN, "--arch", "rev_lstm", *TINY_NMT, "--attention-slice-dim", "6",
            "--criterion", "rev_label_smoothed_cross_entropy", "--label-smoothing", "0.1",
        ],
        "lstm": [
            "--arch", "lstm", "--encoder-embed-dim", "16", "--decoder-embed-dim", "16", "--encoder-hidden-size", "16",
            "--decoder-hidden-size", "16", "--decoder-out-embed-dim", "16", "--criterion", "cross_entropy",
        ],
    }  # fmt: skip
    paths = {}
    for name, args in runs.items():
        (root / name).mkdir()
        proc = cli("fairseq-train", multi30k_bin, *args, *COMMON, *SCHEDULE, cwd=root / name)
        paths[name] = root / name / "train.log"
        paths[name].write_text(proc.stdout + proc.stderr, encoding="utf-8")
    return paths


def near(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    """Pixels within ``tolerance`` of ``colour`` on every channel."""
    return sum(
        count for count, pixel in image.getcolors(image.width * image.height)
        if all(abs(a - b) <= tolerance for a, b in zip(pixel, colour))
    )  # fmt: skip


def test_cli_writes_pngs_of_the_requested_size(logs, tmp_path):
    out = tmp_path / "figures"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "plot_logs.py"), str(logs["rev_lstm"]), str(logs["lstm"]),
         "--out-dir", str(out), "--prefix", "multi30k", "--width", "6", "--height", "3.5", "--dpi", "100"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = [out / "multi30k_memory.png", out / "multi30k_perplexity.png"]
    assert proc.stdout.split() == [str(path) for path in written]
    images = {}
    for path in written:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (600, 350)
            images[path.stem] = image.convert("RGB")
            assert len(images[path.stem].getcolors(600 * 350)) > 100  # lines, text, antialiasing: not blank
    # Runs are labelled by their directory; the baseline (second colour) has no memory fields.
    assert near(images["multi30k_memory"], TAB10_BLUE) > 200
    assert near(images["multi30k_memory"], TAB10_ORANGE) == 0
    assert near(images["multi30k_perplexity"], TAB10_BLUE) > 200
    assert near(images["multi30k_perplexity"], TAB10_ORANGE) > 200


def test_figures_hold_the_logged_values(logs):
    runs = [plots.load_run(logs[name], name) for name in ("rev_lstm", "lstm")]
    inner = [{k: float(v) for k, v in rec.items()} for rec in runs[0].train_inner]
    memory = plots.memory_figure(runs, 6, 3.5, 100)
    assert [t.get_text() for t in memory.legends[0].get_texts()] == ["rev_lstm", "rev_lstm encoder", "rev_lstm decoder"]
    actual, ideal = memory.axes
    for axes, suffix in ((actual, ""), (ideal, "_ideal")):
        assert [line.get_label() for line in axes.lines] == ["rev_lstm", "rev_lstm encoder", "rev_lstm decoder"]
        for line, key in zip(axes.lines, ("mem_savings", "enc_mem_savings", "dec_mem_savings")):
            assert list(line.get_xdata()) == [1, 2, 3, 4, 5, 6]
            assert list(line.get_ydata()) == [rec[key + suffix] for rec in inner]

    perplexity = plots.perplexity_figure(runs, 6, 3.5, 100)
    train, valid = perplexity.axes
    assert train.get_yscale() == valid.get_yscale() == "log"
    assert [t.get_text() for t in perplexity.legends[0].get_texts()] == ["rev_lstm", "lstm"]
    assert list(train.lines[0].get_ydata()) == [rec["ppl"] for rec in inner]
    for line in valid.lines:  # validation after update 3, at the end of epoch 1 (update 5) and at the last update
        assert list(line.get_xdata()) == [3, 5, 6]


def test_train_perplexity_falls_back_to_epoch_records(logs):
    """With --log-interval longer than an epoch, fairseq writes only the per-epoch `train` records."""
    run = plots.load_run(logs["rev_lstm"], "rev_lstm")
    run.train_inner = []
    updates, ppl = run.train_series("ppl")
    assert updates == [5, 6] and ppl == [float(rec["train_ppl"]) for rec in run.train]
    assert run.has_memory


def test_no_memory_figure_without_memory_fields(logs, tmp_path, capsys):
    plots.main([f"baseline={logs['lstm']}", "--out-dir", str(tmp_path / "cli")])
    out, err = capsys.readouterr()
    assert out.split() == [str(tmp_path / "cli" / "perplexity.png")]
    assert "no memory figure" in err
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == ["perplexity.png"]

    written = plots.plot_runs({"baseline": logs["lstm"]}, tmp_path / "api", "lstm", width=4, height=2.5, dpi=40)
    assert written == [tmp_path / "api" / "lstm_perplexity.png"]
    with Image.open(written[0]) as image:
        assert image.size == (160, 100)
    with pytest.raises(ValueError, match="must be positive"):
        plots.plot_runs({"baseline": logs["lstm"]}, tmp_path / "api", dpi=0)


def test_logs_without_json_records_or_missing_are_refused(multi30k_bin, tmp_path, capsys):
    plain = multi30k_bin / "preprocess.log"  # a real fairseq log, in its plain format
    for path, message in ((plain, "no fairseq json records"), (tmp_path / "absent.log", "no such log file")):
        with pytest.raises(SystemExit) as exit_info:
            plots.main([str(path), "--out-dir", str(tmp_path / "out")])
        assert exit_info.value.code != 0
        assert str(path) in str(exit_info.value.code) and message in str(exit_info.value.code)
    assert not (tmp_path / "out").exists()


def test_labels(tmp_path, capsys):
    log = tmp_path / "run_a" / "train.log"
    assert plots.parse_run(str(log)) == ("run_a", log)
    assert plots.parse_run(f"paper={log}") == ("paper", log)
    with pytest.raises(SystemExit):
        plots.main([str(log), f"run_a={log}", "--out-dir", str(tmp_path)])
    assert "share a label" in capsys.readouterr().err
