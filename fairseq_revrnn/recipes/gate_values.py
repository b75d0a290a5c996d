"""Input- and forget-gate values of a trained G2-LSTM model on a data split, and their
histograms: the G2 paper's figures 1 and 3 (Li et al. 2018, section 4.4), where the
baseline's gates spread over (0, 1) and G2's pile up near 0 and 1.

As the paper, the values are those of the first layer of the decoder (the language model's
first layer), in evaluation mode (plain sigmoids), with the reference as the decoder's
input (teacher forcing); padding is left out.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import torch

# Importing fairseq sets the root logger to DEBUG: keep matplotlib's font search out of the output.
if logging.getLogger("matplotlib").level == logging.NOTSET:
    logging.getLogger("matplotlib").setLevel(logging.WARNING)

GATES = ("input", "forget")
NEAR = 0.1
"""A gate value within this of 0 or 1 counts as near it."""


@contextlib.contextmanager
def recording(cell: torch.nn.Module) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Record (i, f) of every step ``cell`` (a G2LSTMCell) computes while the context is open.

    The cell's ``gates`` method is wrapped on this instance only and restored afterwards."""
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    original = cell.gates

    def gates(projected: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = original(projected, h)
        calls.append((out[0].detach(), out[1].detach()))
        return out

    cell.gates = gates
    try:
        yield calls
    finally:
        del cell.gates


def gate_values(checkpoint: Path, data: Path, subset: str = "valid", max_tokens: int = 4000) -> dict[str, torch.Tensor]:
    """Every input- and forget-gate value of the first decoder layer over ``subset`` of ``data``:
    ``{"input": values, "forget": values}``, one flat tensor each."""
    from fairseq import checkpoint_utils

    import fairseq_revrnn  # noqa: F401  (registers the models and the checkpoint allow-list)

    models, _, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(checkpoint)], arg_overrides={"data": str(data)}
    )
    model = models[0].eval()
    task.load_dataset(subset)
    batches = task.get_batch_iterator(task.dataset(subset), max_tokens=max_tokens, seed=1).next_epoch_itr(shuffle=False)
    pad = task.target_dictionary.pad()
    found: dict[str, list[torch.Tensor]] = {gate: [] for gate in GATES}
    with torch.no_grad(), recording(model.decoder.rnn.cells[0]) as calls:
        for sample in batches:
            calls.clear()
            net_input = sample["net_input"]
            model(**net_input)
            tokens = net_input.get("prev_output_tokens", net_input["src_tokens"])
            real = tokens.ne(pad).t()  # (time, batch): the cell steps over time
            for gate, values in zip(GATES, zip(*calls)):
                found[gate].append(torch.stack(values)[real].flatten())
    return {gate: torch.cat(values) for gate, values in found.items()}


def near_binary(values: torch.Tensor, near: float = NEAR) -> tuple[float, float]:
    """Shares of the values below ``near`` and above ``1 - near``."""
    return float((values < near).float().mean()), float((values > 1 - near).float().mean())


def plot_histograms(panels: dict[str, dict[str, dict[str, torch.Tensor]]], path: Path, bins: int = 50) -> Path:
    """One panel per (task, gate), rows by task, the models' histograms overlaid:
    ``panels[task][gate][model]`` holds the values. Written as PNG to ``path``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6 * len(panels)), dpi=100, layout="constrained")
    axes = fig.subplots(len(panels), len(GATES), squeeze=False)
    for row, (task, gates) in zip(axes, panels.items()):
        for ax, gate in zip(row, GATES):
            for model, values in gates[gate].items():
                ax.hist(values.numpy(), bins=bins, range=(0, 1), density=True, histtype="step", lw=1.5, label=model)
            ax.set_title(f"{task}: {gate} gate")
            ax.set_xlabel("gate value")
            ax.set_ylabel("density")
            ax.legend()
    fig.suptitle("Gate values of the first decoder layer on validation data (evaluation mode)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
