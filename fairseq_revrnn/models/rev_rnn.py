"""``rev_rnn``: reversible-RNN encoder-decoder with memory-saving attention.

The encoder embeds source tokens inside its reversible Function (embeddings
are recomputed in the backward); the decoder starts from the encoder's final
state and runs attention and the output projection inside its own reversible
Function, so with reversibility on nothing of size T x B x (hidden or
embedding dim) is kept for backward: only attention slices (T x B x k), token
ids and per-sequence masks. With the plugin's criterions the loss runs inside
the decoder's Function too (``fused_loss``/``target``), so no T x B x V logits
are kept either; without them the decoder returns logits as usual.
"""

import functools
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq.dataclass import ChoiceEnum
from fairseq.models import FairseqEncoder, FairseqEncoderDecoderModel
from fairseq.utils import safe_getattr
from omegaconf import II
from torch import nn

from .. import registry
from ..core import MemoryStats, OutputHead, total
from ..core.attention import ATTENTION_TYPES, uses_embeddings, uses_slice
from ..core.dropout import variational_mask
from .common import (
    CELL_CHOICES,
    HELP,
    ReversibleDecoder,
    apply_architecture,
    build_stack,
    check_options,
    embedded_tokens,
    embedding,
    uniform_parameter,
)
from .options import ReversibleOptions

DEFAULT_SLICE_DIM = 20
DECODER_CHUNK = 1  # one step per input projection, so incremental decoding matches a full pass exactly


@dataclass
class RevRNNConfig(ReversibleOptions):
    cell_type: CELL_CHOICES = field(default="lstm", metadata={"help": HELP["cell_type"]})
    encoder_embed_dim: int = field(default=256, metadata={"help": "encoder embedding dimension"})
    encoder_hidden_size: int = field(default=256, metadata={"help": "encoder hidden size (even: two halves)"})
    encoder_layers: int = field(default=1, metadata={"help": "number of encoder layers"})
    decoder_embed_dim: int = field(
        default=II("model.encoder_embed_dim"),
        metadata={"help": "decoder embedding dimension (default: --encoder-embed-dim)"},
    )
    decoder_hidden_size: int = field(
        default=II("model.encoder_hidden_size"),
        metadata={"help": "decoder hidden size (even); equals the encoder's, whose final state it starts from"},
    )
    decoder_layers: int = field(
        default=II("model.encoder_layers"), metadata={"help": "number of decoder layers (equals --encoder-layers)"}
    )
    attention: ChoiceEnum(list(ATTENTION_TYPES)) = field(
        default="emb+slice",
        metadata={"help": "annotations for Luong attention: none, hidden (full encoder states), slice (first k units "
                  "of the top encoder layer's h1), emb (source embeddings), emb+slice"},
    )  # fmt: skip
    attention_slice_dim: Optional[int] = field(
        default=None,
        metadata={"help": f"k, the units kept for slice / emb+slice attention (default {DEFAULT_SLICE_DIM})"},
    )
    dropout_in: float = field(default=0.4, metadata={"help": HELP["dropout_in"]})
    dropout_out: float = field(default=0.4, metadata={"help": HELP["dropout_out"] + " and on the attention output"})
    dropout_hidden: float = field(default=0.0, metadata={"help": HELP["dropout_hidden"]})
    dropout_embed: float = field(default=0.0, metadata={"help": HELP["dropout_embed"]})
    share_decoder_input_output_embed: bool = field(
        default=False, metadata={"help": "tie the decoder's input embeddings and output projection"}
    )
    share_all_embeddings: bool = field(
        default=False, metadata={"help": "share encoder and decoder embeddings (needs a joined dictionary)"}
    )
    max_source_positions: int = II("task.max_source_positions")
    max_target_positions: int = II("task.max_target_positions")


def _slice_dim(cfg) -> int:
    attention = str(cfg.attention)
    k = cfg.attention_slice_dim
    if not uses_slice(attention):
        if k is not None:
            raise ValueError(
                f"--attention-slice-dim is only used with --attention slice or emb+slice; got --attention {attention}"
            )
        return 0
    k = DEFAULT_SLICE_DIM if k is None else k
    half = cfg.encoder_hidden_size // 2
    if not 1 <= k <= half:
        raise ValueError(f"--attention-slice-dim must be in 1..{half} (half of --encoder-hidden-size); got {k}")
    return k


class RevRNNEncoder(FairseqEncoder):
    def __init__(self, cfg, dictionary, embed_tokens: nn.Embedding):
        super().__init__(dictionary)
        self.cfg = cfg
        self.padding_idx = dictionary.pad()
        self.embed_tokens = embed_tokens
        self.attention = str(cfg.attention)
        sizes = [cfg.encoder_hidden_size] * cfg.encoder_layers
        self.rnn = build_stack(cfg, cfg.encoder_embed_dim, sizes, _slice_dim(cfg), chunk_size=16)

    def forward(self, src_tokens: torch.Tensor, src_lengths: Optional[torch.Tensor] = None, **kwargs):
        tokens = src_tokens.t()
        pad = tokens.eq(self.padding_idx)
        weight = self.embed_tokens.weight
        inputs = embedded_tokens(self.embed_tokens, tokens, self.cfg.dropout_embed, self.training)
        keep_states = self.attention == "hidden"
        out = self.rnn(inputs, ~pad if bool(pad.any()) else None, return_outputs=keep_states)
        memory = list(out.memory)
        if keep_states:  # attention over every state keeps them all: count them
            kept = 32.0 * out.outputs.numel()
            memory[-1] = memory[-1] + MemoryStats(0.0, kept, kept)
        return {
            "final_state": [v for layer in out.final for v in layer],
            "slices": [out.slices] if out.slices.numel() else [],
            "hidden": [out.outputs] if self.attention == "hidden" else [],
            "src_tokens": [tokens] if uses_embeddings(self.attention) else [],
            "src_pad": [pad],
            "src_embed": [weight] if uses_embeddings(self.attention) else [],
            "memory": memory,
        }

    def reorder_encoder_out(self, encoder_out, new_order):
        """Reorder the per-sentence tensors; ``memory`` (per-layer bit counts of the batch's
        forward, not per sentence) stays as it is."""
        out = dict(encoder_out)
        out["final_state"] = [v.index_select(0, new_order) for v in encoder_out["final_state"]]
        for key in ("slices", "hidden", "src_tokens", "src_pad"):
            out[key] = [v.index_select(1, new_order) for v in encoder_out[key]]
        return out

    def max_positions(self):
        return self.cfg.max_source_positions


class RevRNNDecoder(ReversibleDecoder):
    def __init__(self, cfg, dictionary, embed_tokens: nn.Embedding, src_padding_idx: int):
        hidden = cfg.decoder_hidden_size
        rnn = build_stack(cfg, cfg.decoder_embed_dim, [hidden] * cfg.decoder_layers, 0, chunk_size=DECODER_CHUNK)
        super().__init__(cfg, dictionary, embed_tokens, rnn)
        self.src_padding_idx = src_padding_idx
        self.attention = str(cfg.attention)
        if self.attention != "none":
            ann = _slice_dim(cfg) + (cfg.encoder_embed_dim if uses_embeddings(self.attention) else 0)
            ann += cfg.encoder_hidden_size if self.attention == "hidden" else 0
            self.attn_in = uniform_parameter(hidden, ann)
            self.attn_out = uniform_parameter(hidden, ann + hidden)

    def _head(self, encoder_out, batch: int, **loss) -> OutputHead:
        tensors = self.output_tensors()
        if self.attention != "none":
            weight = self.embed_tokens.weight
            if self.training:
                tensors["out_mask"] = variational_mask(
                    (batch, self.cfg.decoder_hidden_size), self.cfg.dropout_out, weight
                )
            tensors.update(w_a=self.attn_in, w_c=self.attn_out)
            for key in ("hidden", "slices", "src_embed", "src_tokens", "src_pad"):
                tensors[key] = encoder_out[key][0] if encoder_out[key] else None
        return OutputHead(self.src_padding_idx, **tensors, **loss)

    def _initial_state(self, encoder_out) -> "list[tuple[torch.Tensor, ...]]":
        nv = self.rnn.config.nvars
        flat = encoder_out["final_state"]
        return [tuple(flat[i : i + nv]) for i in range(0, len(flat), nv)]

    def forward(
        self, prev_output_tokens, encoder_out=None, incremental_state=None, fused_loss=None, target=None, **kwargs
    ):
        if incremental_state is not None:
            tokens = prev_output_tokens[:, -1:]
            outputs = self.advance(tokens, incremental_state, self._initial_state(encoder_out))
            logits, attn = self._head(encoder_out, tokens.shape[0]).attend(outputs[0])
            return logits.unsqueeze(1), {"attn": None if attn is None else [attn.t().unsqueeze(1)]}
        tokens = prev_output_tokens.t()
        head = self._head(encoder_out, tokens.shape[1], **self.loss_request(fused_loss, target))
        out = self.rnn(self.inputs(tokens), None, self._initial_state(encoder_out), head=head)
        return self.run_outputs(out, {"enc": total(encoder_out["memory"]), "dec": total(out.memory)})

    def max_positions(self):
        return self.cfg.max_target_positions


@registry.model("rev_rnn", dataclass=RevRNNConfig)
class RevRNNModel(FairseqEncoderDecoderModel):
    """Reversible RNN encoder-decoder (MacKay et al. 2018) with Luong attention."""

    supports_fused_loss = True

    @classmethod
    def build_model(cls, cfg, task):
        check_options(
            cfg,
            positive=("encoder_embed_dim", "encoder_layers", "decoder_embed_dim", "decoder_layers",
                      "max_source_positions", "max_target_positions"),
            even=("encoder_hidden_size", "decoder_hidden_size"),
        )  # fmt: skip
        if cfg.decoder_layers != cfg.encoder_layers or cfg.decoder_hidden_size != cfg.encoder_hidden_size:
            raise ValueError(
                "--decoder-layers/--decoder-hidden-size must equal --encoder-layers/--encoder-hidden-size: the decoder "
                f"starts from the encoder's final state (got {cfg.decoder_layers}x{cfg.decoder_hidden_size} vs "
                f"{cfg.encoder_layers}x{cfg.encoder_hidden_size})"
            )
        _slice_dim(cfg)
        src, tgt = task.source_dictionary, task.target_dictionary
        enc_embed = embedding(len(src), cfg.encoder_embed_dim, src.pad())
        if cfg.share_all_embeddings:
            if src != tgt:
                raise ValueError(
                    "--share-all-embeddings needs a joined dictionary (fairseq-preprocess --joined-dictionary)"
                )
            if cfg.encoder_embed_dim != cfg.decoder_embed_dim:
                raise ValueError("--share-all-embeddings needs --encoder-embed-dim equal to --decoder-embed-dim")
            dec_embed = enc_embed
        else:
            dec_embed = embedding(len(tgt), cfg.decoder_embed_dim, tgt.pad())
        encoder = RevRNNEncoder(cfg, src, enc_embed)
        decoder = RevRNNDecoder(cfg, tgt, dec_embed, src.pad())
        return cls(encoder, decoder)


ARCHITECTURES: dict[str, dict] = {
    "rev_lstm": {},
    "rev_gru": {"cell_type": "gru"},
    # The paper's Multi30K models: 1 layer of 300 units, embeddings 300, Emb+20H, 3 bits.
    "rev_lstm_multi30k": {"encoder_embed_dim": 300, "encoder_hidden_size": 300},
    "rev_gru_multi30k": {"cell_type": "gru", "encoder_embed_dim": 300, "encoder_hidden_size": 300},
    # IWSLT 2016: 2 layers of 600 units, embeddings 600, Emb+60H, 5 bits.
    "rev_lstm_iwslt": {"encoder_embed_dim": 600, "encoder_hidden_size": 600, "encoder_layers": 2,
                       "attention_slice_dim": 60, "max_forget_bits": "5"},
    "rev_gru_iwslt": {"cell_type": "gru", "encoder_embed_dim": 600, "encoder_hidden_size": 600, "encoder_layers": 2,
                      "attention_slice_dim": 60, "max_forget_bits": "5"},
}  # fmt: skip
"""``--arch`` names: what each sets over the :class:`RevRNNConfig` defaults (the decoder's sizes
follow the encoder's), nothing else. A test checks that no setting repeats a default."""


def _architecture(args, settings: dict) -> None:
    """An architecture's settings, without its slice size when the attention keeps no slice."""
    if not uses_slice(str(safe_getattr(args, "attention", RevRNNConfig.attention))):
        settings = {k: v for k, v in settings.items() if k != "attention_slice_dim"}
    apply_architecture(args, RevRNNConfig, settings)


for _name, _settings in ARCHITECTURES.items():
    registry.architecture("rev_rnn", _name)(functools.partial(_architecture, settings=_settings))
