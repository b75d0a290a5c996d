"""``g2_lstm`` (translation) and ``g2_lstm_lm`` (language model): G2-LSTM (Li et al. 2018),
an LSTM whose input and forget gates are trained towards 0/1 with Gumbel noise.

``--gates sigmoid`` gives the paper's baseline (an ordinary LSTM) and ``--gates sharpened``
its sharpened-sigmoid baseline, so the paper's three rows train from one model. The cell is
:class:`fairseq_revrnn.units.G2LSTMCell`; the models are :mod:`.cell_rnn`'s.
"""

import functools
from dataclasses import dataclass, field
from typing import Optional

from fairseq.dataclass import ChoiceEnum, FairseqDataclass

from .. import registry
from ..units import GATES, G2LSTMCell, gate_settings
from ..units.g2_lstm import PAPER_TEMPERATURE
from .cell_rnn import CellRNNConfig, CellRNNLanguageModel, CellRNNLMConfig, CellRNNModel, register_architectures

OPTION_NAMES = {"gates": "--gates", "temperature": "--gate-temperature", "gumbel_fraction": "--gumbel-fraction"}


@dataclass
class G2Options(FairseqDataclass):
    gates: ChoiceEnum(list(GATES)) = field(
        default="gumbel",
        metadata={"help": "input and forget gates: sigmoid (ordinary LSTM, the paper's baseline), sharpened "
                  "(sigmoid(a/tau), the paper's sharpened-sigmoid baseline) or gumbel (G2: sigmoid((a + logistic "
                  "noise)/tau) while training, sigmoid(a) in evaluation)"},
    )  # fmt: skip
    gate_temperature: Optional[float] = field(
        default=None,
        metadata={"help": "tau of the sharpened or gumbel gates (default: the paper's, "
                  f"{PAPER_TEMPERATURE['gumbel']} for gumbel, {PAPER_TEMPERATURE['sharpened']} for sharpened)"},
    )  # fmt: skip
    gumbel_fraction: float = field(
        default=1.0,
        metadata={"help": "probability that a gate value gets the Gumbel noise while training (1: all of them, the "
                  "paper's statement; the authors' code samples a fraction)"},
    )  # fmt: skip


def g2_unit(cfg) -> functools.partial:
    """The G2-LSTM cell factory for ``cfg``; a bad option raises ValueError naming it."""
    gates = str(cfg.gates)
    gate_settings(gates, cfg.gate_temperature, cfg.gumbel_fraction, OPTION_NAMES)
    return functools.partial(
        G2LSTMCell, gates=gates, temperature=cfg.gate_temperature, gumbel_fraction=cfg.gumbel_fraction
    )


@dataclass
class G2LSTMConfig(CellRNNConfig, G2Options):
    pass


@dataclass
class G2LSTMLMConfig(CellRNNLMConfig, G2Options):
    pass


@registry.model("g2_lstm", dataclass=G2LSTMConfig)
class G2LSTMModel(CellRNNModel):
    """G2-LSTM encoder-decoder with attention, shaped like fairseq's ``lstm``."""

    unit = staticmethod(g2_unit)


@registry.model("g2_lstm_lm", dataclass=G2LSTMLMConfig)
class G2LSTMLanguageModel(CellRNNLanguageModel):
    """G2-LSTM language model, shaped like fairseq's ``lstm_lm``."""

    unit = staticmethod(g2_unit)


ARCHITECTURES: dict[str, dict] = {
    # Section 4.1.2, IWSLT14 de-en: two layers, embeddings and hidden states of 256.
    "g2_lstm_iwslt_de_en": {"encoder_layers": 2},
}
"""Translation ``--arch`` names beside ``g2_lstm`` (the defaults): what each sets, nothing else."""

LM_ARCHITECTURES: dict[str, dict] = {
    # CPU-sized Penn Treebank: the default 2 x 256, tied, more dropout.
    "g2_lstm_lm_ptb_small": {"share_decoder_input_output_embed": True, "dropout": 0.3},
    # Section 4.1.1: AWD-LSTM's shape (Merity et al. 2017), three layers of 1150, 1150 and 400 units,
    # embeddings 400, tied (24M parameters on PTB); its many dropouts become one of 0.4.
    "g2_lstm_lm_ptb": {"decoder_embed_dim": 400, "decoder_hidden_sizes": "1150,1150,400",
                       "share_decoder_input_output_embed": True, "dropout": 0.4},
}  # fmt: skip
"""Language-model ``--arch`` names beside ``g2_lstm_lm`` (the defaults)."""

register_architectures("g2_lstm", G2LSTMConfig, ARCHITECTURES)
register_architectures("g2_lstm_lm", G2LSTMLMConfig, LM_ARCHITECTURES)
