"""Reading a G2-LSTM's gate values for the paper's histograms (recipes/gate_values.py)."""

import torch

from fairseq_revrnn.recipes.gate_values import near_binary, plot_histograms, recording
from fairseq_revrnn.units import CellRNN, G2LSTMCell


def test_recording_sees_every_step_of_one_cell_and_then_lets_go():
    rnn = CellRNN(lambda i, h: G2LSTMCell(i, h), 3, [4, 5]).eval()
    x = torch.randn(7, 2, 3)
    with recording(rnn.cells[0]) as calls:
        out, _ = rnn(x)
    assert len(calls) == 7 and all(i.shape == f.shape == (2, 4) for i, f in calls)
    # the first step from a zero state: the gates are sigmoids of the projected input alone
    i0, f0, _, _ = torch.sigmoid(rnn.cells[0].project(x[0])).chunk(4, dim=-1)
    assert torch.allclose(calls[0][0], i0) and torch.allclose(calls[0][1], f0)
    assert "gates" not in vars(rnn.cells[0])  # the class's method again
    assert torch.equal(rnn(x)[0], out) and len(calls) == 7


def test_near_binary_counts_the_shares_at_either_end():
    values = torch.tensor([0.01, 0.05, 0.5, 0.5, 0.95, 0.99, 0.999, 0.3])
    assert near_binary(values) == (0.25, 0.375)


def test_histograms_are_written_as_png(tmp_path):
    values = {"baseline": torch.rand(100), "G2": torch.rand(100) ** 4}
    path = plot_histograms({"task": {"input": values, "forget": values}}, tmp_path / "img" / "h.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
