"""Memory of a whole fairseq training step: the reversible models against fairseq's own.

For translation (Multi30K en-de, ~10k-word vocabularies, batches of real
sentences) and language modelling (PTB, blocks of T tokens), one training step
of each model -- model, criterion and backward, built as fairseq-train builds
them -- is measured from the allocator (``StepMemory``): the bytes alive
between forward and backward, and the peak of the step. Parameters and their
gradients are allocated before, so the numbers are the step's activations and
temporaries. Models, all in one run, of the same sizes:

- ``rev``: the reversible model with the plugin's criterion (fused loss)
- ``rev --no-fused-loss``: the same, with fairseq's loss over logits
- ``rev --no-reversible``: the same cells in ordinary autograd mode
- ``lstm`` / ``lstm_lm``: fairseq's own models

Ratios are against fairseq's model. Then the peak RSS of ``fairseq-train``
(3 updates) at batch 512 minus batch 8, rev against lstm; and fairseq-train's
words/s at batch 64, fused loss against ``--no-fused-loss``.

    .venv/bin/python scripts/bench_memory.py --work /tmp/bench-memory
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fairseq_revrnn.recipes import peak_rss  # noqa: E402
from fairseq_revrnn.recipes.logs import number, records  # noqa: E402
from fairseq_revrnn.recipes.steps import PLUGIN, build, training_step  # noqa: E402

BIN = Path(sys.executable).parent
SHARED_MULTI30K = REPO.parent / "shared" / "data" / "multi30k"
MB = 2**20


def mt_models(size: int) -> dict[str, list[str]]:
    rev = ["--arch", "rev_lstm", "--encoder-embed-dim", str(size), "--encoder-hidden-size", str(size),
           "--criterion", "rev_label_smoothed_cross_entropy", "--label-smoothing", "0.1"]  # fmt: skip
    lstm = ["--arch", "lstm", "--encoder-embed-dim", str(size), "--encoder-hidden-size", str(size),
            "--decoder-embed-dim", str(size), "--decoder-hidden-size", str(size), "--decoder-out-embed-dim", str(size),
            "--encoder-layers", "1", "--decoder-layers", "1",
            "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1"]  # fmt: skip
    return {"rev": rev, "rev --no-fused-loss": rev + ["--no-fused-loss"],
            "rev --no-reversible": rev + ["--no-reversible"], "lstm (fairseq)": lstm}  # fmt: skip


def lm_models(size: int, layers: int, length: int) -> dict[str, list[str]]:
    common = ["--decoder-embed-dim", str(size), "--decoder-hidden-size", str(size), "--decoder-layers", str(layers),
              "--tokens-per-sample", str(length), "--sample-break-mode", "none"]  # fmt: skip
    rev = ["--arch", "rev_lstm_lm", *common, "--criterion", "rev_cross_entropy"]
    lstm = ["--arch", "lstm_lm", *common, "--decoder-out-embed-dim", str(size), "--criterion", "cross_entropy"]
    return {"rev": rev, "rev --no-fused-loss": rev + ["--no-fused-loss"],
            "rev --no-reversible": rev + ["--no-reversible"], "lstm_lm (fairseq)": lstm}  # fmt: skip


def prepare(work: Path) -> tuple[Path, Path]:
    """Multi30K (shared local copy or MULTI30K_DIR) and PTB, binarised by the recipes."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    local = os.environ.get("MULTI30K_DIR") or (str(SHARED_MULTI30K) if SHARED_MULTI30K.is_dir() else "")
    if local:
        env["MULTI30K_DIR"] = local
    mt, lm = work / "data-bin" / "multi30k", work / "data-bin" / "ptb"
    if not (mt / "train.en-de.de.bin").exists():
        subprocess.run(["bash", str(REPO / "examples/translation/prepare-multi30k.sh"), str(work / "raw" / "multi30k")],
                       env={**env, "DEST": str(mt), "THRESHOLD": "2"}, check=True, capture_output=True)  # fmt: skip
    if not (lm / "train.bin").exists():
        subprocess.run(["bash", str(REPO / "examples/language_model/prepare-ptb.sh"), str(lm)],
                       env={**env, "RAW": str(work / "raw" / "ptb")}, check=True, capture_output=True)  # fmt: skip
    return mt, lm


def vocabularies(data: Path, *names: str) -> str:
    """Dictionary sizes as fairseq builds them (4 special symbols, padded to a multiple of 8)."""
    from fairseq.data import Dictionary

    label = {"dict.txt": "words"}
    return " / ".join(
        f"{label.get(name, name.split('.')[-2])} {len(Dictionary.load(str(data / name)))}" for name in names
    )


def batch_of(task, size: int, seed: int = 0) -> dict:
    """``size`` training examples drawn at random (the same for every model)."""
    ds = task.dataset("train")
    g = torch.Generator().manual_seed(seed)
    return ds.collater([ds[int(i)] for i in torch.randperm(len(ds), generator=g)[:size]])


def to_device(sample, device: str):
    if device == "cpu":
        return sample
    from fairseq import utils

    return utils.move_to_cuda(sample)


def measure(data, args: list[str], batch: int, device: str, task: str = "translation") -> dict:
    torch.manual_seed(1)
    t, model, criterion = build(data, *args, task=task, split="train")
    model.to(device)
    sample = to_device(batch_of(t, batch), device)
    training_step(model, criterion, sample, device, metered=False)  # warm-up; allocates the gradients
    torch.manual_seed(2)
    step = training_step(model, criterion, sample, device)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return {"live": step.live, "peak": step.peak, "params": params, "tokens": int(sample["ntokens"])}


def table(title: str, rows: dict[str, dict], baseline: str) -> str:
    base = rows[baseline]
    lines = [f"### {title}", "",
             "| model | params MB | live MB | peak MB | live: lstm / this | peak: lstm / this |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['params'] / MB:.1f} | {r['live'] / MB:.1f} | {r['peak'] / MB:.1f} "
            f"| {base['live'] / max(r['live'], 1):.1f}x | {base['peak'] / max(r['peak'], 1):.1f}x |"
        )
    return "\n".join(lines)


def fairseq_train(data, args: list[str], batch: int, updates: int, work: Path) -> tuple[float, list[dict]]:
    """Run ``fairseq-train`` for ``updates`` updates of ``batch`` sentences; return its
    peak resident memory (MB) and its ``train_inner`` log records (every 10 updates)."""
    save = work / "train-run"
    shutil.rmtree(save, ignore_errors=True)
    cmd = [str(BIN / "fairseq-train"), str(data), "--user-dir", str(PLUGIN), *args, "--batch-size", str(batch),
           "--max-tokens", "1000000", "--max-update", str(updates), "--optimizer", "adam", "--lr", "0.001",
           "--num-workers", "0", "--disable-validation", "--no-save", "--save-dir", str(save), "--seed", "1",
           "--required-batch-size-multiple", "1", "--log-format", "json", "--log-interval", "10", "--cpu"]  # fmt: skip
    proc = subprocess.run([sys.executable, peak_rss.__file__, *cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"fairseq-train failed:\n{proc.stderr[-3000:]}")
    output = proc.stdout + proc.stderr
    return number(records(output, peak_rss.TAG)[-1], "peak_rss_mb"), records(output, "train_inner")


def train_words_per_second(data, models: dict[str, list[str]], batch: int, repeats: int, work: Path) -> dict:
    """fairseq-train's words/s over updates 11-60 (the first 10 warm up) of each of
    ``repeats`` runs taken in turns, per model."""
    wps: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, args in models.items():
            logs = fairseq_train(data, args, batch, 60, work)[1]
            wps[name].append(sum(float(r["wps"]) for r in logs[1:]) / len(logs[1:]))
    return wps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("bench-memory"), help="data and scratch directory")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--mt-size", type=int, default=256, help="translation embedding and hidden size")
    parser.add_argument("--mt-batches", default="64,512", help="translation batch sizes (sentences)")
    parser.add_argument("--lm-size", type=int, default=650, help="language model embedding and hidden size")
    parser.add_argument("--lm-layers", type=int, default=2)
    parser.add_argument("--lm-batch", type=int, default=16, help="language model batch (blocks of T tokens)")
    parser.add_argument("--lm-lengths", default="70,700", help="language model T")
    parser.add_argument("--rss-batches", default="8,512", help="fairseq-train batches for peak RSS ('' to skip)")
    parser.add_argument("--speed-batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="fairseq-train runs per model for words/s")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    mt_data, lm_data = prepare(args.work)
    mt_batches = [int(b) for b in args.mt_batches.split(",") if b]
    lm_lengths = [int(n) for n in args.lm_lengths.split(",") if n]
    rss_batches = [int(b) for b in args.rss_batches.split(",") if b]
    mt, lm = mt_models(args.mt_size), None
    jobs = len(mt) * len(mt_batches) + 4 * len(lm_lengths) + 2 * len(rss_batches) + 2
    bar = tqdm(total=jobs, desc="bench_memory")
    out = [f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()}"]
    out += [f"vocabularies: translation {vocabularies(mt_data, 'dict.en.txt', 'dict.de.txt')}, "
            f"language model {vocabularies(lm_data, 'dict.txt')} (with fairseq's special symbols)", ""]  # fmt: skip

    summary = []
    for batch in mt_batches:
        rows = {}
        for name, margs in mt.items():
            rows[name] = measure(mt_data, margs, batch, args.device)
            bar.update()
        tokens = rows["rev"]["tokens"]
        out += [
            table(f"Translation, batch {batch} ({tokens} target tokens), 1x{args.mt_size}", rows, "lstm (fairseq)"),
            "",
        ]
        summary.append((f"translation B={batch}", rows["lstm (fairseq)"]["peak"] / max(rows["rev"]["peak"], 1)))
    for length in lm_lengths:
        lm = lm_models(args.lm_size, args.lm_layers, length)
        rows = {}
        for name, margs in lm.items():
            rows[name] = measure(lm_data, margs, args.lm_batch, args.device, task="language_modeling")
            bar.update()
        title = f"Language model, T={length}, batch {args.lm_batch}, {args.lm_layers}x{args.lm_size}"
        out += [table(title, rows, "lstm_lm (fairseq)"), ""]
        summary.append((f"LM T={length}", rows["lstm_lm (fairseq)"]["peak"] / max(rows["rev"]["peak"], 1)))

    if rss_batches and args.device == "cpu":
        rss = {}
        for name in ("rev", "lstm (fairseq)"):
            for batch in rss_batches:
                rss[name, batch] = fairseq_train(mt_data, mt[name], batch, 3, args.work)[0]
                bar.update()
        lo, hi = rss_batches[0], rss_batches[-1]
        out += [f"### fairseq-train peak RSS (3 updates), translation 1x{args.mt_size}", "",
                f"| model | RSS batch {lo} MB | RSS batch {hi} MB | difference MB |", "|---|---|---|---|"]  # fmt: skip
        for name in ("rev", "lstm (fairseq)"):
            a, b = rss[name, lo], rss[name, hi]
            out.append(f"| {name} | {a:.0f} | {b:.0f} | {b - a:.0f} |")
        ratio = (rss["lstm (fairseq)", hi] - rss["lstm (fairseq)", lo]) / max(rss["rev", hi] - rss["rev", lo], 1)
        out += ["", f"RSS growth batch {lo} -> {hi}: lstm / rev = {ratio:.1f}x", ""]

    speeds = train_words_per_second(mt_data, {name: mt[name] for name in ("rev", "rev --no-fused-loss")},
                                    args.speed_batch, args.repeats, args.work)  # fmt: skip
    bar.update(2)
    bar.close()
    out += [f"### Speed: fairseq-train, translation batch {args.speed_batch}, updates 11-60, median of "
            f"{args.repeats} runs taken in turns", ""]  # fmt: skip
    median = {name: sorted(runs)[len(runs) // 2] for name, runs in speeds.items()}
    out += [f"{name}: {median[name]:.0f} target words/s (runs: {', '.join(f'{w:.0f}' for w in runs)})"
            for name, runs in speeds.items()]  # fmt: skip
    out += [f"fused / unfused words/s (medians): {median['rev'] / median['rev --no-fused-loss']:.2f}x", ""]
    out += ["peak of a whole step, lstm / rev (fused): " + ", ".join(f"{k} {v:.1f}x" for k, v in summary)]
    print("\n".join(out))


if __name__ == "__main__":
    main()
