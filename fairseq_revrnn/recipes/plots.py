"""Figures from fairseq's json training logs, like the paper's appendix H:
memory savings (actual and ideal; encoder and decoder for translation) and
train/valid perplexity over updates, saved as PNG.

    python -m fairseq_revrnn.recipes.plots LOG [LABEL=LOG ...] --out-dir DIR [--prefix NAME]

A LOG is the captured output (stdout and stderr) of ``fairseq-train ...
--log-format json``. Its label is the log's directory name unless given as
``LABEL=LOG``. Runs without memory fields (fairseq's own criterions) appear
in the perplexity figure only. A figure is width*dpi x height*dpi pixels
(rounded down), whatever its contents.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path

# Importing this package imports fairseq, one of whose modules sets the root logger to DEBUG:
# keep matplotlib's import-time font search (hundreds of lines) out of every command's output.
if logging.getLogger("matplotlib").level == logging.NOTSET:
    logging.getLogger("matplotlib").setLevel(logging.WARNING)

from matplotlib import colormaps  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .logs import number, records, without_redone  # noqa: E402

# (title, y label, (json key, line name) per line); an empty name is the run's combined value.
MEMORY_PANELS = (
    (
        "Actual memory savings",
        "naive bits / bits stored",
        (("mem_savings", ""), ("enc_mem_savings", "encoder"), ("dec_mem_savings", "decoder")),
    ),
    (
        "Ideal memory savings",
        "naive bits / bits forgotten",
        (("mem_savings_ideal", ""), ("enc_mem_savings_ideal", "encoder"), ("dec_mem_savings_ideal", "decoder")),
    ),
)
PART_STYLES = {"": "-", "encoder": "--", "decoder": ":"}
TAGS = ("train_inner", "train", "valid")


class LogError(ValueError):
    """A log that cannot be plotted: missing, without json records, or with a broken one."""


@dataclass
class Run:
    """One training run: its label and json records by tag."""

    label: str
    train_inner: list[dict]
    train: list[dict]
    valid: list[dict]

    def train_series(self, key: str) -> tuple[list[float], list[float]]:
        """``key`` over updates from the per-interval records, or from the per-epoch
        ones (``train_`` keys) when ``--log-interval`` exceeded every epoch."""
        inner = _series(self.train_inner, "num_updates", key)
        return inner if inner[0] else _series(self.train, "train_num_updates", f"train_{key}")

    def valid_series(self, key: str) -> tuple[list[float], list[float]]:
        """``valid_<key>`` over updates: fairseq prefixes every validation field with the subset."""
        return _series(self.valid, "valid_num_updates", f"valid_{key}")

    @property
    def has_memory(self) -> bool:
        """Whether the run logs memory savings: fairseq's own criterions (baselines) do not."""
        return bool(self.train_series("mem_savings")[0])


def _series(recs: list[dict], x_key: str, y_key: str) -> tuple[list[float], list[float]]:
    """Finite (x, y) pairs of the records that have both keys."""
    xs, ys = [], []
    for rec in without_redone(recs, x_key):
        x, y = number(rec, x_key), number(rec, y_key)
        if x is not None and y is not None and math.isfinite(x) and math.isfinite(y):
            xs.append(x)
            ys.append(y)
    return xs, ys


def load_run(path: Path, label: str) -> Run:
    """Read a log's records; a missing file, one without json records or with a broken one
    is a ``LogError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise LogError(f"{path}: no such log file")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        run = Run(label, *(records(text, tag) for tag in TAGS))
    except json.JSONDecodeError as e:
        raise LogError(f"{path}: a json record does not parse ({e})") from None
    if not (run.train_inner or run.train or run.valid):
        raise LogError(f"{path}: no fairseq json records ({', '.join(TAGS)}); was it trained with --log-format json?")
    return run


def default_label(path: Path) -> str:
    """The log's directory name: one directory per run is the usual layout."""
    path = Path(path)
    return path.resolve().parent.name or path.stem


def parse_run(spec: str) -> tuple[str, Path]:
    """``LABEL=PATH`` or ``PATH`` (labelled by its directory)."""
    label, sep, path = spec.partition("=")
    if sep and label and path and not Path(spec).exists():
        return label, Path(path)
    return default_label(Path(spec)), Path(spec)


def _plot(ax: Axes, xs: list[float], ys: list[float], **kwargs) -> None:
    # A marker keeps single points (one validation, one logged interval) visible.
    ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, markersize=3, **kwargs)


def _finish(fig: Figure, title: str) -> Figure:
    fig.suptitle(title)
    for ax in fig.axes:
        ax.set_xlabel("updates")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, which="major", alpha=0.3)
    handles: dict[str, object] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    ncol = min(len(handles), 4)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=ncol, fontsize="small")
    return fig


def memory_figure(runs: list[Run], width: float, height: float, dpi: float) -> Figure | None:
    """Actual and ideal savings over updates per run, or None when no run logs memory fields."""
    if not any(run.has_memory for run in runs):
        return None
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    colours = colormaps["tab10"]
    for ax, (title, ylabel, lines) in zip(fig.subplots(1, len(MEMORY_PANELS)), MEMORY_PANELS):
        for i, run in enumerate(runs):  # colours by position among all runs: as in the perplexity figure
            for key, part in lines:
                xs, ys = run.train_series(key)
                if xs:
                    name = f"{run.label} {part}" if part else run.label
                    _plot(ax, xs, ys, color=colours(i % colours.N), linestyle=PART_STYLES[part], label=name)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
    return _finish(fig, "Memory savings during training")


def perplexity_figure(runs: list[Run], width: float, height: float, dpi: float) -> Figure:
    """Train and validation perplexity over updates, log scale, every run."""
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    train_ax, valid_ax = fig.subplots(1, 2)
    colours = colormaps["tab10"]
    for i, run in enumerate(runs):
        _plot(train_ax, *run.train_series("ppl"), color=colours(i % colours.N), label=run.label)
        _plot(valid_ax, *run.valid_series("ppl"), color=colours(i % colours.N), label=run.label)
    for ax, title in ((train_ax, "Training perplexity"), (valid_ax, "Validation perplexity")):
        ax.set_title(title)
        ax.set_ylabel("perplexity")
        ax.set_yscale("log")
    return _finish(fig, "Perplexity")


def write_figures(
    runs: list[Run], out_dir: Path, prefix: str = "", width: float = 10.0, height: float = 4.5, dpi: float = 100.0
) -> list[Path]:
    """Save ``[PREFIX_]memory.png`` (when a run has memory fields) and ``[PREFIX_]perplexity.png``."""
    if min(width, height, dpi) <= 0:
        raise ValueError(f"width, height and dpi must be positive; got {width}, {height}, {dpi}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {
        "memory": memory_figure(runs, width, height, dpi),
        "perplexity": perplexity_figure(runs, width, height, dpi),
    }
    written = []
    for name, fig in figures.items():
        if fig is not None:
            path = out_dir / (f"{prefix}_{name}.png" if prefix else f"{name}.png")
            fig.savefig(path, dpi=dpi, format="png")
            written.append(path)
    return written


def plot_runs(
    runs: dict[str, Path], out_dir: Path, prefix: str = "", width: float = 10.0, height: float = 4.5, dpi: float = 100.0
) -> list[Path]:
    """Read each labelled log and write the figures; returns the PNG paths."""
    return write_figures([load_run(path, label) for label, path in runs.items()], out_dir, prefix, width, height, dpi)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", nargs="+", metavar="[LABEL=]LOG", help="fairseq-train output with --log-format json")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--prefix", default="", help="file names PREFIX_memory.png, PREFIX_perplexity.png")
    parser.add_argument("--width", type=float, default=10.0, help="inches (default 10)")
    parser.add_argument("--height", type=float, default=4.5, help="inches (default 4.5)")
    parser.add_argument("--dpi", type=float, default=100.0, help="pixels per inch (default 100)")
    args = parser.parse_args(argv)
    if min(args.width, args.height, args.dpi) <= 0:
        parser.error("--width, --height and --dpi must be positive")
    specs = [parse_run(spec) for spec in args.logs]
    labels = [label for label, _ in specs]
    if len(set(labels)) < len(labels):
        parser.error(f"two logs share a label ({', '.join(labels)}); name them with LABEL=LOG")
    try:
        runs = [load_run(path, label) for label, path in specs]
    except LogError as e:
        raise SystemExit(f"error: {e}") from None
    if not any(run.has_memory for run in runs):
        print("no run logs memory savings (mem_savings): no memory figure written", file=sys.stderr)
    for path in write_figures(runs, args.out_dir, args.prefix, args.width, args.height, args.dpi):
        print(path)


if __name__ == "__main__":
    main()
