"""Build fairseq tasks, models and criterions in-process, as the CLIs do."""

from __future__ import annotations

from typing import Optional

from fairseq_revrnn.recipes.steps import build  # noqa: F401  (the tests build as fairseq-train does)

TINY_NMT = [
    "--encoder-embed-dim", "40", "--decoder-embed-dim", "40",
    "--encoder-hidden-size", "48", "--decoder-hidden-size", "48",
]  # fmt: skip


def sample(task, split: str = "valid", n: int = 8, start: int = 0):
    ds = task.dataset(split)
    return ds.collater([ds[i] for i in range(start, start + n)])


def synthetic_batch(task, batch: int, length: int, source_length: int = 0) -> dict:
    """A batch of random tokens of exactly ``length`` target (and ``source_length``
    source) positions, without padding: lengths chosen by the test, not the data."""
    import torch

    g = torch.Generator().manual_seed(length)
    tgt_dict = task.target_dictionary
    target = torch.randint(tgt_dict.nspecial, len(tgt_dict), (batch, length), generator=g)
    if not source_length:
        net_input = {"src_tokens": target.clone(), "src_lengths": torch.full((batch,), length)}
        return {"id": torch.arange(batch), "nsentences": batch, "ntokens": target.numel(), "target": target,
                "net_input": net_input}  # fmt: skip
    src_dict = task.source_dictionary
    src = torch.randint(src_dict.nspecial, len(src_dict), (batch, source_length), generator=g)
    prev = torch.cat([torch.full((batch, 1), tgt_dict.eos()), target[:, :-1]], dim=1)
    net_input = {"src_tokens": src, "src_lengths": torch.full((batch,), source_length), "prev_output_tokens": prev}
    return {"id": torch.arange(batch), "nsentences": batch, "ntokens": target.numel(), "target": target,
            "net_input": net_input}  # fmt: skip


def resolved_defaults(config, task: dict, settings: Optional[dict] = None) -> dict:
    """A model dataclass's defaults, with ``settings`` over them, as a full fairseq config resolves
    them: tied ones (``II``) take the value they name (the encoder's sizes, the ``task``'s maximum
    positions)."""
    import dataclasses

    from omegaconf import OmegaConf

    root = OmegaConf.create({"model": {**dataclasses.asdict(config()), **(settings or {})}, "task": task})
    model = OmegaConf.to_container(root, resolve=True)["model"]
    return {k: v for k, v in model.items() if not k.startswith("_")}
