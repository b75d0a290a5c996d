"""Let fairseq's own checkpoints load under torch >= 2.6 (``weights_only=True``).

fairseq 0.12 calls ``torch.load`` without ``weights_only``; newer torch then
refuses the non-tensor objects fairseq writes into every checkpoint. Rather
than unpickling arbitrary objects, we allow-list exactly those types.
"""

from __future__ import annotations

import argparse
import collections

import torch

try:  # numpy scalars appear in fairseq's metrics and best-checkpoint state
    import numpy as np
except ImportError:  # pragma: no cover - numpy is a torch dependency here
    np = None


def fairseq_checkpoint_types() -> list:
    """The non-tensor types found in checkpoints written by fairseq 0.12."""
    types: list = [argparse.Namespace, collections.OrderedDict, collections.defaultdict]
    if np is not None:
        types += [np.dtype, type(np.dtype("float64")), type(np.dtype("int64")), type(np.dtype("float32"))]
        scalar = getattr(np, "_core", getattr(np, "core", None)).multiarray.scalar
        types += [scalar, np.ndarray, np.core.multiarray._reconstruct if hasattr(np, "core") else None]
    return [t for t in types if t is not None]


def allow_fairseq_checkpoints() -> None:
    """Register the allow-list with torch's safe unpickler (idempotent)."""
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is not None:
        add(fairseq_checkpoint_types())
