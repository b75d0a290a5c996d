"""Bit-exact reconstruction of every hidden state by reversal."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fairseq_revrnn.core import ReversibleRNN

LIMITS = [1, 2, 3, 5, None, "nf"]


def make(cell, sizes, limit, slice_dim=0, input_size=5):
    nf = limit == "nf"
    return ReversibleRNN(
        cell, input_size, sizes, max_forget_bits=None if nf else limit, no_forgetting=nf, slice_dim=slice_dim
    ).double()


def assert_exact(module, x, valid=None, state=None):
    forward, recovered, pushes = module.trace_exact(x, valid, state)
    assert len(forward) == len(recovered) == x.shape[0] + 1
    for t, (a, b) in enumerate(zip(forward, recovered)):
        for u, v in zip(a, b):
            assert torch.equal(u, v), f"state before step {t} not recovered exactly"
    return forward, pushes


@given(
    cell=st.sampled_from(["gru", "lstm"]),
    sizes=st.lists(st.integers(1, 6).map(lambda n: 2 * n), min_size=1, max_size=3),
    steps=st.integers(1, 40),
    batch=st.integers(1, 4),
    limit=st.sampled_from(LIMITS),
    scale=st.sampled_from([0.1, 1.0, 30.0]),
    seed=st.integers(0, 2**31 - 1),
    data=st.data(),
)
def test_reversal_recovers_every_state(cell, sizes, steps, batch, limit, scale, seed, data):
    slice_dim = data.draw(st.integers(0, sizes[-1] // 2))
    torch.manual_seed(seed)
    module = make(cell, sizes, limit, slice_dim)
    x = torch.randn(steps, batch, 5, dtype=torch.float64) * scale
    lengths = torch.randint(1, steps + 1, (batch,))
    right = torch.arange(steps).unsqueeze(1) < lengths
    valid = right if data.draw(st.booleans()) else right.flip(0)
    state = [tuple(torch.randn(batch, h, dtype=torch.float64) for _ in range(module.config.nvars)) for h in sizes]
    forward, _ = assert_exact(module, x, valid, state)
    # Padding freezes the state: nothing changes at a padded position.
    for t in range(steps):
        frozen = ~valid[t]
        for before, after in zip(forward[t], forward[t + 1]):
            assert torch.equal(before[frozen], after[frozen])


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("limit", LIMITS)
def test_long_sequence_overflows_the_buffer_and_still_reverses(cell, limit):
    torch.manual_seed(0)
    module = make(cell, [8, 6], limit, slice_dim=2)
    x = torch.randn(2000, 2, 5, dtype=torch.float64) * 3
    _, pushes = assert_exact(module, x)
    if limit != "nf":
        assert pushes >= 3, "the buffer should have overflowed several times"


@pytest.mark.parametrize("chunk_size", [1, 3, 16])
def test_float32_reverses_exactly_with_large_inputs(chunk_size):
    torch.manual_seed(1)
    module = ReversibleRNN("lstm", 5, [10, 8], max_forget_bits=2, slice_dim=4, chunk_size=chunk_size)
    x = torch.randn(300, 3, 5) * 1000
    assert_exact(module, x)


def test_step_by_step_advance_equals_one_full_pass():
    """Incremental decoding carries the exact state and its buffers: one step at a time gives,
    bit for bit, the outputs of one pass (chunk size 1: the same input projections)."""
    module = ReversibleRNN("lstm", 5, [10, 8], max_forget_bits=2, slice_dim=3, chunk_size=1).eval()
    x = torch.randn(30, 3, 5) * 3
    with torch.no_grad():
        full = module(x).outputs
        state, steps = None, []
        for t in range(30):
            out, state = module.advance(x[t : t + 1], state=state)
            steps.append(out[0])
    assert torch.equal(torch.stack(steps), full)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_reordered_state_continues_like_the_reordered_batch(cell):
    """Beam search reorders the exact state (and its buffers) between steps. (float64: in float32
    a CPU matrix multiply may round a row differently when the other rows change, and the
    buffer's remainders turn that into visible differences.)"""
    module = ReversibleRNN(cell, 5, [10, 8], max_forget_bits=2, chunk_size=1).double().eval()
    x = torch.randn(25, 4, 5, dtype=torch.float64) * 3
    order = torch.tensor([2, 0, 3, 3])
    with torch.no_grad():
        _, state = module.advance(x[:15])
        rest, _ = module.advance(x[15:, order], state=state.index_select(order))
        whole, _ = module.advance(x[:, order])
    assert torch.equal(rest, whole[15:])


def test_the_module_repr_names_its_configuration():
    from fairseq_revrnn.core import ReversibleRNN

    lstm = ReversibleRNN("lstm", 8, [16, 12], slice_dim=2, dropout_in=0.3, max_hidden_forget=0.9375)
    assert repr(lstm) == (
        "ReversibleRNN(lstm, input_size=8, hidden_sizes=[16, 12], max_forget_bits=3, max_hidden_forget=0.9375, "
        "slice_dim=2, dropout_in=0.3)"
    )
    gru = ReversibleRNN("gru", 8, [16], no_forgetting=True, reversible=False)
    assert repr(gru) == "ReversibleRNN(gru, input_size=8, hidden_sizes=[16], no_forgetting, reversible=False)"
