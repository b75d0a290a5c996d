"""A results table from recipe runs: what each run's logs say, beside the paper.

Words per second are the median over the log intervals (``train_inner``):
fairseq's per-epoch figure also counts the time of validations run inside
the epoch (``--validate-interval-updates``), which would penalise the model
that validates more slowly.

A run directory holds ``train.log`` (``fairseq-train --log-format json``),
``run.json`` (what the recipe trained) and, after evaluation,
``generate-{valid,test}.txt`` (translation) or ``eval.log`` (language model).
The run whose ``run.json`` names fairseq's own model (``lstm``, ``lstm_lm``
as ``baseline``) is the reference of the comparison columns: test BLEU minus
its BLEU (translation), validation perplexity over its perplexity, and its
peak RSS over the run's. Peak RSS is fairseq-train's largest resident set
over the run's processes (a resumed run has several), from the
``| peak_rss |`` records that ``recipes/peak_rss.py`` writes. PTB runs of an
LSTM-type model also show the paper's paper-sized figure for the same bit
limit (its table 2), beside ours at whatever size we trained.

    python -m fairseq_revrnn.recipes.results checkpoints/multi30k/* --out results.md
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

from . import paper, peak_rss
from .generate_output import bleu
from .logs import number, records, without_redone

PERPLEXITY = re.compile(r"Perplexity: ([0-9.]+|inf|nan)")
BASELINES = ("lstm", "baseline")  # run.json's model for fairseq's own lstm (translation) and lstm_lm


def summarise(run: Path) -> dict:
    """One run's numbers; missing ones are None."""
    log = run / "train.log"
    if not log.exists():
        raise SystemExit(f"{run} has no train.log (is it a run directory of a recipe?)")
    info = json.loads((run / "run.json").read_text()) if (run / "run.json").exists() else {}
    text = log.read_text(encoding="utf-8", errors="replace")
    epochs = records(text, "train")
    inner = without_redone(records(text, "train_inner"), "num_updates")
    inner = sorted(v for v in (number(r, "wps") for r in inner) if v is not None)
    valid = [number(r, "valid_ppl") for r in records(text, "valid")]
    last = epochs[-1] if epochs else {}
    row = {
        "run": run.name,
        "task": info.get("task", "translation" if (run / "generate-test.txt").exists() else "language_model"),
        "baseline": info.get("model") in BASELINES,
        "epochs": int(number(last, "epoch")) if last else None,
        "updates": number(last, "train_num_updates"),
        "wps": inner[len(inner) // 2] if inner else number(last, "train_wps"),
        "valid_ppl": min((v for v in valid if v is not None), default=None),
        "savings": number(last, "train_mem_savings"),
        "ideal": number(last, "train_mem_savings_ideal"),
        "enc_savings": number(last, "train_enc_mem_savings"),
        "dec_savings": number(last, "train_dec_mem_savings"),
        "peak_rss": max((number(r, "peak_rss_mb") for r in records(text, peak_rss.TAG)), default=None),
    }
    for subset in ("valid", "test"):
        out = run / f"generate-{subset}.txt"
        row[f"{subset}_bleu"] = bleu(out.read_text(encoding="utf-8")) if out.exists() else None
    found = PERPLEXITY.findall((run / "eval.log").read_text(encoding="utf-8")) if (run / "eval.log").exists() else []
    row["test_ppl"] = float(found[-1]) if found else None
    row["paper_valid_bleu"] = (
        paper.multi30k_valid_bleu(info.get("model", ""), info.get("attention", ""), info.get("bits", ""))
        if info.get("size") == "paper"
        else None
    )
    ptb = paper.ptb_valid_ppl(info.get("model", ""), info.get("cell", ""), info.get("bits", ""))
    comparable = info.get("data") == "ptb" and info.get("forgetting", "fractional") == "fractional"
    row["paper_valid_ppl"], row["paper_savings"] = ptb if ptb and comparable else (None, None)
    return row


def compare_to_baseline(rows: list[dict]) -> None:
    """Set each row's distance to its task's baseline run (fairseq's own model), if one is among ``rows``:
    valid perplexity over the baseline's, its peak RSS over ours, and for translation test BLEU minus the baseline's."""
    for key, column in (("test_bleu", "bleu_gap"), ("valid_ppl", "ppl_ratio"), ("peak_rss", "rss_ratio")):
        for r in rows:
            reference = next((b[key] for b in rows if b["task"] == r["task"] and b["baseline"]), None)
            value = r[key]
            if value is None or reference is None:
                r[column] = None
            elif column == "bleu_gap":
                r[column] = value - reference
            else:
                r[column] = value / reference if column == "ppl_ratio" else reference / value


def fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


COLUMNS = {
    "translation": [
        ("run", "run", 0), ("epochs", "epochs", 0), ("updates", "updates", 0), ("words/s", "wps", 0),
        ("valid ppl", "valid_ppl", 2), ("valid ppl / baseline", "ppl_ratio", 3), ("valid BLEU", "valid_bleu", 2),
        ("paper valid BLEU", "paper_valid_bleu", 2),
        ("test BLEU", "test_bleu", 2), ("test BLEU - baseline", "bleu_gap", 2), ("savings enc", "enc_savings", 2),
        ("savings dec", "dec_savings", 2), ("savings", "savings", 2), ("ideal", "ideal", 2),
        ("peak RSS MB", "peak_rss", 0), ("RSS: baseline / this", "rss_ratio", 2),
    ],
    "language_model": [
        ("run", "run", 0), ("epochs", "epochs", 0), ("updates", "updates", 0), ("words/s", "wps", 0),
        ("valid ppl", "valid_ppl", 2), ("valid ppl / baseline", "ppl_ratio", 3), ("test ppl", "test_ppl", 2),
        ("savings", "savings", 2), ("ideal", "ideal", 2), ("peak RSS MB", "peak_rss", 0),
        ("RSS: baseline / this", "rss_ratio", 2), ("paper valid ppl (1150/650)", "paper_valid_ppl", 1),
        ("paper savings", "paper_savings", 1),
    ],
}  # fmt: skip


def table(rows: list[dict]) -> str:
    """Markdown tables, one per task, in the order of ``rows``."""
    compare_to_baseline(rows)
    parts = []
    for task, columns in COLUMNS.items():
        chosen = [r for r in rows if r["task"] == task]
        if not chosen:
            continue
        lines = ["| " + " | ".join(title for title, _, _ in columns) + " |", "|" + "---|" * len(columns)]
        for r in chosen:
            lines.append("| " + " | ".join(fmt(r[key], digits) for _, key, digits in columns) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (SAVE_DIR of the recipes)")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    text = table([summarise(run) for run in args.runs if run.is_dir()])
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
