"""Options and builders shared by the translation model and the language model."""

from __future__ import annotations

import dataclasses
from argparse import Namespace
from typing import Optional, Sequence

import torch
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import FairseqIncrementalDecoder
from fairseq.utils import safe_getattr
from omegaconf import DictConfig
from torch import nn

from ..core import EmbeddingInput, ReversibleRNN, RNNOutput
from ..core.buffer import OVERFLOW_MODES
from ..core.discrete import ESTIMATORS
from ..core.dropout import variational_mask
from ..core.fixed_point import MAX_FORGET_RADIX, MAX_RADIX_SUM, RH, RZ, check_ceiling, check_radices
from ..core.halfstep import COMPILE_MODES
from ..core.loss import TokenLoss
from ..core.memory import MemoryStats
from ..core.noise import GATE_MODES
from ..units.g2_lstm import gate_settings

CELL_CHOICES = ChoiceEnum(["lstm", "gru"])
COMPILE_CHOICES = ChoiceEnum(list(COMPILE_MODES))
OVERFLOW_CHOICES = ChoiceEnum(list(OVERFLOW_MODES))
GATE_CHOICES = ChoiceEnum(list(GATE_MODES))
ESTIMATOR_CHOICES = ChoiceEnum(list(ESTIMATORS))
GATE_OPTION_NAMES = {"gates": "--gates", "temperature": "--gate-temperature", "gumbel_fraction": "--gumbel-fraction"}


def gate_options(cfg) -> dict:
    """``--gates``, ``--gate-temperature`` and ``--discrete-forgetting`` with its
    estimator, checked (errors name them), as ``ReversibleRNN`` arguments."""
    gates, tau = str(safe_getattr(cfg, "gates", "sigmoid")), safe_getattr(cfg, "gate_temperature", None)
    if discrete(cfg):
        if gates != "sigmoid":
            raise ValueError(
                f"--gates {gates} and --discrete-forgetting exclude each other: both change the forget gates"
            )
        if tau is not None and (isinstance(tau, bool) or not 0 < tau < float("inf")):
            raise ValueError(f"--gate-temperature must be a number > 0; got {tau!r}")
        options = {"discrete_forgetting": True, "df_estimator": str(cfg.df_estimator)}
    else:
        gates, tau, _ = gate_settings(gates, tau, 1.0, GATE_OPTION_NAMES)
        options = {"gates": gates}
    return options if tau is None else {**options, "gate_temperature": tau}


def discrete(cfg) -> bool:
    """``--discrete-forgetting`` (absent from checkpoints written before it)."""
    return bool(safe_getattr(cfg, "discrete_forgetting", False))


FORGET_BITS = [str(b) for b in range(1, MAX_FORGET_RADIX + 1)] + ["none"]
FORGET_BITS_CHOICES = ChoiceEnum(FORGET_BITS)

HELP = {
    "cell_type": "reversible cell: lstm (RevLSTM) or gru (RevGRU)",
    "max_forget_bits": "forget at most this many bits per unit and step (1..--forget-radix) or 'none' for no limit",
    "no_forgetting": "no-forgetting (NF) variant: forget values fixed at 1, purely additive updates",
    "max_hidden_forget": "upper bound on the forget value of h (RevLSTM's p in h <- p*h + o*tanh(c), RevGRU's z): "
    "a number in (2^-k, 1) for --max-forget-bits k, 'none' (the paper's cells: up to 1023/1024, so a RevLSTM's |h| "
    "can grow towards 1000 on long sequences), or 'auto': 0.9375 for RevLSTM (|h| < 16), none for RevGRU (its h is "
    "a convex combination, |h| <= 1). Costs at least -log2(bound) bits per unit and step",
    "no_reversible": "train in ordinary autograd mode (every step stored) instead of reversibly",
    "rev_compile": "run each half-step as kernels fused by torch.compile: on, off, or auto (when the device has a "
    "compiler: C++ for a CPU, Triton for a GPU; TORCH_COMPILE_DISABLE=1 turns it off). The first batches compile "
    "(seconds per graph, logged); compiled and eager models differ in low bits, each exact with itself",
    "rev_overflow": "how buffers are kept from overflowing: read (push only full buffers; a device read when a "
    "bound runs out), margin (at most one read per 16/bits steps), bound (no reads, no host syncs; more pushes), or "
    "auto (read on a CPU, margin on an accelerator)",
    "gates": "input and forget gates (RevLSTM's f, i and p, RevGRU's z): sigmoid (the paper's cells), sharpened "
    "(sigmoid(a / tau)) or gumbel (G2 gates of Li et al. 2018: Gumbel noise while training, regenerated for the "
    "reverse; plain sigmoids in evaluation)",
    "gate_temperature": "tau of sharpened or gumbel gates (default: the G2 paper's, 0.2 sharpened, 0.9 gumbel), or of "
    "--discrete-forgetting's Gumbel-softmax (default 1)",
    "hidden_radix": f"RH: hidden states are fixed-point multiples of 2^-RH (default {RH}, the paper's)",
    "forget_radix": f"RZ: forget values are multiples of 2^-RZ (default {RZ}, the paper's); at most "
    f"{MAX_FORGET_RADIX}, and RH + RZ at most {MAX_RADIX_SUM} (int64 holds the products)",
    "discrete_forgetting": "discrete forgetting (appendix D): forget values 2^-k, k in 0..--max-forget-bits, sampled "
    "per unit and step while training (the most likely one in evaluation); a step shifts off exactly k bits",
    "df_estimator": "the straight-through gradient of --discrete-forgetting: gumbel (Gumbel-softmax with "
    "--gate-temperature, default 1; the paper's choice) or categorical",
    "dropout_in": "variational dropout on the first layer's inputs (one mask per sequence)",
    "dropout_out": "variational dropout on each layer's outputs (one mask per sequence)",
    "dropout_hidden": "DropConnect on the hidden-to-hidden weights (one mask per batch)",
    "dropout_embed": "embedding dropout: drop whole word types (one mask per batch)",
}


def forget_bits(value) -> Optional[int]:
    """Parse ``--max-forget-bits`` ('1'..'10' or 'none')."""
    text = str(value).lower()
    if text not in FORGET_BITS:
        raise ValueError(f"--max-forget-bits must be one of {FORGET_BITS}; got {value!r}")
    return None if text == "none" else int(text)


LSTM_HIDDEN_FORGET = 0.9375  # 1 - 2**-4: a RevLSTM's |h| stays below 16


def hidden_forget(cfg) -> Optional[float]:
    """Parse ``--max-hidden-forget``: a number, 'none', or 'auto' (the cell's default)."""
    text = str(cfg.max_hidden_forget).lower()
    if text == "auto":
        lstm = str(cfg.cell_type) == "lstm"
        return LSTM_HIDDEN_FORGET if lstm and not cfg.no_forgetting and not discrete(cfg) else None
    if text == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(
            f"--max-hidden-forget must be a number in (0, 1), 'none' or 'auto'; got {cfg.max_hidden_forget!r}"
        ) from None


def check_even(option: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 2 or value % 2:
        raise ValueError(f"{option} must be an even integer >= 2 (reversible cells split it in halves); got {value}")
    return value


def option_name(field_name: str) -> str:
    """The command-line spelling of a config field: ``dropout_in`` -> ``--dropout-in``."""
    return "--" + field_name.replace("_", "-")


DROPOUTS = ("dropout_in", "dropout_out", "dropout_hidden", "dropout_embed")


def check_options(cfg, positive: Sequence[str], even: Sequence[str]) -> None:
    """Refuse numeric options out of range at model build, naming the option and what is allowed:
    ``positive`` integers >= 1, ``even`` hidden sizes, the dropouts, the forget bound."""
    for name in positive:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{option_name(name)} must be an integer >= 1; got {value!r}")
    for name in even:
        check_even(option_name(name), getattr(cfg, name))
    for name in DROPOUTS:
        p = getattr(cfg, name)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise ValueError(f"{option_name(name)} must be a probability in [0, 1); got {p!r}")
    disabled = bool(cfg.no_forgetting)
    bits = None if disabled else forget_bits(cfg.max_forget_bits)
    hidden_radix, forget_radix = radices(cfg)
    check_radices(hidden_radix, forget_radix, ("--hidden-radix", "--forget-radix"))
    if bits is not None and bits > forget_radix:
        raise ValueError(f"--max-forget-bits must be at most --forget-radix ({forget_radix}); got {bits}")
    if discrete(cfg) and (bits is None or disabled):
        raise ValueError("--discrete-forgetting needs --max-forget-bits 1..--forget-radix (the largest shift)")
    if discrete(cfg) and hidden_forget(cfg) is not None:
        raise ValueError("--max-hidden-forget bounds fractional forget values; with --discrete-forgetting use auto")
    check_ceiling("--max-hidden-forget", hidden_forget(cfg), bits, disabled, forget_radix)
    gate_options(cfg)


def radices(cfg) -> tuple[int, int]:
    """``--hidden-radix`` and ``--forget-radix`` (the paper's for checkpoints written without them)."""
    return safe_getattr(cfg, "hidden_radix", RH), safe_getattr(cfg, "forget_radix", RZ)


def build_stack(cfg, input_size: int, sizes: list[int], slice_dim: int, chunk_size: int) -> ReversibleRNN:
    """A :class:`ReversibleRNN` with the cell, forgetting and dropout options of ``cfg``."""
    if not sizes:
        raise ValueError("the number of layers must be >= 1")
    return ReversibleRNN(
        str(cfg.cell_type),
        input_size,
        sizes,
        max_forget_bits=forget_bits(cfg.max_forget_bits),
        no_forgetting=bool(cfg.no_forgetting),
        max_hidden_forget=hidden_forget(cfg),
        slice_dim=slice_dim,
        dropout_in=cfg.dropout_in,
        dropout_out=cfg.dropout_out,
        dropout_hidden=cfg.dropout_hidden,
        reversible=not cfg.no_reversible,
        chunk_size=chunk_size,
        compile=str(cfg.rev_compile),
        overflow=str(safe_getattr(cfg, "rev_overflow", "auto")),
        **gate_options(cfg),
        **dict(zip(("hidden_radix", "forget_radix"), radices(cfg))),
    )


def embedding(num: int, dim: int, padding_idx: int) -> nn.Embedding:
    emb = nn.Embedding(num, dim, padding_idx=padding_idx)
    nn.init.uniform_(emb.weight, -0.1, 0.1)
    nn.init.constant_(emb.weight[padding_idx], 0)
    return emb


def embedded_tokens(embed: nn.Embedding, tokens: torch.Tensor, p: float, training: bool) -> EmbeddingInput:
    """(time, batch) tokens embedded inside the reversible Function, with
    embedding dropout over word types (one mask per batch) while training."""
    weight = embed.weight
    mask = variational_mask((weight.shape[0],), p, weight) if training else None
    return EmbeddingInput(tokens, weight, embed.padding_idx, mask)


class ReversibleDecoder(FairseqIncrementalDecoder):
    """What the translation decoder and the language model share: embedded
    token inputs, the output projection (optionally tied), and incremental
    decoding that carries the stack's exact state (and buffers) across steps."""

    def __init__(self, cfg, dictionary, embed_tokens: nn.Embedding, rnn: ReversibleRNN):
        super().__init__(dictionary)
        self.cfg = cfg
        self.padding_idx = dictionary.pad()
        self.embed_tokens = embed_tokens
        self.rnn = rnn
        top, embed_dim = rnn.hidden_size, embed_tokens.embedding_dim
        tie = cfg.share_decoder_input_output_embed
        self.out_proj = uniform_parameter(embed_dim, top) if tie and top != embed_dim else None
        self.out_weight = None if tie else uniform_parameter(len(dictionary), top)
        self.out_bias = nn.Parameter(torch.zeros(len(dictionary)))

    def output_tensors(self) -> dict:
        """The output projection's tensors, by :class:`OutputHead` slot."""
        weight = self.embed_tokens.weight if self.out_weight is None else self.out_weight
        return {"w_out": weight, "b_out": self.out_bias, "w_proj": self.out_proj}

    @staticmethod
    def loss_request(fused_loss: Optional[TokenLoss], target: Optional[torch.Tensor]) -> dict:
        """:class:`OutputHead` arguments for a loss fused into the Function (the
        criterion's ``fused_loss`` and ``target`` (batch, time)), or none."""
        if fused_loss is None:
            return {}
        if target is None:
            raise ValueError("a fused loss needs the targets: pass target= with fused_loss=")
        return {"loss": fused_loss, "target": target.t()}

    @staticmethod
    def run_outputs(out: RNNOutput, memory: dict[str, MemoryStats]) -> tuple:
        """The decoder's return value: logits (batch, time, V), or the fused loss's sums, and
        ``extra``. ``extra["memory"]`` holds the bit counts of the passes behind this output by
        part (``enc`` and ``dec``, or ``lm``): they travel with the output, so that the criterion
        logs the counts of the very batch it computes the loss of."""
        if out.outputs.dim() == 1:
            return out.outputs, {"attn": None, "fused_loss": True, "memory": memory}
        return out.outputs.transpose(0, 1), {"attn": None, "memory": memory}

    def inputs(self, tokens: torch.Tensor) -> EmbeddingInput:
        return embedded_tokens(self.embed_tokens, tokens, self.cfg.dropout_embed, self.training)

    def advance(self, tokens: torch.Tensor, incremental_state, initial=None) -> torch.Tensor:
        """Run the newest tokens (batch, 1) from the cached exact state; return (1, batch, H)."""
        cached = self.get_incremental_state(incremental_state, "rnn_state")
        state = None if cached is None else cached["state"]
        outputs, state = self.rnn.advance(self.inputs(tokens.t()), state=state, initial=None if state else initial)
        self.set_incremental_state(incremental_state, "rnn_state", {"state": state})
        return outputs

    def reorder_incremental_state(self, incremental_state, new_order):
        cached = self.get_incremental_state(incremental_state, "rnn_state")
        if cached is not None:
            reordered = {"state": cached["state"].index_select(new_order)}
            self.set_incremental_state(incremental_state, "rnn_state", reordered)


def apply_architecture(args: Namespace | DictConfig, config: type[FairseqDataclass], settings: dict) -> None:
    """Complete ``args`` in place for a named architecture: its ``settings``, then ``config``'s
    defaults, each only where the user left the option unset (absent or None).

    The dataclass is the one place defaults are written. fairseq-train would take them from it
    anyway, but fairseq-hydra-train with ``model._name=<architecture>`` gives the architecture
    function only the user's keys and merges no dataclass, so they are filled here from it (which
    also writes them into the checkpoint's cfg). Tied defaults (``II(...)``) stay interpolations."""
    for name, value in settings.items():
        if safe_getattr(args, name) is None:
            setattr(args, name, value)
    defaults = config()
    for field in dataclasses.fields(config):
        if not field.name.startswith("_") and safe_getattr(args, field.name) is None:
            setattr(args, field.name, getattr(defaults, field.name))


def uniform_parameter(*shape: int) -> nn.Parameter:
    """A new parameter drawn from U(-0.1, 0.1), fairseq's usual RNN initialisation."""
    return nn.Parameter(torch.empty(*shape).uniform_(-0.1, 0.1))
