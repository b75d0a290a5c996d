"""Let fairseq's checkpoints load under torch >= 2.6 (``weights_only=True``).

fairseq 0.12 calls ``torch.load`` without ``weights_only``, so newer torch
uses its safe unpickler and refuses any non-tensor type it does not know.
Models configured through argparse (``add_args``, e.g. fairseq's own
``lstm``) store their options as an ``argparse.Namespace`` inside ``cfg``, so
their checkpoints fail to load in ``fairseq-generate``/``fairseq-eval-lm``.
Instead of turning safe loading off, we allow-list exactly the types fairseq
writes; anything else is still refused.
"""

import argparse

import torch

FAIRSEQ_CHECKPOINT_TYPES = (argparse.Namespace,)


def allow_fairseq_checkpoints() -> None:
    """Register the allow-list with torch's safe unpickler (idempotent)."""
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is not None:
        add(list(FAIRSEQ_CHECKPOINT_TYPES))
