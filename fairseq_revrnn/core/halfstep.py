"""One half-step as a few fused kernels: exact forward, exact reverse, reverse
with gradients (docs/design.md, section 4).

Each is a pure function of tensors (:mod:`.cells`), run eagerly or through
``torch.compile`` (inductor: C++ on a CPU, Triton on a GPU), which fuses the
gate activations, the quantisation and the buffer arithmetic of a half into
one or two kernels around the matrix products. Forward, reverse and
incremental decoding of a stack all go through the same :class:`HalfStep`, so
the gates they compute are the same bits whichever mode is chosen, and the
reversal stays exact.

Modes (``compile``): ``"on"`` compiles, ``"off"`` runs eagerly, ``"auto"``
compiles when a compiler for the device is present (a C++ compiler for a CPU,
Triton for a GPU). A compiled model and an eager one compute slightly
different low bits; each is exact with itself.
"""

from __future__ import annotations

import functools
import logging
import shutil
import types
from typing import Callable

import torch

from .cells import HalfSpec, HalfState
from .fixed_point import to_float

Tensor = torch.Tensor
logger = logging.getLogger(__name__)

COMPILE_MODES = ("auto", "on", "off")
# Each half-step function has its own code object (see _own_code) with a few
# variants (padding or not, static or dynamic batch, dtype); the limits only
# guard against a runaway, across the many models a test session builds.
RECOMPILE_LIMIT = 64
ACCUMULATED_RECOMPILE_LIMIT = 4096


def check_compile_mode(mode: str) -> str:
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}; got {mode!r}")
    return mode


def compiler_available(device: torch.device) -> bool:
    """Whether ``torch.compile`` can generate kernels for ``device`` here (and is
    not switched off by ``TORCH_COMPILE_DISABLE=1``)."""
    if torch._dynamo.config.disable:
        return False
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return False
        return True
    if device.type == "cpu":
        return any(shutil.which(cc) for cc in ("g++", "c++", "clang++"))
    return False


# Compiled float16/bfloat16 half-steps gave wrong gradients in a test that ran
# after another half-precision model had compiled (tests/test_half_precision.py
# with --compiled); until that is understood, half precision runs eagerly.
COMPILED_DTYPES = (torch.float32, torch.float64)


def resolve_compile(mode: str, device: torch.device, dtype: torch.dtype = torch.float32) -> bool:
    """Whether half-steps of ``dtype`` on ``device`` are compiled under ``mode``."""
    check_compile_mode(mode)
    if mode == "on" and torch._dynamo.config.disable:
        raise ValueError("compile='on' but torch.compile is disabled (TORCH_COMPILE_DISABLE=1); use 'auto' or 'off'")
    if mode == "on" and dtype not in COMPILED_DTYPES:
        raise ValueError(f"compile='on' supports float32 and float64 models, not {dtype}; use 'auto' (eager) or 'off'")
    return dtype in COMPILED_DTYPES and (mode == "on" or (mode == "auto" and compiler_available(device)))


class _Counter:
    """Graphs compiled so far, by all half-steps (recompiles included)."""

    graphs = 0


def compiled_graphs() -> int:
    """How many half-step graphs ``torch.compile`` has built in this process."""
    return _Counter.graphs


def _counting_backend(gm, example_inputs):
    from torch._inductor.compile_fx import compile_fx

    _Counter.graphs += 1
    logger.info("torch.compile: building half-step graph %d (a new cell, option or input shape)", _Counter.graphs)
    return compile_fx(gm, example_inputs)


def _own_code(method: Callable) -> Callable:
    """``method`` bound to a copy of its function with a code object of its own.

    Dynamo keeps compiled variants and guards per code object. Shared by all
    half-steps, a spec's integers (the kept units) would look like a value that
    changes between calls and become symbolic, and every spec would recompile
    the others' variants; with a code object each, a half-step's spec stays a
    constant and its variants are its own.
    """
    fn = method.__func__
    copy = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    return types.MethodType(copy, method.__self__)


def _compile(method: Callable) -> Callable:
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
    config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, ACCUMULATED_RECOMPILE_LIMIT)
    return torch.compile(_own_code(method), backend=_counting_backend, fullgraph=True)


class HalfStep:
    """The exact half-step of ``cell`` under ``spec``: ``forward``, ``reverse`` and
    ``reverse_grad``, compiled or eager."""

    def __init__(self, cell: type, spec: HalfSpec, compiled: bool) -> None:
        self.cell, self.spec, self.compiled = cell, spec, compiled
        wrap = _compile if compiled else (lambda fn: fn)
        self.forward = wrap(self._forward)
        self.reverse = wrap(self._reverse)
        self.reverse_grad = wrap(self._reverse_grad)

    def _forward(self, px: Tensor, h_o: Tensor, w: Tensor, state: HalfState, bufs, ideal: Tensor, valid, noise):
        """New state and buffers, the ideal bit count plus this step's, the new ``h`` as floats."""
        spec = self.spec
        G = self.cell.gates(px, h_o, w, spec, noise)
        new, bufs, lost = self.cell.step(G, state, bufs, spec, valid)
        return new, bufs, ideal if lost is None else ideal + lost, to_float(new.h, spec.dtype, spec.hidden_radix)

    def _reverse(self, px: Tensor, h_o: Tensor, w: Tensor, state: HalfState, bufs, valid, kept_old, noise):
        """The state and buffers before the step, and the old ``h`` as floats."""
        spec = self.spec
        G = self.cell.gates(px, h_o, w, spec, noise)
        old, bufs = self.cell.unstep(G, state, bufs, spec, valid, kept_old)
        return old, bufs, to_float(old.h, spec.dtype, spec.hidden_radix)

    def _reverse_grad(
        self,
        px: Tensor,
        h_o: Tensor,
        w: Tensor,
        state: HalfState,
        h_new: Tensor,
        bufs,
        valid,
        vf,
        kept_old,
        dnew: HalfState,
        dh_other: Tensor,
        noise,
    ):
        """:meth:`_reverse` plus the step's gradients: w.r.t. the old state, the
        other half (added to ``dh_other``) and the pre-activations, and the
        hidden-to-hidden products' inputs."""
        spec, cell = self.spec, self.cell
        dtype = spec.dtype
        G = cell.gates(px, h_o, w, spec, noise)
        old, bufs = cell.unstep(G, state, bufs, spec, valid, kept_old)
        old_f = HalfState(*(to_float(v, dtype, spec.hidden_radix) for v in old.present()))
        new_f = HalfState(h_new, *(to_float(v, dtype, spec.hidden_radix) for v in state.present()[1:]))
        g = cell.grad(G, old_f, new_f, h_o, w, dnew, spec, vf)
        return old, bufs, old_f.h, g.dstate, dh_other + g.dh_other, g.dpre, g.hh_inputs


@functools.cache
def half_step(cell: type, spec: HalfSpec, compiled: bool) -> HalfStep:
    """The shared :class:`HalfStep` for a cell and spec: models with the same
    configuration reuse its compiled kernels."""
    return HalfStep(cell, spec, compiled)
