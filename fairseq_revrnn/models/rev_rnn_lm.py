"""``rev_rnn_lm``: reversible-RNN language model for fairseq's language_modeling task.

Embeddings, the output projection and (with the plugin's criterions) the loss
run inside the reversible Function, so training keeps token ids, buffers and
dropout seeds: nothing per position of hidden, embedding or vocabulary size.
"""

import functools
from dataclasses import dataclass, field
from typing import Optional

from fairseq.models import FairseqLanguageModel
from omegaconf import II

from .. import registry
from ..core import OutputHead, total
from .common import (
    CELL_CHOICES,
    HELP,
    ReversibleDecoder,
    apply_architecture,
    build_stack,
    check_even,
    check_options,
    embedding,
)
from .options import ReversibleOptions


@dataclass
class RevRNNLMConfig(ReversibleOptions):
    cell_type: CELL_CHOICES = field(default="lstm", metadata={"help": HELP["cell_type"]})
    decoder_embed_dim: int = field(default=650, metadata={"help": "embedding dimension"})
    decoder_hidden_size: int = field(default=650, metadata={"help": "hidden size of every layer (even: two halves)"})
    decoder_layers: int = field(default=2, metadata={"help": "number of layers"})
    decoder_hidden_sizes: Optional[str] = field(
        default=None,
        metadata={"help": "comma-separated hidden size per layer, e.g. 1150,650 (overrides the two above)"},
    )
    dropout_in: float = field(default=0.3, metadata={"help": HELP["dropout_in"]})
    dropout_out: float = field(default=0.4, metadata={"help": HELP["dropout_out"]})
    dropout_hidden: float = field(default=0.5, metadata={"help": HELP["dropout_hidden"]})
    dropout_embed: float = field(default=0.1, metadata={"help": HELP["dropout_embed"]})
    share_decoder_input_output_embed: bool = field(
        default=False, metadata={"help": "tie input embeddings and output projection"}
    )
    tokens_per_sample: int = II("task.tokens_per_sample")


def _hidden_sizes(cfg) -> list[int]:
    if cfg.decoder_hidden_sizes:
        try:
            sizes = [int(v) for v in str(cfg.decoder_hidden_sizes).split(",")]
        except ValueError:
            raise ValueError(
                f"--decoder-hidden-sizes must be comma-separated integers; got {cfg.decoder_hidden_sizes!r}"
            ) from None
    else:
        sizes = [cfg.decoder_hidden_size] * cfg.decoder_layers
    for size in sizes:
        check_even("--decoder-hidden-size(s)", size)
    return sizes


class RevRNNLMDecoder(ReversibleDecoder):
    def __init__(self, cfg, dictionary):
        embed_tokens = embedding(len(dictionary), cfg.decoder_embed_dim, dictionary.pad())
        super().__init__(
            cfg, dictionary, embed_tokens, build_stack(cfg, cfg.decoder_embed_dim, _hidden_sizes(cfg), 0, 16)
        )

    def forward(self, src_tokens, src_lengths=None, incremental_state=None, fused_loss=None, target=None, **kwargs):
        if incremental_state is not None:
            head = OutputHead(**self.output_tensors())
            logits, _ = head.attend(self.advance(src_tokens[:, -1:], incremental_state)[0])
            return logits.unsqueeze(1), {"attn": None}
        head = OutputHead(**self.output_tensors(), **self.loss_request(fused_loss, target))
        tokens = src_tokens.t()
        pad = tokens.eq(self.padding_idx)
        out = self.rnn(self.inputs(tokens), ~pad if bool(pad.any()) else None, head=head)
        return self.run_outputs(out, {"lm": total(out.memory)})

    def max_positions(self):
        return self.cfg.tokens_per_sample


@registry.model("rev_rnn_lm", dataclass=RevRNNLMConfig)
class RevRNNLanguageModel(FairseqLanguageModel):
    """Reversible RNN language model (MacKay et al. 2018)."""

    supports_fused_loss = True

    @classmethod
    def build_model(cls, cfg, task):
        check_options(cfg, positive=("decoder_embed_dim", "decoder_layers", "tokens_per_sample"), even=())
        return cls(RevRNNLMDecoder(cfg, task.target_dictionary))


ARCHITECTURES: dict[str, dict] = {
    "rev_lstm_lm": {},
    "rev_gru_lm": {"cell_type": "gru"},
    # Paper appendix G.1: 2 layers of 1150 and 650 units, embeddings 650, tied output; its dropouts
    # (DropConnect 0.5, input 0.3, output 0.4, embedding 0.1) are the defaults.
    "rev_lstm_lm_ptb": {"decoder_hidden_sizes": "1150,650", "share_decoder_input_output_embed": True},
}
"""``--arch`` names: what each sets over the :class:`RevRNNLMConfig` defaults, nothing else."""

for _name, _settings in ARCHITECTURES.items():
    registry.architecture("rev_rnn_lm", _name)(
        functools.partial(apply_architecture, config=RevRNNLMConfig, settings=_settings)
    )
