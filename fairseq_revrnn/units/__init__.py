"""The recurrent units of our two other source papers, pure PyTorch (no fairseq import):
G2-LSTM (Li et al. 2018, gates trained towards 0/1) and NRU (Chandar et al. 2019,
non-saturating memory), and a multi-layer runner over any such cell."""

from .g2_lstm import GATES, G2LSTMCell, gate_settings
from .nru import HEAD_REDUCTIONS, NRUCell, memory_settings
from .runner import CellFactory, CellRNN, RecurrentCell

__all__ = [
    "GATES",
    "HEAD_REDUCTIONS",
    "CellFactory",
    "CellRNN",
    "G2LSTMCell",
    "NRUCell",
    "RecurrentCell",
    "gate_settings",
    "memory_settings",
]
