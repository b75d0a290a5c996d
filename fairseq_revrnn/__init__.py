"""fairseq-revrnn: reversible recurrent networks (RevGRU, RevLSTM) for fairseq.

The memory-saving machinery lives in :mod:`fairseq_revrnn.core`, pure PyTorch
and importable without fairseq.
"""

__version__ = "0.1.0"
