"""Fixed-point conversion and the exact multiply/divide with its buffer."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fairseq_revrnn.core import RH, RZ, Forgetting, InfoBuffer, to_fixed, to_float
from fairseq_revrnn.core.buffer import OVERFLOW_AT


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
