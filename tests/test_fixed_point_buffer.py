"""Fixed-point conversion and the exact multiply/divide with its buffer."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fairseq_revrnn.core import RH, RZ, Forgetting, InfoBuffer, to_fixed, to_float
from fairseq_revrnn.core.buffer import OVERFLOW_AT, OverflowPlan, overflow_plan


def test_to_fixed_rounds_to_grid_and_back():
    x = torch.tensor([0.0, 1.0, -1.0, 0.3, -2.5e-8, 123.456], dtype=torch.float64)
    h = to_fixed(x)
    assert h.dtype == torch.int64
    assert torch.equal(h, torch.round(x * 2**RH).long())
    assert torch.all((to_float(h, torch.float64) - x).abs() <= 2.0 ** -(RH + 1))


@pytest.mark.parametrize("bits", [1, 2, 3, 5, None])
def test_quantized_forget_values_respect_the_limit(bits):
    fg = Forgetting(bits)
    s = torch.cat(
        [torch.linspace(0, 1, 1001, dtype=torch.float64), torch.tensor([1e-30, 1 - 1e-16], dtype=torch.float64)]
    )
    z = fg.quantize(fg.limit(s))
    lowest = 2 ** (RZ - bits) if bits else 1
    assert z.min().item() == lowest
    assert z.max().item() == 2**RZ - 1


@given(
    steps=st.integers(1, 60),
    units=st.integers(1, 7),
    seed=st.integers(0, 2**31 - 1),
    zmin=st.sampled_from([1, 2, 2 ** (RZ - 3), 2 ** (RZ - 1)]),
)
def test_multiply_then_divide_restores_state_and_buffer(steps, units, seed, zmin):
    g = torch.Generator().manual_seed(seed)
    h0 = torch.randint(-(2**40), 2**40, (3, units), generator=g)
    buf = InfoBuffer((3, units), torch.device("cpu"))
    zs = [torch.randint(zmin, 2**RZ, (3, units), generator=g) for _ in range(steps)]
    valid = [torch.rand(3, 1, generator=g) > 0.2 for _ in range(steps)]
    h = h0
    history = [h]
    for t, (z, v) in enumerate(zip(zs, valid)):
        h = buf.multiply(h, z, t, v)
        history.append(h)
    for t in reversed(range(steps)):
        h = buf.divide(h, zs[t], t, valid[t])
        assert torch.equal(h, history[t])
    assert torch.equal(h, h0)
    assert torch.count_nonzero(buf.buf) == 0 and not buf.stack


def test_multiplication_is_close_to_the_real_product():
    h = to_fixed(torch.tensor([[0.75, -0.5, 0.123]], dtype=torch.float64))
    z = torch.tensor([[512, 1000, 3]])
    out = InfoBuffer((1, 3), torch.device("cpu")).multiply(h, z, 0)
    expected = to_float(h, torch.float64) * z / 2**RZ
    # The buffer adds less than z* units of 2**-RH: tiny noise, never more.
    assert torch.all((to_float(out, torch.float64) - expected).abs() < z / 2**RH)


def test_overflow_pushes_and_pops_at_the_same_step():
    buf = InfoBuffer((2, 3), torch.device("cpu"))
    # Negative values keep the state away from 0 (a non-negative one decays to 0 and stops pushing).
    h0 = -torch.randint(2**20, 2**30, (2, 3), generator=torch.Generator().manual_seed(0))
    h = h0
    z = torch.ones(2, 3, dtype=torch.int64)  # forget 10 bits per step: fastest growth
    steps = 40
    for t in range(steps):
        h = buf.multiply(h, z, t)
    assert len(buf.stack) >= 5
    assert all(int(b.max()) >= OVERFLOW_AT for b in buf.stack)
    assert buf.actual_bits() == 64 * 6 * (1 + len(buf.stack)) + 64 * len(buf.push_steps)
    for t in reversed(range(steps)):
        h = buf.divide(h, z, t)
    assert torch.equal(h, h0) and not buf.stack


@pytest.mark.parametrize("bits, most_reads", [(1, 0.25), (3, 0.25), (RZ, 0.5)])
def test_overflow_is_decided_from_a_host_bound_with_few_device_reads(bits, most_reads):
    """Reading the device at every step (the bound disabled: growth_bits=64) and reading it only
    when the host-side bound allows an overflow push at the same steps and compute the same
    values; the second reads the device on a fraction of the steps (without a forget limit the
    bound grows 10 bits a step, so it is looser)."""
    g = torch.Generator().manual_seed(bits)
    steps = 300
    zs = [torch.randint(2 ** (RZ - bits), 2**RZ, (4, 5), generator=g) for _ in range(steps)]
    valid = [torch.rand(4, 1, generator=g) > 0.1 for _ in range(steps)]
    h0 = -torch.randint(2**20, 2**30, (4, 5), generator=g)
    runs = []
    for growth in (64, bits):
        buf, h, outs = InfoBuffer((4, 5), torch.device("cpu"), growth_bits=growth), h0, []
        for t in range(steps):
            h = buf.multiply(h, zs[t], t, valid[t])
            outs.append(h)
        runs.append((buf, outs))
    (every, outs_every), (bounded, outs_bounded) = runs
    assert every.reads == steps - 1
    assert bounded.push_steps == every.push_steps and len(every.push_steps) > 0
    assert all(torch.equal(a, b) for a, b in zip(outs_every, outs_bounded))
    assert bounded.reads <= most_reads * steps, bounded.reads


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_stack_reads_all_its_buffers_in_one_transfer(cell):
    """In a stack (3 bits, the default) a step that needs to know the buffers reads all of
    them at once: one host sync per read step, on at most 60% of the steps of a long sequence
    (about half for the LSTM, a third for the GRU; which steps read depends on the CPU's float
    rounding, so the bound leaves room); the values are those of the full pass (other tests)."""
    from fairseq_revrnn.core import ReversibleRNN
    from fairseq_revrnn.core.meter import count_syncs

    module = ReversibleRNN(cell, 8, [16, 12], max_forget_bits=3)
    steps = 300
    x = torch.randn(steps, 4, 8) * 3
    states = []
    syncs = count_syncs(lambda: states.append(module.advance(x)[1]), warmup=0)
    buffers = [b for layer in states[-1].buffers for half in layer for b in half.present()]
    assert sum(len(b.push_steps) for b in buffers) > 0
    assert {b.reads for b in buffers} == {syncs.total}, "every read step reads every buffer, in one sync"
    assert syncs.total <= 0.6 * steps


def _long_exact_run(cell: str, overflow: str):
    """A 2-layer float64 stack over 200 steps (3 bits): whether it reverses exactly, its
    buffer pushes, the host syncs of a training step, and its gradients in both modes."""
    from fairseq_revrnn.core import ReversibleRNN
    from fairseq_revrnn.core.meter import count_syncs

    from .helpers import loss_and_grads

    module = ReversibleRNN(cell, 8, [16, 12], max_forget_bits=3, slice_dim=3, overflow=overflow).double()
    x = (torch.randn(200, 4, 8, dtype=torch.float64) * 3).requires_grad_()
    forward, recovered, pushes = module.trace_exact(x)
    exact = all(torch.equal(a, b) for f, r in zip(forward, recovered) for a, b in zip(f, r))
    syncs = count_syncs(lambda: loss_and_grads(module, x))
    (_, g_rev), (_, g_ord) = loss_and_grads(module, x), loss_and_grads(module, x, reversible=False)
    return exact, pushes, syncs, g_rev, g_ord


FIXED_SYNCS = 2  # per training step: the finiteness check, the layers' bit counts


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_the_margin_plan_reads_once_per_interval_and_stays_exact(cell):
    """overflow='margin' (auto's choice on an accelerator), run on the CPU: a training step
    syncs at most once per interval plus its fixed reads, reverses exactly and keeps the
    ordinary mode's gradients."""
    from .helpers import max_relative_error

    plan = overflow_plan("margin", Forgetting(3).growth_bits, torch.device("cpu"))
    assert plan == OverflowPlan(steps=5, read=True)
    assert overflow_plan("auto", 3, torch.device("cuda")) == plan
    assert overflow_plan("auto", 3, torch.device("cpu")) == OverflowPlan(steps=1, read=True)
    exact, pushes, syncs, g_rev, g_ord = _long_exact_run(cell, "margin")
    assert exact and pushes > 0
    assert syncs.total <= 200 // plan.steps + FIXED_SYNCS, syncs
    assert max_relative_error(g_rev, g_ord) <= 1e-6


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_the_bound_plan_never_syncs_in_the_loop_and_stays_exact(cell):
    """overflow='bound' pushes on the host-side worst case alone: no host sync besides the
    fixed ones, more pushes than reading, the same exact reversal and gradients."""
    from .helpers import max_relative_error

    exact, pushes, syncs, g_rev, g_ord = _long_exact_run(cell, "bound")
    _, read_pushes, read_syncs, _, _ = _long_exact_run(cell, "read")
    assert exact
    assert syncs.total == FIXED_SYNCS < read_syncs.total, (syncs, read_syncs)
    assert pushes > read_pushes > 0
    assert max_relative_error(g_rev, g_ord) <= 1e-6


def test_a_bad_overflow_mode_names_the_choices():
    from fairseq_revrnn.core import ReversibleRNN

    with pytest.raises(ValueError, match="overflow must be one of auto, read, margin, bound; got 'never'"):
        ReversibleRNN("gru", 4, [4], overflow="never")
