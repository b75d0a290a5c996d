#!/usr/bin/env python
"""rev_lstm_multi30k against fairseq's own lstm of matching size on Multi30K.

Both models train for the same number of updates with the same optimiser and
batches, through the real fairseq CLIs; then the script reports, side by side:
words per second (and the ratio), validation perplexity, test BLEU
(test_2016_flickr, beam 5, sacrebleu on the tokenised lowercased text), the
memory savings our criterion logged, and the bytes autograd saves for backward
in one training step of each model on the same batch.

    .venv/bin/python scripts/compare_multi30k.py --data-dir ../shared/data/multi30k --updates 300

The data are prepared by the Multi30K recipe (examples/translation): raw
captions, lowercased and Moses-tokenised.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from fairseq_revrnn.recipes.generate_output import bleu
from fairseq_revrnn.recipes.logs import records
from fairseq_revrnn.recipes.multi30k import prepare

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "fairseq_revrnn"
BIN = Path(sys.executable).parent

SHARED = [
    "--optimizer", "adam", "--lr", "0.001", "--clip-norm", "5", "--batch-size", "64", "--max-tokens", "4000",
    "--num-workers", "0", "--log-format", "json", "--log-interval", "25", "--seed", "1",
    "--no-epoch-checkpoints", "--label-smoothing", "0.1",
]  # fmt: skip
MODELS = {
    "rev_lstm_multi30k": [
        "--user-dir", PLUGIN, "--arch", "rev_lstm_multi30k", "--criterion", "rev_label_smoothed_cross_entropy",
    ],
    "lstm": [
        "--arch", "lstm", "--criterion", "label_smoothed_cross_entropy",
        "--encoder-embed-dim", "300", "--encoder-hidden-size", "300", "--encoder-layers", "1",
        "--decoder-embed-dim", "300", "--decoder-hidden-size", "300", "--decoder-layers", "1",
        "--decoder-out-embed-dim", "300", "--encoder-dropout-in", "0.4", "--encoder-dropout-out", "0.4",
        "--decoder-dropout-in", "0.4", "--decoder-dropout-out", "0.4",
    ],
}  # fmt: skip


def run(name: str, *args, log: Path) -> str:
    """Run a fairseq CLI, streaming its output (progress included) into ``log``."""
    start = log.stat().st_size if log.exists() else 0
    with open(log, "a", encoding="utf-8") as out:
        code = subprocess.run([str(BIN / name), *map(str, args)], stdout=out, stderr=subprocess.STDOUT).returncode
    with open(log, encoding="utf-8") as f:
        f.seek(start)
        output = f.read()
    if code != 0:
        raise SystemExit(f"{name} failed; see {log}")
    return output


def last_json(output: str, tag: str) -> dict:
    found = records(output, tag)
    return found[-1] if found else {}


def saved_bytes(checkpoint: Path, data: Path) -> tuple[int, int]:
    """Bytes autograd keeps for one training step on the first training batch:
    everything, and everything but the vocabulary-sized tensors the loss needs
    (logits / log-probabilities)."""
    from fairseq import checkpoint_utils

    import fairseq_revrnn  # noqa: F401  (registers the models and the checkpoint allow-list)
    from fairseq_revrnn.core import SavedTensorMeter

    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(checkpoint)], arg_overrides={"data": str(data)}
    )
    model = models[0].train()
    criterion = task.build_criterion(cfg.criterion)
    task.load_dataset("train")
    batches = task.get_batch_iterator(task.dataset("train"), max_tokens=4000, max_sentences=64, seed=1)
    batch = next(iter(batches.next_epoch_itr(shuffle=False)))
    vocab = len(task.target_dictionary)
    with SavedTensorMeter(exclude=list(model.parameters())) as meter:
        loss = criterion(model, batch)[0]
    loss.backward()
    return meter.bytes, meter.bytes_without(lambda shape: shape[-1:] == (vocab,))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("MULTI30K_DIR"),
        help="raw Multi30K task-1 files (default: $MULTI30K_DIR; without either they are downloaded)",
    )
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--workdir", default="runs/compare_multi30k")
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    data = work / "data-bin"
    stages = tqdm(total=1 + 4 * len(MODELS), desc="compare_multi30k")
    print(f"fairseq's own progress and logs: tail -f {log}", file=sys.stderr)
    if not (data / "dict.de.txt").exists():
        raw = prepare(work / "tok", data_dir=Path(args.data_dir) if args.data_dir else None)
        run(
            "fairseq-preprocess", "--source-lang", "en", "--target-lang", "de", "--trainpref", raw / "train",
            "--validpref", raw / "valid", "--testpref", raw / "test", "--destdir", data,
            "--thresholdsrc", "2", "--thresholdtgt", "2", "--workers", "2", log=log,
        )  # fmt: skip
    stages.update()
    results = {}
    for name, model_args in MODELS.items():
        save = work / name
        out = run(
            "fairseq-train", data, *model_args, *SHARED, "--max-update", args.updates, "--save-dir", save,
            "--restore-file", "/nonexistent", log=log,
        )  # fmt: skip
        stages.update()
        train, valid = last_json(out, "train"), last_json(out, "valid")
        gen = run(
            "fairseq-generate", data, "--user-dir", PLUGIN, "--path", save / "checkpoint_last.pt",
            "--gen-subset", "test", "--beam", "5", "--batch-size", "64", "--required-batch-size-multiple", "1",
            log=log,
        )  # fmt: skip
        stages.update()
        results[name] = {
            "wps": float(train["train_wps"]),
            "valid_ppl": float(valid["valid_ppl"]),
            "test_bleu": bleu(gen),
            "mem_savings": train.get("train_mem_savings"),
            "mem_savings_ideal": train.get("train_mem_savings_ideal"),
            "enc_mem_savings": train.get("train_enc_mem_savings"),
            "dec_mem_savings": train.get("train_dec_mem_savings"),
        }
        stages.update()
        results[name]["saved_bytes"], results[name]["saved_bytes_model"] = saved_bytes(
            save / "checkpoint_last.pt", data
        )
        stages.update()
    stages.close()
    (work / "results.json").write_text(json.dumps(results, indent=2))
    ours, theirs = results["rev_lstm_multi30k"], results["lstm"]
    print(f"Multi30K en-de, {args.updates} updates each, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        "| model | words/s | valid ppl | test BLEU | mem savings (enc / dec / all) | ideal "
        "| saved MB per step | without the loss's V-sized tensors |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        mem = (
            "-" if r["mem_savings"] is None else f"{r['enc_mem_savings']} / {r['dec_mem_savings']} / {r['mem_savings']}"
        )
        ideal = r["mem_savings_ideal"] or "-"
        print(
            f"| {name} | {r['wps']:.0f} | {r['valid_ppl']:.2f} | {r['test_bleu']:.2f} | {mem} | {ideal} "
            f"| {r['saved_bytes'] / 2**20:.1f} | {r['saved_bytes_model'] / 2**20:.2f} |"
        )
    print(
        f"words/s ratio (rev/lstm): {ours['wps'] / theirs['wps']:.2f}x, "
        f"saved-bytes reduction: {theirs['saved_bytes'] / ours['saved_bytes']:.1f}x "
        f"(without the loss's V-sized tensors: {theirs['saved_bytes_model'] / ours['saved_bytes_model']:.1f}x)"
    )


if __name__ == "__main__":
    main()
