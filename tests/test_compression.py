"""Gate compression of G2-LSTM weights (issue 11, part 2): the paper's round, clip and
low-rank SVD, applied to the input and forget gates' rows and nothing else."""

import pytest
import torch

from fairseq_revrnn.units import CellRNN, G2LSTMCell
from fairseq_revrnn.units.compression import (
    GateCompression,
    clip,
    compress_state_dict,
    factored_size,
    gate_blocks,
    gate_weight_names,
    low_rank,
    round_to_step,
)


def test_rounding_lands_on_the_nearest_multiple_of_the_step():
    w = torch.tensor([-0.74, -0.26, -0.1, 0.0, 0.09, 0.11, 0.29, 0.31, 1.23])
    assert torch.allclose(round_to_step(w, 0.2), torch.tensor([-0.8, -0.2, -0.0, 0.0, 0.0, 0.2, 0.2, 0.4, 1.2]))
    out = round_to_step(torch.randn(50, 40), 0.5)
    assert torch.equal(out, torch.round(out * 2) / 2)


def test_rounding_never_moves_a_value_by_more_than_half_a_step():
    w = torch.randn(64, 32)
    assert (round_to_step(w, 0.2) - w).abs().max() <= 0.1 + 1e-6


def test_round_then_clip_leaves_the_papers_five_values():
    w = 3 * torch.randn(200, 100)
    values = clip(round_to_step(w, 0.2), 0.4).unique()
    assert torch.allclose(values, torch.tensor([-0.4, -0.2, 0.0, 0.2, 0.4]))
    values = clip(round_to_step(w, 0.5), 1.0).unique()
    assert torch.equal(values, torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))


def test_clipping_bounds_the_values_and_keeps_those_within():
    w = torch.tensor([-2.0, -0.4, 0.1, 0.4, 3.0])
    assert torch.equal(clip(w, 0.4), torch.tensor([-0.4, -0.4, 0.1, 0.4, 0.4]))


@pytest.mark.parametrize("shape", [(16, 24), (24, 16)])
def test_low_rank_has_the_rank_asked_for_and_is_the_best_approximation(shape):
    w = torch.randn(*shape)
    s = torch.linalg.svdvals(w.double())
    for rank in (1, 5, 12):
        approx = low_rank(w, rank)
        assert approx.shape == w.shape and approx.dtype == w.dtype
        assert torch.linalg.matrix_rank(approx) == rank
        # Eckart-Young: the error's Frobenius norm is the norm of the dropped singular values
        assert torch.linalg.norm((approx - w).double()) == pytest.approx(s[rank:].norm().item(), rel=1e-4)


def test_full_rank_reproduces_the_matrix():
    w = torch.randn(20, 12)
    assert torch.allclose(low_rank(w, 12), w, atol=1e-5)


def test_low_rank_refuses_ranks_the_matrix_cannot_have():
    with pytest.raises(ValueError, match=r"rank must be in \[1, 12\] for a \(20, 12\) matrix; got 13"):
        low_rank(torch.randn(20, 12), 13)
    with pytest.raises(ValueError, match="got 0"):
        low_rank(torch.randn(20, 12), 0)


def test_factored_size_counts_both_factors():
    assert factored_size((256, 512), 16) == 16 * (256 + 512)


def state_dict(hidden: int = 6, inputs: int = 5, layers: int = 2) -> dict:
    """A G2-LSTM's state dict under the names our fairseq models give it, plus other weights."""
    rnn = CellRNN(lambda i, h: G2LSTMCell(i, h), inputs, [hidden] * layers)
    state = {f"decoder.rnn.{k}": v.clone() for k, v in rnn.state_dict().items()}
    state["decoder.embed_tokens.weight"] = torch.randn(10, inputs)
    return state


def test_the_gate_weights_are_found_by_name_and_nothing_else():
    names = gate_weight_names(state_dict())
    assert names == [f"decoder.rnn.cells.{n}.weight_{kind}" for n in (0, 1) for kind in ("ih", "hh")]


def test_the_blocks_are_the_input_and_forget_gates_rows():
    w = torch.arange(4 * 3 * 2.0).reshape(12, 2)
    assert gate_blocks(w) == {"i": slice(0, 3), "f": slice(3, 6)}
    with pytest.raises(ValueError, match="4 \\* hidden rows"):
        gate_blocks(torch.randn(10, 2))


@pytest.mark.parametrize(
    "spec", [GateCompression(round_step=0.5), GateCompression(round_step=0.2, clip=0.4), GateCompression(rank=2)]
)
def test_only_the_input_and_forget_rows_of_the_cell_matrices_change(spec):
    before = state_dict()
    after = {k: v.clone() for k, v in before.items()}
    reports = compress_state_dict(after, spec)
    assert len(reports) == 2 * 4  # i and f of 2 layers x (weight_ih, weight_hh)
    hidden = 6
    for name, weight in before.items():
        if name in gate_weight_names(before):
            assert not torch.equal(after[name][: 2 * hidden], weight[: 2 * hidden]), name
            assert torch.equal(after[name][2 * hidden :], weight[2 * hidden :]), f"{name}: g and o rows changed"
        else:
            assert torch.equal(after[name], weight), f"{name} changed"  # biases, embeddings
    if spec.rank is not None:
        for name in gate_weight_names(after):
            ranks = [int(torch.linalg.matrix_rank(after[name][rows])) for rows in gate_blocks(after[name]).values()]
            assert ranks == [2, 2], name
        assert all(r.factored == 2 * sum(r.shape) for r in reports)


def test_the_report_counts_values_zeros_and_changes():
    before = state_dict()
    after = {k: v.clone() for k, v in before.items()}
    reports = compress_state_dict(after, GateCompression(round_step=0.5, clip=1.0))
    for r in reports:
        rows = gate_blocks(before[r.name])[r.gate]
        new, old = after[r.name][rows], before[r.name][rows]
        assert r.shape == tuple(new.shape) and r.dense == new.numel() and r.factored is None
        assert r.distinct == len(set(new.flatten().tolist())) <= 3  # |w| < 1/sqrt(6) at initialisation
        assert r.zeros == pytest.approx(float((new == 0).float().mean()))
        assert r.max_change == pytest.approx(float((new - old).abs().max()))


def test_rank_and_round_together_store_rounded_values():
    state = {k: 3 * v for k, v in state_dict().items()}
    compress_state_dict(state, GateCompression(round_step=0.5, rank=1))
    w = state["decoder.rnn.cells.0.weight_hh"][:12]
    assert torch.equal(w, torch.round(w * 2) / 2)


def test_a_rank_above_the_smallest_blocks_rank_names_the_option_and_the_block():
    names = {"round_step": "--round-step", "clip": "--clip", "rank": "--rank"}
    with pytest.raises(
        ValueError, match=r"--rank 6 is larger than .* decoder\.rnn\.cells\.0\.weight_ih \(6 x 5: at most 5\)"
    ):
        compress_state_dict(state_dict(), GateCompression(rank=6, names=names))
    state = state_dict()
    compress_state_dict(state, GateCompression(rank=5, names=names))


def test_a_state_dict_without_g2_weights_is_refused():
    with pytest.raises(ValueError, match="no G2-LSTM cell weights"):
        compress_state_dict({"decoder.embed_tokens.weight": torch.randn(3, 2)}, GateCompression(rank=1))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"round_step": 0.0}, "--round-step must be a number > 0; got 0.0"),
        ({"round_step": -0.5}, "--round-step must be a number > 0; got -0.5"),
        ({"round_step": float("inf")}, "--round-step must be a number > 0"),
        ({"round_step": 0.5, "clip": 0.0}, "--clip must be a number > 0; got 0.0"),
        ({"clip": 1.0}, "--clip is only used with --round-step"),
        ({"rank": 0}, "--rank must be an integer >= 1; got 0"),
        ({}, "nothing to do: give --round-step and/or --rank"),
    ],
)
def test_bad_settings_name_the_option(kwargs, message):
    names = {"round_step": "--round-step", "clip": "--clip", "rank": "--rank"}
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        GateCompression(**kwargs, names=names)
