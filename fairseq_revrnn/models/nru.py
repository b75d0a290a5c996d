"""``nru`` (translation) and ``nru_lm`` (language model): the Non-saturating Recurrent Unit
(Chandar et al. 2019), a ReLU hidden state beside a memory vector with additive,
non-saturating writes and erases.

The cell is :class:`fairseq_revrnn.units.NRUCell`; the models are :mod:`.cell_rnn`'s. NRU's
memory feeds its own updates, so its states and gradients can grow over long sequences
(the paper clips gradients at norm 1): train with ``--clip-norm``.
"""

import functools
from dataclasses import dataclass, field

from fairseq.dataclass import ChoiceEnum, FairseqDataclass

from .. import registry
from ..units import HEAD_REDUCTIONS, NRUCell, memory_settings
from .cell_rnn import CellRNNConfig, CellRNNLanguageModel, CellRNNLMConfig, CellRNNModel

OPTION_NAMES = {"memory_size": "--memory-size", "memory_heads": "--memory-heads",
                "head_reduction": "--nru-head-reduction"}  # fmt: skip


@dataclass
class NRUOptions(FairseqDataclass):
    memory_size: int = field(
        default=64, metadata={"help": "memory units per layer (memory size * heads must be a perfect square)"}
    )
    memory_heads: int = field(default=4, metadata={"help": "write heads and erase heads, k of each"})
    nru_layer_norm: bool = field(default=False, metadata={"help": "layer-normalise the hidden state's pre-activation"})
    nru_relu_heads: bool = field(
        default=False,
        metadata={"help": "ReLU on the write/erase strengths and directions: write heads only add, erase heads only "
                  "remove (the paper's best character-level language models)"},
    )  # fmt: skip
    nru_head_reduction: ChoiceEnum(list(HEAD_REDUCTIONS)) = field(
        default="mean",
        metadata={"help": "combine the heads' changes by mean (the authors' code) or sum (the paper's eq. 10, unstable "
                  "at initialisation with several heads: the memory grows by orders of magnitude over 70 steps)"},
    )  # fmt: skip


def nru_unit(cfg) -> functools.partial:
    """The NRU cell factory for ``cfg``; a bad option raises ValueError naming it."""
    reduction = str(cfg.nru_head_reduction)
    memory_settings(cfg.memory_size, cfg.memory_heads, reduction, OPTION_NAMES)
    return functools.partial(
        NRUCell,
        memory_size=cfg.memory_size,
        memory_heads=cfg.memory_heads,
        layer_norm=bool(cfg.nru_layer_norm),
        relu_heads=bool(cfg.nru_relu_heads),
        head_reduction=reduction,
    )


@dataclass
class NRUConfig(CellRNNConfig, NRUOptions):
    pass


@dataclass
class NRULMConfig(CellRNNLMConfig, NRUOptions):
    pass


@registry.model("nru", dataclass=NRUConfig)
class NRUModel(CellRNNModel):
    """NRU encoder-decoder with attention, shaped like fairseq's ``lstm``."""

    unit = staticmethod(nru_unit)


@registry.model("nru_lm", dataclass=NRULMConfig)
class NRULanguageModel(CellRNNLanguageModel):
    """NRU language model, shaped like fairseq's ``lstm_lm``."""

    unit = staticmethod(nru_unit)
