"""What a training step dispatches (issue 10): host syncs, which stall a GPU, and
top-level ops, each a host-side dispatch and on a GPU most a kernel launch.
Counted on CPU by ``core.meter``, which sees what would happen on a GPU."""

import pytest
import torch

from fairseq_revrnn.core import ReversibleRNN
from fairseq_revrnn.core.meter import count_flops, count_ops, count_syncs, ops_per_step

LAYERS = 2


def training_step(cell: str, steps: int, padded: bool = False):
    """Forward and backward of a 2-layer stack with an attention slice: a loss on
    outputs, slices and final states, so every part of the backward runs. One
    bit forgotten per step keeps the buffers' host-side bound below the
    overflow limit up to T = 53 (design section 3): no overflow read is due."""
    torch.manual_seed(0)
    model = ReversibleRNN(cell, 6, [8] * LAYERS, max_forget_bits=1, slice_dim=2)
    x = torch.randn(steps, 3, 6, requires_grad=True)
    valid = torch.arange(steps)[:, None] < torch.tensor([steps, steps - 3, 1]) if padded else None

    def run():
        out = model(x, valid)
        loss = out.outputs.sum() + out.slices.sum() + sum(v.sum() for layer in out.final for v in layer)
        loss.backward()

    return run


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_host_syncs_do_not_grow_with_length(cell, padded):
    # No overflow read is due (see training_step): a sync made per step shows
    # as a difference between the two lengths.
    short, long = (count_syncs(training_step(cell, steps, padded)) for steps in (8, 32))
    assert short.total == long.total, (
        f"host syncs per training step grow with T: {short.total} at T=8, {long.total} at T=32 "
        f"({dict(long.names)}); 2 (the finiteness check, the bit counts) when this test was written"
    )


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_ops_grow_linearly_with_length(cell):
    lengths = (8, 16, 32)
    per_step = {t: ops_per_step(training_step(cell, t), t, LAYERS) for t in lengths}
    total = {t: per_step[t] * t * LAYERS for t in lengths}
    # Ops added per step and layer from T=8 to 16 and from 16 to 32: equal when
    # the count is a fixed cost plus a cost per step (nothing grows faster).
    added = [(total[b] - total[a]) / ((b - a) * LAYERS) for a, b in zip(lengths, lengths[1:])]
    report = (
        "top-level ops per step and layer (bench_core's figure): "
        + ", ".join(f"{per_step[t]:.1f} at T={t}" for t in lengths)
        + f"; added per step: {added[0]:.1f}, then {added[1]:.1f}"
    )
    assert added[0] == pytest.approx(added[1], rel=0.05), report
    assert per_step[32] < 500, report  # 368 (LSTM), 267 (GRU) eager when written; the goal: 60


def test_sync_counter_sees_every_way_of_reading_a_value():
    t, v = torch.tensor([3.0]), torch.tensor([1, 2])
    reads = [
        lambda: t.item(),
        lambda: bool(t),
        lambda: int(t),
        lambda: float(t),
        lambda: v.tolist(),
        lambda: v.numpy(),
        lambda: torch.ops.aten.is_nonzero(t),
        lambda: 1 if t > 0 else 0,
        lambda: torch.equal(t, t),
        lambda: v.nonzero(),
        lambda: v[v > 1],
    ]
    assert [count_syncs(read).total for read in reads] == [1] * len(reads)
    assert count_syncs(lambda: (v * 2 + 1).sum().bool()).total == 0
    assert count_syncs(lambda: torch.empty(1).copy_(t.to("cpu", copy=True))).total == 0  # host to host


def test_op_counter_counts_outermost_ops_only():
    x, w = torch.randn(4, 3), torch.randn(5, 3)
    counted = count_ops(lambda: torch.nn.functional.linear(x, w).tanh())
    assert dict(counted.names) == {"aten::linear": 1, "aten::tanh": 1}  # not linear's t and mm

    def in_a_scope():
        with torch.profiler.record_function("revrnn::a scope"):
            return x + 1

    assert dict(count_ops(in_a_scope).names) == {"aten::add": 1}  # a scope is not an op


def test_op_counter_counts_compiled_code_by_its_kernels(compiling):
    # Inductor's C++ kernels (counted where its wrapper calls them) and extern mm.
    x, w = torch.randn(8, 16), torch.randn(16, 16)
    compiled = torch.compile(lambda x, w: torch.sigmoid(torch.tanh(x @ w) * 2 + 1))
    with torch.no_grad():
        counted = count_ops(lambda: compiled(x, w))
    fused = [name for name in counted.names if name.startswith("cpp_fused")]
    assert (counted.compiled_calls, counted.total, counted.names["aten::mm"], len(fused)) == (1, 2, 1, 1), counted


def test_op_counter_counts_triton_kernels_in_a_graph_call():
    # The events inductor's Triton launcher records under the profiler (torch 2.13):
    # each kernel directly under the graph call, beside its extern kernels.
    x = torch.randn(4, 4)

    def graph_call():
        with torch.profiler.record_function("## Call CompiledFxGraph fake ##"):
            torch.mm(x, x)
            with torch.profiler.record_function("triton_poi_fused_add_tanh_0"):
                pass

    counted = count_ops(graph_call)
    assert counted.compiled_calls == 1
    assert dict(counted.names) == {"aten::mm": 1, "triton_poi_fused_add_tanh_0": 1}


def test_flop_counter_sees_in_place_products_and_torch_rnns():
    a, b, acc = torch.randn(4, 5), torch.randn(5, 6), torch.zeros(4, 6)
    assert count_flops(lambda: acc.addmm_(a, b)) == 2 * 4 * 5 * 6 == count_flops(lambda: torch.addmm(acc, a, b))

    steps, batch, inputs, hidden = 3, 2, 4, 5
    x = torch.randn(steps, batch, inputs, requires_grad=True)
    lstm = torch.nn.LSTM(inputs, hidden)

    def step():
        out, _ = lstm(x)
        out.sum().backward()

    # forward W [x; h] per step, backward its two products; no gradient for the zero initial h
    gates = 4 * hidden
    expected = 3 * 2 * steps * batch * gates * (inputs + hidden) - 2 * batch * hidden * gates
    assert count_flops(step) == expected
