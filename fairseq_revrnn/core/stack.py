"""``ReversibleRNN``: a multi-layer RevGRU/RevLSTM as an ``nn.Module``."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Optional, Sequence, Union

import torch
from torch import nn

from .buffer import check_overflow_mode
from .call import LayerParams, StackCall, StackConfig, per_layer
from .cells import get_cell
from .discrete import ESTIMATORS
from .dropout import SeededMask, StackMasks
from .engine import ExactState, advance, run_ordinary, trace_exact
from .fixed_point import RH, RZ, Forgetting, check_ceiling, check_radices
from .function import ReversibleStackFunction
from .halfstep import check_compile_mode, resolve_compile
from .head import StepHead
from .inputs import DenseInput, EmbeddingInput
from .memory import MemoryStats
from .noise import DEFAULT_TEMPERATURE, GATE_MODES, GateNoise

Tensor = torch.Tensor
logger = logging.getLogger(__name__)


@dataclass
class RNNOutput:
    """``outputs``: top layer's outputs (T, B, H) after output dropout, or empty;
    ``slices``: the top layer's first ``slice_dim`` units of h1 (T, B, k);
    ``final``: per layer, the final ``h`` (and ``c`` for the LSTM), (B, H);
    ``memory``: per-layer bit counts of this call."""

    outputs: Tensor
    slices: Tensor
    final: list[tuple[Tensor, ...]]
    memory: list[MemoryStats]


def _check_probability(name: str, p: float) -> float:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be in [0, 1); got {p!r}")
    return float(p)


class ReversibleRNN(nn.Module):
    r"""Reversible recurrent stack (docs/design.md, sections 2-4).

    Each layer's state is split in halves updated one after the other, each
    half's gates reading the input and the other half only. RevGRU, per half::

        [z1, r1] = sigma(W1 [x; h2]);  g1 = tanh(U1 [x; r1 * h2]);  h1 <- z1*h1 + (1-z1)*g1

    RevLSTM, per half (state h and c)::

        [f1, i1, o1, p1] = sigma(W1 [x; h2]),  g1 = tanh(.);  c1 <- f1*c1 + i1*g1;  h1 <- p1*h1 + o1*tanh(c1)

    then the same for half 2 from ``[x; h1]``. Forget values (z, f, p) lie in
    ``(2^-k, 1)`` for ``max_forget_bits=k``; states are fixed point and every
    multiplication by a forget value saves the bits it destroys, so a step can
    be undone exactly.

    Args:
        cell_type: ``"gru"`` or ``"lstm"``.
        input_size: features of the first layer's input, D.
        hidden_sizes: hidden size of each layer (even: two halves).
        max_forget_bits: k, the most bits forgotten per unit and step (1..10),
            or None for no limit.
        no_forgetting: the NF variant (forget values 1, additive updates only).
        max_hidden_forget: cap on the forget value of ``h`` (RevLSTM's ``p``,
            RevGRU's ``z``): a RevLSTM's ``|h|`` stays below ``1 / (1 - cap)``.
        slice_dim: first units of the top layer's h1 kept at every step (for
            attention); they skip the buffer because they are stored anyway.
        dropout_in, dropout_out, dropout_hidden: variational dropout on the
            first layer's input and each layer's output, DropConnect on the
            hidden-to-hidden weights; one mask per batch.
        reversible: train without storing per-step states (the reversible
            Function); False runs the same cells, with bit-identical values,
            in ordinary autograd mode.
        chunk_size: most steps per input-projection matrix multiply.
        compile: ``"auto"``, ``"on"`` or ``"off"``: run each half-step as
            kernels fused by ``torch.compile`` (auto: when the device has a
            compiler). Compiled and eager models differ in low bits; each is
            exact with itself (see ``halfstep``).
        overflow: how buffers are kept from overflowing (``buffer.overflow_plan``):
            ``"read"`` (push only full buffers; reads the device when a bound
            runs out), ``"margin"`` (at most one read per 16 / bits steps),
            ``"bound"`` (no reads, no host syncs; more pushes) or ``"auto"``
            (read on a CPU, margin elsewhere).
        gates: the input and forget gates (RevLSTM's f, i and p, RevGRU's z):
            ``"sigmoid"`` (the paper's cells), ``"sharpened"``
            (``sigmoid(a / tau)``) or ``"gumbel"`` (G2 gates, Li et al. 2018:
            ``sigmoid((a + log U - log(1 - U)) / tau)`` while training, the
            noise regenerated from a seed for the reverse; plain sigmoids in
            evaluation).
        gate_temperature: tau of sharpened and Gumbel gates, or of discrete
            forgetting's Gumbel-softmax (None: 0.2 sharpened and 0.9 Gumbel as
            in the G2 paper, 1 for discrete forgetting).
        discrete_forgetting: appendix D: forget values ``2**-k``, ``k`` in
            ``0..max_forget_bits``, sampled per unit and step while training
            (``core.discrete``); exact shifts, the same buffer.
        df_estimator: its straight-through gradient: ``"gumbel"``
            (Gumbel-softmax, the paper's choice) or ``"categorical"``.
        hidden_radix, forget_radix: RH and RZ of the fixed point (the paper's
            23 and 10): states are multiples of ``2**-hidden_radix``, forget
            values of ``2**-forget_radix``; ``fixed_point.check_radices`` says
            what int64 holds.

    Shapes: inputs (T, B, D) or an input provider; ``valid`` (T, B);
    ``state`` per layer ``(h, [c])`` of (B, H_l). Parameters per layer l:
    ``weight_ih_l{l}`` (2 G, D_l), ``bias_l{l}`` (2 G), ``weight_hh1_l{l}`` and
    ``weight_hh2_l{l}`` (G, H_l / 2), with G = gates per unit x H_l / 2 (3 for
    the GRU, 5 for the LSTM).
    """

    def __init__(
        self,
        cell_type: str,
        input_size: int,
        hidden_sizes: Sequence[int],
        max_forget_bits: Optional[int] = 3,
        no_forgetting: bool = False,
        max_hidden_forget: Optional[float] = None,
        slice_dim: int = 0,
        dropout_in: float = 0.0,
        dropout_out: float = 0.0,
        dropout_hidden: float = 0.0,
        reversible: bool = True,
        chunk_size: int = 16,
        compile: str = "auto",
        overflow: str = "auto",
        gates: str = "sigmoid",
        gate_temperature: Optional[float] = None,
        hidden_radix: int = RH,
        forget_radix: int = RZ,
        discrete_forgetting: bool = False,
        df_estimator: str = "gumbel",
    ) -> None:
        super().__init__()
        cell = get_cell(cell_type)
        hidden_sizes = list(hidden_sizes)
        if not hidden_sizes:
            raise ValueError("hidden_sizes must name at least one layer")
        for h in hidden_sizes:
            if isinstance(h, bool) or not isinstance(h, int) or h < 2 or h % 2:
                raise ValueError(f"hidden sizes must be even integers >= 2 (two halves); got {h!r}")
        if input_size < 1:
            raise ValueError(f"input_size must be >= 1; got {input_size!r}")
        half = hidden_sizes[-1] // 2
        if isinstance(slice_dim, bool) or not isinstance(slice_dim, int) or not 0 <= slice_dim <= half:
            raise ValueError(
                f"slice_dim must be an integer in 0..{half} (half the top layer's hidden size); got {slice_dim!r}"
            )
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1; got {chunk_size!r}")
        if gates not in GATE_MODES:
            raise ValueError(f"gates must be one of {', '.join(GATE_MODES)}; got {gates!r}")
        if discrete_forgetting and gates != "sigmoid":
            raise ValueError(
                f"gates={gates!r} and discrete_forgetting exclude each other: both replace the forget gates"
            )
        if df_estimator not in ESTIMATORS:
            raise ValueError(f"df_estimator must be one of {', '.join(ESTIMATORS)}; got {df_estimator!r}")
        if gate_temperature is None:
            gate_temperature = DEFAULT_TEMPERATURE.get("discrete" if discrete_forgetting else gates, 1.0)
        if isinstance(gate_temperature, bool) or not 0 < gate_temperature < math.inf:
            raise ValueError(f"gate_temperature must be a number > 0; got {gate_temperature!r}")
        check_radices(hidden_radix, forget_radix)
        forgetting = Forgetting(
            None if no_forgetting else max_forget_bits,
            disabled=no_forgetting,
            radix=forget_radix,
            discrete=discrete_forgetting,
        )
        check_ceiling("max_hidden_forget", max_hidden_forget, forgetting.max_bits, no_forgetting, forget_radix)
        forgetting = replace(forgetting, hidden_ceiling=max_hidden_forget)
        self.config = StackConfig(
            cell,
            input_size,
            hidden_sizes,
            forgetting,
            slice_dim,
            chunk_size,
            check_overflow_mode(overflow),
            gates,
            float(gate_temperature),
            hidden_radix,
            df_estimator,
        )
        self.cell_type = cell_type
        self.compile = check_compile_mode(compile)
        self._reported: set[tuple[str, bool]] = set()
        self.reversible = reversible
        self.dropout_in = _check_probability("dropout_in", dropout_in)
        self.dropout_out = _check_probability("dropout_out", dropout_out)
        self.dropout_hidden = _check_probability("dropout_hidden", dropout_hidden)
        sizes_in = [input_size] + hidden_sizes[:-1]
        for li, (d, h) in enumerate(zip(sizes_in, hidden_sizes)):
            g = cell.columns(forgetting) * (h // 2)
            shapes = LayerParams(weight_ih=(2 * g, d), bias=(2 * g,), weight_hh1=(g, h // 2), weight_hh2=(g, h // 2))
            for name, shape in zip(LayerParams._fields, shapes):
                self.register_parameter(f"{name}_l{li}", nn.Parameter(torch.empty(shape)))
        self.reset_parameters()

    def extra_repr(self) -> str:
        cfg = self.config
        fg = cfg.forgetting
        forget = "no_forgetting" if fg.disabled else f"max_forget_bits={fg.max_bits}"
        parts = [self.cell_type, f"input_size={cfg.input_size}", f"hidden_sizes={cfg.hidden_sizes}", forget]
        if fg.hidden_ceiling is not None:
            parts.append(f"max_hidden_forget={fg.hidden_ceiling}")
        if cfg.slice_dim:
            parts.append(f"slice_dim={cfg.slice_dim}")
        for name in ("dropout_in", "dropout_out", "dropout_hidden"):
            if getattr(self, name):
                parts.append(f"{name}={getattr(self, name)}")
        if not self.reversible:
            parts.append("reversible=False")
        if self.compile != "auto":
            parts.append(f"compile={self.compile!r}")
        if cfg.overflow != "auto":
            parts.append(f"overflow={cfg.overflow!r}")
        if (cfg.hidden_radix, fg.radix) != (RH, RZ):
            parts.append(f"hidden_radix={cfg.hidden_radix}, forget_radix={fg.radix}")
        if cfg.gates != "sigmoid":
            parts.append(f"gates={cfg.gates!r}, gate_temperature={cfg.temperature}")
        if fg.discrete:
            parts.append(
                f"discrete_forgetting=True, df_estimator={cfg.estimator!r}, gate_temperature={cfg.temperature}"
            )
        return ", ".join(parts)

    def reset_parameters(self) -> None:
        for li, h in enumerate(self.config.hidden_sizes):
            bound = (2.0 / h) ** 0.5
            for p in self.layer_parameters(li):
                nn.init.uniform_(p, -bound, bound)

    def layer_parameters(self, layer: int) -> LayerParams:
        return LayerParams(*(getattr(self, f"{name}_l{layer}") for name in LayerParams._fields))

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_sizes[-1]

    def sample_masks(self, batch: int) -> StackMasks:
        """Dropout masks for one batch (all None in eval mode)."""
        cfg = self.config
        masks = StackMasks()
        train = self.training
        for li, h in enumerate(cfg.hidden_sizes):
            d = cfg.input_size if li == 0 else cfg.hidden_sizes[li - 1]
            masks.inputs.append(SeededMask.draw((batch, d), self.dropout_in) if train and li == 0 else None)
            masks.outputs.append(SeededMask.draw((batch, h), self.dropout_out) if train else None)
            if train and self.dropout_hidden > 0:
                w1 = self.layer_parameters(li).weight_hh1
                masks.hidden.append(
                    (
                        SeededMask.draw(tuple(w1.shape), self.dropout_hidden),
                        SeededMask.draw(tuple(w1.shape), self.dropout_hidden),
                    )
                )
            else:
                masks.hidden.append(None)
        return masks

    def forward(
        self,
        inputs: Union[Tensor, DenseInput, EmbeddingInput],
        valid: Optional[Tensor] = None,
        state: Optional[list[tuple[Tensor, ...]]] = None,
        return_outputs: bool = True,
        head: Optional[StepHead] = None,
    ) -> RNNOutput:
        """Run the stack over ``inputs`` (T, B, D) or an input provider.

        ``valid`` (T, B) bool marks real positions; padding leaves state and
        buffers untouched. ``state`` is the initial state per layer as in
        ``RNNOutput.final`` (zeros if None). With a ``head``, ``outputs`` holds
        the head's per-step outputs, computed inside the reversible Function so
        that the top layer's outputs are never kept.
        """
        call, h0, params = self._prepare(inputs, valid, state, return_outputs)
        call.head = head
        self._check_finite(call, h0)
        if self.reversible:
            outs = ReversibleStackFunction.apply(call, *call.flat_inputs(h0, params))
        else:
            outs = run_ordinary(call, h0, params)
        out, slices, memory, *finals = outs
        return RNNOutput(out, slices, [tuple(v) for v in per_layer(finals, self.config.num_layers)], memory)

    def advance(
        self,
        inputs: Union[Tensor, DenseInput, EmbeddingInput],
        state: Optional[ExactState] = None,
        initial: Optional[list[tuple[Tensor, ...]]] = None,
    ) -> tuple[Tensor, ExactState]:
        """Continue a sequence without autograd (incremental decoding).

        Starts from ``state`` (an :class:`ExactState` returned earlier) or from
        float ``initial`` states; returns the top layer's outputs (T, B, H) and
        the new exact state. Values equal those of one full :meth:`forward`.
        """
        call, h0, params = self._prepare(inputs, None, initial, True)
        return advance(call, params, h0=h0, state=state)

    def trace_exact(self, inputs, valid: Optional[Tensor] = None, state=None):
        """Integer states before every step, forward and as recovered by exact
        reversal, plus the number of buffer overflows (see ``engine.trace_exact``)."""
        call, h0, params = self._prepare(inputs, valid, state, False)
        return trace_exact(call, h0, params)

    def _check_finite(self, call: StackCall, h0: list[list[Tensor]]) -> None:
        """Stop at a non-finite parameter, input or state: in fixed point it
        would turn into silent garbage rather than NaN."""
        checks = [(f"parameter {name}", p) for name, p in self.named_parameters()]
        checks += [("input", t) for t in call.inputs.tensors() if t.is_floating_point()]
        checks += [(f"initial state of layer {li}", v) for li, layer in enumerate(h0) for v in layer]
        flags = torch.stack([torch.isfinite(t).all() for _, t in checks])
        if not bool(flags.all()):
            bad = [name for (name, _), ok in zip(checks, flags.tolist()) if not ok]
            raise FloatingPointError(f"non-finite values in the reversible {self.cell_type} stack: {', '.join(bad)}")

    def _prepare(self, inputs, valid, state, return_outputs: bool):
        src = DenseInput(inputs) if isinstance(inputs, Tensor) else inputs
        T, B, D = src.shape
        cfg = self.config
        if D != cfg.input_size:
            raise ValueError(f"inputs have {D} features but input_size is {cfg.input_size}")
        p0 = self.weight_ih_l0
        if valid is not None:
            if tuple(valid.shape) != (T, B):
                raise ValueError(f"valid must have shape {(T, B)}; got {tuple(valid.shape)}")
            valid = valid.to(torch.bool)
        h0 = self._initial_state(state, B, p0)
        params = [self.layer_parameters(li) for li in range(cfg.num_layers)]
        compiled = resolve_compile(self.compile, p0.device, p0.dtype)
        self._report(p0.device, compiled)
        discrete = cfg.forgetting.discrete
        noisy = self.training and (cfg.gates == "gumbel" or discrete)
        if discrete:
            tau = cfg.temperature if self.training and cfg.estimator == "gumbel" else 1.0
        else:
            tau = cfg.temperature if noisy or cfg.gates == "sharpened" else 1.0
        call = StackCall(
            cfg,
            src,
            self.sample_masks(B),
            valid,
            return_outputs,
            p0.dtype,
            compiled=compiled,
            gate_noise=GateNoise.draw("gumbel" if discrete else "logistic") if noisy else None,
            gate_temperature=tau,
        )
        return call, h0, params

    def _report(self, device: torch.device, compiled: bool) -> None:
        """Log once per device how the half-steps run."""
        if (device.type, compiled) in self._reported:
            return
        self._reported.add((device.type, compiled))
        how = "fused by torch.compile" if compiled else "eagerly"
        logger.info(
            "reversible %s half-steps on %s run %s (compile=%r)", self.cell_type, device.type, how, self.compile
        )

    def _initial_state(self, state, batch: int, like: Tensor) -> list[list[Tensor]]:
        cfg = self.config
        if state is None:
            return [[like.new_zeros(batch, h) for _ in range(cfg.nvars)] for h in cfg.hidden_sizes]
        if len(state) != cfg.num_layers:
            raise ValueError(f"state must have one entry per layer ({cfg.num_layers}); got {len(state)}")
        out = []
        for li, (layer_state, h) in enumerate(zip(state, cfg.hidden_sizes)):
            if len(layer_state) != cfg.nvars:
                raise ValueError(
                    f"state of layer {li} must hold {cfg.cell.state_names}; got {len(layer_state)} tensors"
                )
            for v in layer_state:
                if tuple(v.shape) != (batch, h):
                    raise ValueError(f"state of layer {li} must have shape {(batch, h)}; got {tuple(v.shape)}")
            out.append(list(layer_state))
        return out
