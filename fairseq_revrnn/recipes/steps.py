"""One fairseq training step in-process, as ``fairseq-train`` builds it: task,
model and criterion from command-line arguments, and the step's memory."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..core.meter import StepMemory

PLUGIN = Path(__file__).resolve().parents[1]


def build(data, *extra: str, task: str = "translation", split: Optional[str] = "valid"):
    """``(task, model, criterion)`` from fairseq-train's arguments (plugin loaded); ``split`` loaded."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [str(data), "--user-dir", str(PLUGIN), "--task", task, *extra])
    cfg = convert_namespace_to_omegaconf(args)
    t = tasks.setup_task(cfg.task)
    model = t.build_model(cfg.model)
    criterion = t.build_criterion(cfg.criterion)
    if split is not None:
        t.load_dataset(split)
    return t, model, criterion


@dataclass
class StepResult:
    """Bytes of one training step beyond parameters and gradients: alive between
    forward and backward, and at the peak; and the step's seconds."""

    live: int
    peak: int
    seconds: float


def training_step(model, criterion, sample, device: str = "cpu", metered: bool = True) -> StepResult:
    """Forward (model + criterion) and backward of ``sample``, in training mode.

    Gradients start as None, as fairseq's ``zero_grad`` leaves them; ``live``
    is taken before any exist, and the gradients the step leaves are
    subtracted from ``peak``, so both count activations and temporaries only.
    """
    model.train()
    model.zero_grad(set_to_none=True)
    meter = StepMemory(device) if metered else None
    start = time.perf_counter()
    with meter or contextlib.nullcontext():
        loss, _, _ = criterion(model, sample)
        if meter is not None:
            meter.mark("forward")
        loss.backward()
        if device != "cpu":
            torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if meter is None:
        return StepResult(0, 0, seconds)
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    return StepResult(meter.live["forward"], meter.peak - grads, seconds)
