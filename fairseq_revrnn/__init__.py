"""fairseq-revrnn: reversible recurrent networks (RevGRU, RevLSTM) for fairseq.

Load with ``fairseq-train --user-dir fairseq_revrnn --arch rev_lstm ...``. The
memory-saving machinery lives in :mod:`fairseq_revrnn.core`, pure PyTorch and
importable without fairseq; the models and criterions below need fairseq.
"""

__version__ = "0.1.0"

try:
    import fairseq  # noqa: F401
except ImportError:  # core-only use; the fairseq modules explain how to install it
    pass
else:
    from .checkpoints import allow_fairseq_checkpoints

    allow_fairseq_checkpoints()
    from . import criterions, models, tasks  # noqa: F401  (registers with fairseq)
