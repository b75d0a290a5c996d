"""Ordinary (non-reversible) fairseq models over a recurrent cell of :mod:`fairseq_revrnn.units`.

One thin base for the G2-LSTM and NRU models: a translation model shaped like fairseq's
own ``lstm`` (encoder, optionally bidirectional; decoder with input feeding and fairseq's
Luong-style ``AttentionLayer``; the decoder starts from the encoder's final states,
projected where sizes differ) and a language model shaped like ``lstm_lm``. The option
names are fairseq's ``lstm`` / ``lstm_lm``'s. A model class names its unit by
``unit(cfg)``, which checks the unit's options and returns a cell factory. Training
stores every step for autograd, as fairseq's models do; fairseq's own criterions work
unchanged.
"""

import functools
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from fairseq.dataclass import FairseqDataclass
from fairseq.models import (
    FairseqEncoder,
    FairseqEncoderDecoderModel,
    FairseqIncrementalDecoder,
    FairseqLanguageModel,
)
from fairseq.models.lstm import AttentionLayer, Embedding, Linear
from omegaconf import II
from torch import nn

from .. import registry
from ..units import CellFactory, CellRNN
from .common import apply_architecture, option_name

BOOLEAN = {"true": True, "1": True, "false": False, "0": False}


@dataclass
class CellRNNConfig(FairseqDataclass):
    """Translation options, as fairseq's ``lstm`` names them."""

    encoder_embed_dim: int = field(default=256, metadata={"help": "encoder embedding dimension"})
    encoder_hidden_size: int = field(default=256, metadata={"help": "encoder hidden size"})
    encoder_layers: int = field(default=1, metadata={"help": "number of encoder layers"})
    encoder_bidirectional: bool = field(
        default=False, metadata={"help": "every encoder layer reads both directions (as fairseq's lstm)"}
    )
    encoder_dropout_in: float = field(default=II("model.dropout"), metadata={"help": "dropout on encoder inputs"})
    encoder_dropout_out: float = field(
        default=II("model.dropout"), metadata={"help": "dropout between encoder layers and on its outputs"}
    )
    decoder_embed_dim: int = field(
        default=II("model.encoder_embed_dim"), metadata={"help": "decoder embedding dimension"}
    )
    decoder_hidden_size: int = field(default=II("model.encoder_hidden_size"), metadata={"help": "decoder hidden size"})
    decoder_layers: int = field(
        default=II("model.encoder_layers"),
        metadata={"help": "number of decoder layers (equals --encoder-layers: layer i starts from encoder layer i)"},
    )
    decoder_out_embed_dim: Optional[int] = field(
        default=None,
        metadata={"help": "size the decoder's output is projected to before the vocabulary (default: its hidden size)"},
    )
    decoder_attention: str = field(
        default="True", metadata={"help": "attention over the encoder's outputs: True or False (as fairseq's lstm)"}
    )
    decoder_dropout_in: float = field(default=II("model.dropout"), metadata={"help": "dropout on decoder inputs"})
    decoder_dropout_out: float = field(
        default=II("model.dropout"), metadata={"help": "dropout between decoder layers and on its outputs"}
    )
    dropout: float = field(default=0.1, metadata={"help": "default of the four dropouts above"})
    share_decoder_input_output_embed: bool = field(
        default=False, metadata={"help": "tie the decoder's input embeddings and output projection"}
    )
    max_source_positions: int = II("task.max_source_positions")
    max_target_positions: int = II("task.max_target_positions")


@dataclass
class CellRNNLMConfig(FairseqDataclass):
    """Language-model options, as fairseq's ``lstm_lm`` names them."""

    decoder_embed_dim: int = field(default=256, metadata={"help": "embedding dimension"})
    decoder_hidden_size: int = field(default=256, metadata={"help": "hidden size of every layer"})
    decoder_layers: int = field(default=2, metadata={"help": "number of layers"})
    decoder_hidden_sizes: Optional[str] = field(
        default=None,
        metadata={"help": "comma-separated hidden size per layer, e.g. 1150,1150,400 (overrides the two above)"},
    )
    decoder_out_embed_dim: Optional[int] = field(
        default=None,
        metadata={"help": "size the top layer is projected to before the vocabulary (default: the top layer's)"},
    )
    decoder_dropout_in: float = field(default=II("model.dropout"), metadata={"help": "dropout on the embeddings"})
    decoder_dropout_out: float = field(
        default=II("model.dropout"), metadata={"help": "dropout between layers and on the outputs"}
    )
    dropout: float = field(default=0.1, metadata={"help": "default of the two dropouts above"})
    share_decoder_input_output_embed: bool = field(
        default=False, metadata={"help": "tie input embeddings and output projection"}
    )
    tokens_per_sample: int = II("task.tokens_per_sample")


def _check(cfg, positive: tuple[str, ...], dropouts: tuple[str, ...]) -> None:
    """Refuse sizes below 1 and dropouts outside [0, 1), naming the option."""
    for name in positive:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{option_name(name)} must be an integer >= 1; got {value!r}")
    for name in dropouts:
        p = getattr(cfg, name)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise ValueError(f"{option_name(name)} must be a probability in [0, 1); got {p!r}")


def _attention(cfg) -> bool:
    text = str(cfg.decoder_attention).lower()
    if text not in BOOLEAN:
        raise ValueError(f"--decoder-attention must be True or False (or 1 / 0); got {cfg.decoder_attention!r}")
    return BOOLEAN[text]


def _out_embed_dim(cfg, top: int) -> int:
    """The output projection's input size; tying needs it equal to the embedding size."""
    out_dim = top if cfg.decoder_out_embed_dim is None else cfg.decoder_out_embed_dim
    if cfg.share_decoder_input_output_embed and out_dim != cfg.decoder_embed_dim:
        raise ValueError(
            "--share-decoder-input-output-embed needs the decoder's output size (--decoder-out-embed-dim, default the "
            f"top hidden size) equal to --decoder-embed-dim; got {out_dim} and {cfg.decoder_embed_dim}"
        )
    return out_dim


class CellRNNEncoder(FairseqEncoder):
    """Embeddings, dropout, a :class:`CellRNN` (kept unchanged over padding, either side)."""

    def __init__(self, cfg, dictionary, cell: CellFactory):
        super().__init__(dictionary)
        self.cfg = cfg
        self.padding_idx = dictionary.pad()
        self.embed_tokens = Embedding(len(dictionary), cfg.encoder_embed_dim, self.padding_idx)
        self.dropout_in, self.dropout_out = float(cfg.encoder_dropout_in), float(cfg.encoder_dropout_out)
        sizes = [cfg.encoder_hidden_size] * cfg.encoder_layers
        self.rnn = CellRNN(cell, cfg.encoder_embed_dim, sizes, cfg.encoder_bidirectional, cfg.encoder_dropout_out)

    def state_sizes(self) -> list[int]:
        """The sizes of one layer's final state, both directions concatenated."""
        return [size * self.rnn.directions for size in self.rnn.cells[0].state_sizes]

    def forward(self, src_tokens: torch.Tensor, src_lengths: Optional[torch.Tensor] = None, **kwargs) -> dict:
        pad = src_tokens.eq(self.padding_idx).t()
        x = F.dropout(self.embed_tokens(src_tokens), self.dropout_in, self.training).transpose(0, 1)
        outputs, finals = self.rnn(x, valid=~pad if bool(pad.any()) else None)
        outputs = F.dropout(outputs, self.dropout_out, self.training)
        d = self.rnn.directions
        layers = [finals[i : i + d] for i in range(0, len(finals), d)]
        # per layer, each state variable with its directions concatenated: (batch, size * directions)
        states = [torch.cat(parts, dim=-1) for layer in layers for parts in zip(*layer)]
        return {"encoder_out": [outputs], "encoder_padding_mask": [pad], "final_state": states}

    def reorder_encoder_out(self, encoder_out: dict, new_order: torch.Tensor) -> dict:
        return {
            "encoder_out": [encoder_out["encoder_out"][0].index_select(1, new_order)],
            "encoder_padding_mask": [encoder_out["encoder_padding_mask"][0].index_select(1, new_order)],
            "final_state": [v.index_select(0, new_order) for v in encoder_out["final_state"]],
        }

    def max_positions(self) -> int:
        return self.cfg.max_source_positions


class CellDecoder(FairseqIncrementalDecoder):
    """What the translation decoder and the language model share: embeddings, the output
    projection (optionally through ``--decoder-out-embed-dim``, optionally tied) and the
    cached recurrent state of incremental decoding, reordered for beam search."""

    def __init__(self, cfg, dictionary, rnn: CellRNN, top: int):
        super().__init__(dictionary)
        self.cfg = cfg
        self.padding_idx = dictionary.pad()
        self.embed_tokens = Embedding(len(dictionary), cfg.decoder_embed_dim, self.padding_idx)
        self.dropout_in, self.dropout_out = float(cfg.decoder_dropout_in), float(cfg.decoder_dropout_out)
        self.rnn = rnn
        out_dim = _out_embed_dim(cfg, top)
        self.additional_fc = Linear(top, out_dim) if out_dim != top else None
        self.fc_out = None if cfg.share_decoder_input_output_embed else Linear(out_dim, len(dictionary))

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """(batch, time) tokens -> (time, batch, embed_dim), with input dropout."""
        x = F.dropout(self.embed_tokens(tokens), self.dropout_in, self.training)
        return x.transpose(0, 1)

    def output_layer(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, time, top) -> logits (batch, time, vocabulary)."""
        if self.additional_fc is not None:
            features = F.dropout(self.additional_fc(features), self.dropout_out, self.training)
        if self.fc_out is None:
            return F.linear(features, self.embed_tokens.weight)
        return self.fc_out(features)

    def cached(self, incremental_state) -> Optional[dict]:
        return None if incremental_state is None else self.get_incremental_state(incremental_state, "cached_state")

    def cache(self, incremental_state, states: list, **extra: torch.Tensor) -> None:
        if incremental_state is not None:
            self.set_incremental_state(incremental_state, "cached_state", {"states": states, **extra})

    def reorder_incremental_state(self, incremental_state, new_order: torch.Tensor) -> None:
        cached = self.cached(incremental_state)
        if cached is None:
            return
        reordered = {key: value.index_select(0, new_order) for key, value in cached.items() if key != "states"}
        reordered["states"] = [tuple(v.index_select(0, new_order) for v in state) for state in cached["states"]]
        self.set_incremental_state(incremental_state, "cached_state", reordered)


class CellRNNDecoder(CellDecoder):
    """fairseq ``lstm``'s decoder over any cell: input feeding (the previous step's output is
    appended to the embedding), attention after the top layer, states from the encoder's."""

    def __init__(self, cfg, dictionary, cell: CellFactory, encoder: CellRNNEncoder):
        hidden = cfg.decoder_hidden_size
        rnn = CellRNN(
            cell, cfg.decoder_embed_dim + hidden, [hidden] * cfg.decoder_layers, False, cfg.decoder_dropout_out
        )
        super().__init__(cfg, dictionary, rnn, hidden)
        self.state_proj = nn.ModuleList(
            nn.Identity() if enc == dec else Linear(enc, dec)
            for enc, dec in zip(encoder.state_sizes(), rnn.cells[0].state_sizes)
        )
        self.attention = AttentionLayer(hidden, encoder.rnn.output_size, hidden) if _attention(cfg) else None

    def initial_states(self, encoder_out: dict) -> list[tuple[torch.Tensor, ...]]:
        flat = encoder_out["final_state"]
        n = len(self.state_proj)
        return [tuple(proj(v) for proj, v in zip(self.state_proj, flat[i : i + n])) for i in range(0, len(flat), n)]

    def forward(self, prev_output_tokens, encoder_out=None, incremental_state=None, **kwargs):
        cached = self.cached(incremental_state)
        if cached is not None:
            prev_output_tokens = prev_output_tokens[:, -1:]
            states, feed = cached["states"], cached["feed"]
        else:
            states = self.initial_states(encoder_out)
            feed = states[0][0].new_zeros(prev_output_tokens.shape[0], self.cfg.decoder_hidden_size)
        source = encoder_out["encoder_out"][0]
        pad = encoder_out["encoder_padding_mask"][0]
        pad = pad if bool(pad.any()) else None
        x = self.embed(prev_output_tokens)
        outputs, scores = [], []
        for t in range(x.shape[0]):
            hidden, states = self.rnn.step(torch.cat([x[t], feed], dim=-1), states)
            if self.attention is not None:
                hidden, attn = self.attention(hidden, source, pad)
                scores.append(attn)
            feed = F.dropout(hidden, self.dropout_out, self.training)
            outputs.append(feed)
        self.cache(incremental_state, states, feed=feed)
        attn = torch.stack(scores).permute(2, 0, 1) if scores else None  # (batch, time, source)
        return self.output_layer(torch.stack(outputs, dim=1)), {"attn": [attn] if attn is not None else None}

    def max_positions(self) -> int:
        return self.cfg.max_target_positions


class CellRNNLMDecoder(CellDecoder):
    """fairseq ``lstm_lm``'s shape over any cell: embeddings, layers, output projection."""

    def __init__(self, cfg, dictionary, cell: CellFactory):
        sizes = lm_hidden_sizes(cfg)
        super().__init__(cfg, dictionary, CellRNN(cell, cfg.decoder_embed_dim, sizes, False, cfg.decoder_dropout_out),
                         sizes[-1])  # fmt: skip

    def forward(self, src_tokens, src_lengths=None, incremental_state=None, **kwargs):
        cached = self.cached(incremental_state)
        states = None
        if cached is not None:
            src_tokens, states = src_tokens[:, -1:], cached["states"]
        pad = src_tokens.eq(self.padding_idx).t()
        outputs, states = self.rnn(self.embed(src_tokens), states, valid=~pad if bool(pad.any()) else None)
        self.cache(incremental_state, states)
        features = F.dropout(outputs, self.dropout_out, self.training).transpose(0, 1)
        return self.output_layer(features), {"attn": None}

    def max_positions(self) -> int:
        return self.cfg.tokens_per_sample


def lm_hidden_sizes(cfg) -> list[int]:
    """``--decoder-hidden-sizes`` if given, else ``--decoder-layers`` x ``--decoder-hidden-size``."""
    if not cfg.decoder_hidden_sizes:
        return [cfg.decoder_hidden_size] * cfg.decoder_layers
    try:
        sizes = [int(v) for v in str(cfg.decoder_hidden_sizes).split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise ValueError(
            f"--decoder-hidden-sizes must be comma-separated integers >= 1; got {cfg.decoder_hidden_sizes!r}"
        )
    return sizes


class CellRNNModel(FairseqEncoderDecoderModel):
    """Encoder-decoder over the cell that ``unit(cfg)`` builds (set by each registered model)."""

    unit: Callable[..., CellFactory]

    @classmethod
    def build_model(cls, cfg, task):
        _check(
            cfg,
            positive=("encoder_embed_dim", "encoder_hidden_size", "encoder_layers", "decoder_embed_dim",
                      "decoder_hidden_size", "decoder_layers", "max_source_positions", "max_target_positions"),
            dropouts=("dropout", "encoder_dropout_in", "encoder_dropout_out", "decoder_dropout_in",
                      "decoder_dropout_out"),
        )  # fmt: skip
        if cfg.decoder_out_embed_dim is not None:
            _check(cfg, ("decoder_out_embed_dim",), ())
        if cfg.decoder_layers != cfg.encoder_layers:
            raise ValueError(
                "--decoder-layers must equal --encoder-layers: each decoder layer starts from the final state of the "
                f"encoder layer below it (got {cfg.decoder_layers} and {cfg.encoder_layers})"
            )
        _attention(cfg)
        _out_embed_dim(cfg, cfg.decoder_hidden_size)
        cell = cls.unit(cfg)
        encoder = CellRNNEncoder(cfg, task.source_dictionary, cell)
        return cls(encoder, CellRNNDecoder(cfg, task.target_dictionary, cell, encoder))


class CellRNNLanguageModel(FairseqLanguageModel):
    """Language model over the cell that ``unit(cfg)`` builds (set by each registered model)."""

    unit: Callable[..., CellFactory]

    @classmethod
    def build_model(cls, cfg, task):
        _check(
            cfg,
            positive=("decoder_embed_dim", "decoder_hidden_size", "decoder_layers", "tokens_per_sample"),
            dropouts=("dropout", "decoder_dropout_in", "decoder_dropout_out"),
        )
        if cfg.decoder_out_embed_dim is not None:
            _check(cfg, ("decoder_out_embed_dim",), ())
        _out_embed_dim(cfg, lm_hidden_sizes(cfg)[-1])
        return cls(CellRNNLMDecoder(cfg, task.target_dictionary, cls.unit(cfg)))


def register_architectures(model_name: str, config: type[FairseqDataclass], architectures: dict[str, dict]) -> None:
    """Register each named architecture: its settings over ``config``'s defaults, nothing else."""
    for name, settings in architectures.items():
        registry.architecture(model_name, name)(functools.partial(apply_architecture, config=config, settings=settings))
