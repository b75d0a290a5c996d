"""Memory bit counts in fairseq's logging outputs (docs/design.md, section 6).

The models return naive/actual/ideal bit counts per part (``enc``/``dec`` or
``lm``) with their output, in the decoder's ``extra["memory"]``; the criterion
copies them into the logging output. They are summed there under
hidden names (``_mem_<part>_<kind>``: hidden from the progress bar, summable
across workers) and turned into ratios in ``reduce_metrics``, so that
``mem_savings`` etc. appear in the progress bar, json logs and tensorboard.
"""

from __future__ import annotations

from fairseq import utils
from fairseq.logging import metrics

from ..core.memory import MemoryStats

KINDS = ("naive", "actual", "ideal")


def add_memory(memory: dict[str, MemoryStats], logging_output: dict) -> None:
    """Log each part's bit counts under hidden names that fairseq sums across workers."""
    for part, s in memory.items():
        logging_output[f"_mem_{part}_naive"] = s.naive_bits
        logging_output[f"_mem_{part}_actual"] = s.actual_bits
        logging_output[f"_mem_{part}_ideal"] = s.ideal_bits


def _ratio(meters, parts: list[str], kind: str) -> float:
    """naive / kind over ``parts``. With several workers fairseq all-reduces the
    logging outputs, so the sums arrive as tensors: read them as floats."""
    naive = sum(float(utils.item(meters[f"_mem_{p}_naive"].sum)) for p in parts)
    other = sum(float(utils.item(meters[f"_mem_{p}_{kind}"].sum)) for p in parts)
    return round(naive / other, 2) if other > 0 else float("nan")


def reduce_memory(logging_outputs) -> None:
    parts = sorted({k.split("_")[2] for log in logging_outputs for k in log if k.startswith("_mem_")})
    if not parts:
        return
    for part in parts:
        for kind in KINDS:
            key = f"_mem_{part}_{kind}"
            metrics.log_scalar(key, sum(log.get(key, 0) for log in logging_outputs), weight=1, round=0)
    metrics.log_derived("mem_savings", lambda m: _ratio(m, parts, "actual"))
    metrics.log_derived("mem_savings_ideal", lambda m: _ratio(m, parts, "ideal"))
    if set(parts) == {"enc", "dec"}:
        for part in parts:
            metrics.log_derived(f"{part}_mem_savings", lambda m, p=part: _ratio(m, [p], "actual"))
            metrics.log_derived(f"{part}_mem_savings_ideal", lambda m, p=part: _ratio(m, [p], "ideal"))
