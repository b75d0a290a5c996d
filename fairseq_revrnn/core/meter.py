"""Measuring what a training step really holds, from the allocator.

Hooks on ``save_for_backward`` miss what an autograd context, a cache or an
attribute keeps. :class:`StepMemory` instead counts every allocation and
free while a step runs: on CPU from the profiler's memory events, on CUDA from
the caching allocator's counters. ``live[name]`` is the bytes allocated since
the start and still alive at ``mark(name)`` (e.g. between forward and
backward); ``peak`` the most alive at any time. Both are relative to the
start, so parameters and anything allocated before are not counted.

:func:`graph_tensors` lists what the autograd graph behind a tensor reaches:
each node's saved tensors and, for custom Functions, every tensor reachable
from the context's attributes, so that a test can ask which shapes are kept.

:func:`count_ops` counts the operators a callable dispatches (each costs host
time, and on a GPU most launch a kernel, so a step made of many small ops is
launch-bound); :func:`count_syncs` counts the device-to-host synchronisations
it makes (each stalls the host until the GPU has caught up). Both see a CPU
run, so CPU tests can assert what matters on a GPU.
"""

from __future__ import annotations

import functools
import gc
import re
import sys
import types
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

Tensor = torch.Tensor

_MARK = "revrnn_meter::"


class StepMemory:
    """Bytes alive during a ``with`` block: ``live[name]`` at each :meth:`mark`, and ``peak``."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.live: dict[str, int] = {}
        self.peak = 0
        self._prof = None
        self._base = 0

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def __enter__(self) -> StepMemory:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            gc.collect()  # garbage of earlier work is not freed inside the window
            self._prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True)
            self._prof.__enter__()
        return self

    def mark(self, name: str) -> None:
        """Remember the bytes alive now under ``name``."""
        if self.cuda:
            torch.cuda.synchronize(self.device)
            self.live[name] = torch.cuda.memory_allocated(self.device) - self._base
        else:
            with torch.profiler.record_function(_MARK + name):
                pass

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._base
            return
        self._prof.__exit__(*exc)
        allocs, marks = _allocations(self._prof)
        self._prof = None
        sizes: dict[int, int] = {}
        alive, i = 0, 0
        for time, name in marks + [(None, None)]:
            while i < len(allocs) and (time is None or allocs[i][0] <= time):
                _, ptr, nbytes = allocs[i]
                i += 1
                if nbytes < 0:  # a free: count it only if the block was allocated in the window
                    nbytes = -sizes.pop(ptr, 0)
                else:
                    sizes[ptr] = nbytes
                alive += nbytes
                self.peak = max(self.peak, alive)
            if name is not None:
                self.live[name] = alive


def _allocations(prof) -> tuple[list[tuple[int, int, int]], list[tuple[int, str]]]:
    """CPU allocations and frees ``(time, address, bytes)`` and marks ``(time,
    name)`` in time order, from the profiler's event tree (as torch's own
    memory profiler reads them: it carries each block's address)."""
    from torch._C._profiler import _EventType

    allocs, marks = [], []
    nodes = list(prof.profiler.kineto_results.experimental_event_tree())
    while nodes:
        node = nodes.pop()
        nodes.extend(node.children)
        if node.tag == _EventType.Allocation and node.extra_fields.device.type == "cpu":
            allocs.append((node.start_time_ns, node.extra_fields.ptr, node.extra_fields.alloc_size))
        elif node.name.startswith(_MARK):
            marks.append((node.start_time_ns, node.name[len(_MARK) :]))
    return sorted(allocs), sorted(marks)


def graph_tensors(root: Tensor, max_depth: int = 6) -> list[Tensor]:
    """Tensors the autograd graph behind ``root`` keeps for backward: saved
    tensors of built-in nodes, and everything reachable from a custom
    Function's context (saved tensors and attributes)."""
    found: dict[int, Tensor] = {}
    seen_nodes: set[int] = set()
    stack = [root.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        for name in dir(node):
            if name.startswith("_saved_"):
                _collect(getattr(node, name), found, max_depth)
        if hasattr(node, "saved_tensors"):
            _collect(list(node.saved_tensors), found, max_depth)
            found.update((id(t), t) for t in context_tensors(node, max_depth))
        stack.extend(next_node for next_node, _ in node.next_functions)
    return list(found.values())


def context_tensors(node, max_depth: int = 6) -> list[Tensor]:
    """Tensors a custom Function's context holds in its attributes, outside
    ``save_for_backward`` (where a cache or a kept object would hide)."""
    found: dict[int, Tensor] = {}
    _collect(dict(vars(node)), found, max_depth)
    return list(found.values())


def _collect(obj, found: dict[int, Tensor], depth: int, visited: Optional[set[int]] = None) -> None:
    """Tensors inside ``obj``, following containers and plain objects' attributes
    (not modules, functions or classes)."""
    visited = set() if visited is None else visited
    if depth < 0 or id(obj) in visited:
        return
    visited.add(id(obj))
    if isinstance(obj, Tensor):
        found[id(obj)] = obj
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for item in obj:
            _collect(item, found, depth - 1, visited)
    elif isinstance(obj, dict):
        for item in obj.values():
            _collect(item, found, depth - 1, visited)
    elif hasattr(obj, "__dict__") and not isinstance(obj, (type, types.ModuleType, types.FunctionType)):
        _collect(vars(obj), found, depth - 1, visited)


@dataclass
class OpCount:
    """``total`` top-level ops, ``names`` how many of each, ``compiled_calls``
    how many calls of inductor-compiled graphs were seen."""

    total: int = 0
    names: Counter = field(default_factory=Counter)
    compiled_calls: int = 0


_COMPILED_GRAPH = "## Call CompiledFxGraph"
# What a C++ kernel compiled with ``cpp.enable_kernel_profile`` records (counted by _CppKernelCalls).
_PROFILED_CPP_KERNEL = re.compile(r"(graph_\d+_)?cpp_")


@functools.cache
def _is_operator(name: str) -> bool:
    """Whether a profiler event is a dispatched operator (``aten::mm``,
    ``mkldnn::_linear_pointwise``), not a scope (``autograd::engine::...``,
    ``record_function`` names) or the profiler's own bookkeeping."""
    ns, sep, op = name.partition("::")
    if not sep or ns == "profiler" or not op.isidentifier():
        return False
    try:
        getattr(getattr(torch.ops, ns), op)
    except (AttributeError, RuntimeError):
        return False
    return True


def _event_tree(
    fn: Callable[[], object], warmup: int, record_shapes: bool = False, profiled: Optional[Callable[[], object]] = None
) -> list:
    """The profiler's event tree (roots, all threads) of one call of
    ``profiled`` (default ``fn``) made after ``warmup`` unprofiled calls of ``fn``."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(warmup):
        fn()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=record_shapes) as prof:
        (profiled or fn)()
    return list(prof.profiler.kineto_results.experimental_event_tree())


class _CppKernelCalls:
    """A ``sys.setprofile`` hook counting calls of inductor's C++ kernels: the
    Python wrapper of a compiled graph calls each as a builtin ``kernel`` of a
    module inductor loaded from its cache; counted under the wrapper's name for
    it (``cpp_fused_add_tanh_0``)."""

    def __init__(self) -> None:
        self.names: Counter = Counter()
        self._known: dict[int, Optional[str]] = {}

    def __call__(self, frame, event: str, arg) -> None:
        if event != "c_call" or getattr(arg, "__name__", None) != "kernel":
            return
        if id(arg) not in self._known:
            self._known[id(arg)] = _cpp_kernel_name(frame, arg)
        name = self._known[id(arg)]
        if name is not None:
            self.names[name] += 1


def _cpp_kernel_name(frame, fn) -> Optional[str]:
    """The name the calling wrapper gives ``fn`` if it is an inductor C++ kernel, else None."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    if not str(getattr(getattr(fn, "__self__", None), "__file__", "")).startswith(cache_dir()):
        return None
    return next((key for key, value in frame.f_globals.items() if value is fn), "cpp kernel")


def count_ops(fn: Callable[[], object], warmup: int = 1) -> OpCount:
    """Top-level operators ``fn()`` dispatches, forward and backward alike.

    An op counts when no operator encloses it (``aten::linear`` counts once,
    not its ``aten::t`` and ``aten::addmm``); views and allocations called
    directly count too: each costs a dispatch on the host. Compiled code is
    counted by what it runs: each fused kernel call and each extern kernel
    (``aten::mm``, ``aten::addmm``) is one op; the graph call itself and
    inductor's buffer allocations (no dispatch) are not; AOTAutograd's own ops
    around a graph (e.g. ``aten::copy_`` making a gradient contiguous) count as
    eager ops. The profiler shows a graph call as a ``## Call CompiledFxGraph``
    scope whose direct children are its extern kernels and its Triton kernels
    (``triton_...``); inductor's C++ kernels record nothing unless compiled
    with ``cpp.enable_kernel_profile``, so their calls are counted from Python
    instead, where the graph's wrapper makes them (on the calling thread, which
    on CPU runs the backward too; not with ``cpp_wrapper``). (Checked on torch
    2.13, CPU: a compiled ``sigmoid(tanh(x @ w) * 2 + 1)`` counts 2 ops, one mm
    and one fused kernel.) The ``warmup`` calls run unprofiled first, so that
    compilation and one-off initialisation are not counted.
    """
    kernels = _CppKernelCalls()

    def hooked() -> None:
        previous = sys.getprofile()
        sys.setprofile(kernels)
        try:
            fn()
        finally:
            sys.setprofile(previous)

    count = OpCount(names=kernels.names)
    nodes = [(node, False) for node in _event_tree(fn, warmup, profiled=hooked)]
    while nodes:
        node, in_graph = nodes.pop()
        if _is_operator(node.name) or (in_graph and not _PROFILED_CPP_KERNEL.match(node.name)):
            count.names[node.name] += 1  # a graph's direct children are its extern and Triton kernels
        elif not in_graph:
            graph = node.name.startswith(_COMPILED_GRAPH)
            count.compiled_calls += graph
            nodes.extend((child, graph) for child in node.children)
    count.total = sum(count.names.values())
    return count


@dataclass
class SyncCount:
    """``total`` device-to-host synchronisations, ``names`` how many of each."""

    total: int = 0
    names: Counter = field(default_factory=Counter)

    def add(self, name: str) -> None:
        self.total += 1
        self.names[name] += 1


# Ops that read a device value on the host, or whose output size depends on one.
_SYNC_OPS = {
    "aten::_local_scalar_dense",  # what .item(), bool(t), int(t), float(t) and `if t:` call
    "aten::item",
    "aten::is_nonzero",
    "aten::equal",
    "aten::allclose",
    "aten::nonzero",  # also inside boolean-mask indexing
    "aten::masked_select",
    "aten::_unique2",
    "aten::unique_dim",
    "aten::unique_consecutive",
}


def _is_blocking_copy_to_host(node) -> bool:
    """``aten::copy_`` from a device into host memory without ``non_blocking``
    (``.cpu()``, ``.tolist()`` of a device tensor)."""
    if node.name != "aten::copy_":
        return False
    dst, src, *rest = node.extra_fields.inputs
    on = [getattr(getattr(t, "device", None), "type", "cpu") for t in (dst, src)]
    return on[0] == "cpu" and on[1] != "cpu" and not (rest and rest[0] is True)


def count_syncs(fn: Callable[[], object], warmup: int = 1) -> SyncCount:
    """Device-to-host synchronisations ``fn()`` makes, forward and backward.

    Counted: reading a value (``.item()``, ``bool``/``int``/``float`` of a
    tensor, ``aten::is_nonzero``, ``torch.equal``/``allclose``), ops whose
    output size depends on values (``nonzero``, ``masked_select``, ``unique``,
    boolean-mask indexing), blocking copies to the host, and ``tolist()`` /
    ``numpy()`` of CPU tensors (they dispatch nothing, but on a GPU the tensor
    would be copied to the host). The first ones are found in the profiler's
    events, each once (the outermost: ``bool(t)`` is ``is_nonzero`` calling
    ``item``), so a CPU run shows what would stall a GPU, in compiled code too
    (a ``TorchDispatchMode`` would see them, but ``torch.compile`` refuses to
    run under one). ``tolist``/``numpy`` are wrapped on ``torch.Tensor`` during
    the profiled call: the wrappers see every thread, and miss a bound method
    fetched before (``f = t.tolist``). ``warmup`` calls run first, uncounted.
    """
    count = SyncCount()

    def counting(name: str):
        method = getattr(torch.Tensor, name)

        def call(self, *args, **kwargs):
            if self.device.type == "cpu":
                count.add(f"Tensor.{name}")
            return method(self, *args, **kwargs)

        return call

    def hooked() -> None:
        originals = {name: torch.Tensor.__dict__.get(name) for name in ("tolist", "numpy")}
        for name in originals:
            setattr(torch.Tensor, name, counting(name))
        try:
            fn()
        finally:
            for name, original in originals.items():
                if original is None:
                    delattr(torch.Tensor, name)
                else:
                    setattr(torch.Tensor, name, original)

    nodes = _event_tree(fn, warmup, record_shapes=True, profiled=hooked)
    while nodes:
        node = nodes.pop()
        if node.name in _SYNC_OPS or _is_blocking_copy_to_host(node):
            count.add(node.name)
        else:
            nodes.extend(node.children)
    return count


def ops_per_step(fn: Callable[[], object], steps: int, layers: int = 1) -> float:
    """Top-level ops of ``fn()`` (:func:`count_ops`) per time step and layer,
    fixed costs included: the figure ``scripts/bench_core.py`` reports."""
    return count_ops(fn).total / (steps * layers)


def count_flops(fn: Callable[[], object]) -> int:
    """Floating-point operations of the matrix products ``fn()`` runs, forward
    and backward (``torch.utils.flop_counter``), the in-place ``addmm_`` of
    gradient accumulation included.

    Run it on eager code: torch's fused RNN kernels (oneDNN, cuDNN) are
    switched off meanwhile, so ``torch.nn.LSTM`` / ``GRU`` run their per-step
    products where the counter sees them. Comparing this count with a time tells
    whether a model is slower because it computes more or because its
    products are smaller and less efficient.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")  # from mkldnn.flags
        with torch.backends.mkldnn.flags(enabled=False), torch.backends.cudnn.flags(enabled=False):
            counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.addmm_: _addmm_flops})
            with counter:
                fn()
    return counter.get_total_flops()


def _addmm_flops(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    """``self += a @ b``: a multiply and an add per term of the product."""
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]
