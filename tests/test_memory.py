"""Bit accounting (SPEC section 6) and the real bytes autograd keeps."""

import pytest
import torch

from fairseq_revrnn.core import EmbeddingInput, ReversibleRNN, SavedTensorMeter, total


def stats_for(limit, cell="lstm", steps=200, nf=False):
    torch.manual_seed(0)
    module = ReversibleRNN(cell, 8, [16, 12], max_forget_bits=limit, no_forgetting=nf, slice_dim=2)
    x = torch.randn(steps, 4, 8)
    with torch.no_grad():
        return module(x).memory


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_savings_fall_as_the_limit_loosens(cell):
    results = [total(stats_for(limit, cell)) for limit in (1, 2, 3, 5, None)]
    ideal = [r.ideal_savings for r in results]
    actual = [r.savings for r in results]
    assert all(a > b for a, b in zip(ideal, ideal[1:])), ideal
    assert all(a >= b for a, b in zip(actual, actual[1:])), actual
    assert actual[0] > actual[-1]


@pytest.mark.parametrize("limit", [1, 3, None])
def test_actual_bits_are_at_least_ideal_bits(limit):
    for layer in stats_for(limit):
        assert layer.actual_bits >= layer.ideal_bits > 0


def test_no_forgetting_stores_only_slices_and_masks():
    layers = stats_for(None, nf=True)
    assert layers[0].ideal_bits == 0
    assert layers[1].ideal_bits == 32 * (200 + 1) * 4 * 2  # the stored slice only


def test_naive_bits_match_hand_count():
    torch.manual_seed(0)
    lstm = ReversibleRNN("lstm", 3, [6, 10])
    gru = ReversibleRNN("gru", 3, [6, 10])
    x = torch.randn(7, 3, 3)
    with torch.no_grad():
        lstm_stats, gru_stats = lstm(x).memory, gru(x).memory
    assert [s.naive_bits for s in lstm_stats] == [32 * 7 * 3 * 6 * 2, 32 * 7 * 3 * 10 * 2]
    assert [s.naive_bits for s in gru_stats] == [32 * 7 * 3 * 6, 32 * 7 * 3 * 10]


def test_actual_bits_count_whole_buffer_words():
    torch.manual_seed(0)
    module = ReversibleRNN("gru", 3, [6], max_forget_bits=1)
    with torch.no_grad():
        (stats,) = module(torch.randn(5, 2, 3)).memory
    # 5 steps of at most 1 bit never overflow: one int64 word per unit, two halves.
    assert stats.actual_bits == 64 * 2 * 3 * 2


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_autograd_saves_ten_times_less_in_reversible_mode(cell):
    torch.manual_seed(0)
    module = ReversibleRNN(cell, 256, [256, 256], max_forget_bits=3)
    embedding = torch.nn.Embedding(1000, 256)
    tokens = torch.randint(0, 1000, (200, 32))
    saved = {}
    for reversible in (True, False):
        module.reversible = reversible
        with SavedTensorMeter(exclude=[*module.parameters(), embedding.weight]) as meter:
            out = module(EmbeddingInput(tokens, embedding.weight))
        out.outputs.sum().backward()
        saved[reversible] = meter.bytes
        if reversible:
            biggest = max(torch.Size(s).numel() for s in meter.shapes)
            assert biggest < 200 * 32 * 128, "nothing the size of a sequence of half-states is kept"
    assert saved[False] >= 10 * saved[True], saved


def test_dropout_masks_cost_one_seed_each():
    torch.manual_seed(0)
    module = ReversibleRNN("lstm", 8, [16, 12], dropout_in=0.3, dropout_out=0.4, dropout_hidden=0.5)
    masks = module.sample_masks(4)
    assert [masks.layer_bits(0), masks.layer_bits(1)] == [64 * 4, 64 * 3]  # in, out, 2 DropConnect; out, 2
    with SavedTensorMeter(exclude=list(module.parameters())) as meter:
        out = module(torch.randn(30, 4, 8, requires_grad=True))
    out.outputs.sum().backward()
    connect = {tuple(module.weight_hh1_l0.shape), tuple(module.weight_hh1_l1.shape)}
    assert not connect & set(meter.shapes), "DropConnect masks are regenerated from seeds, not kept"


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_padded_positions_add_no_bits(cell):
    """The same sequences with trailing padding count exactly the ideal bits of the unpadded run
    (no slice: a stored slice has a row for every position, padded or not)."""
    module = ReversibleRNN(cell, 8, [16, 12], max_forget_bits=3, chunk_size=1)
    x = torch.randn(12, 3, 8)
    short = torch.ones(7, 3, dtype=torch.bool)
    short[5:, 1] = False
    padded = torch.zeros(12, 3, dtype=torch.bool)
    padded[:7] = short
    with torch.no_grad():
        a = module(x[:7], short).memory
        b = module(x, padded).memory
    assert [m.ideal_bits for m in a] == [m.ideal_bits for m in b]
    assert [m.ideal_bits for m in a] != [m.ideal_bits for m in module(x[:7]).memory], "padding is not free"
