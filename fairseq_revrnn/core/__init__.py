"""The reversible RNN core: pure PyTorch, no fairseq import anywhere below."""

from .attention import ATTENTION_TYPES, OutputHead
from .buffer import InfoBuffer
from .cells import GRUHalf, HalfState, LSTMHalf, get_cell
from .engine import ExactState
from .fixed_point import RH, RZ, Forgetting, to_fixed, to_float
from .head import StepHead
from .inputs import DenseInput, EmbeddingInput
from .memory import MemoryStats, SavedTensorMeter, total
from .stack import ReversibleRNN, RNNOutput

__all__ = [
    "ATTENTION_TYPES",
    "ExactState",
    "OutputHead",
    "RH",
    "RZ",
    "DenseInput",
    "EmbeddingInput",
    "Forgetting",
    "GRUHalf",
    "HalfState",
    "InfoBuffer",
    "LSTMHalf",
    "MemoryStats",
    "RNNOutput",
    "ReversibleRNN",
    "SavedTensorMeter",
    "StepHead",
    "get_cell",
    "to_fixed",
    "to_float",
    "total",
]
