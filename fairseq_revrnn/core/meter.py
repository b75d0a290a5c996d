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
"""

from __future__ import annotations

import gc
import types
from typing import Optional

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
