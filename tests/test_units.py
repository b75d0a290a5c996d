"""The G2-LSTM and NRU cells (pure PyTorch) and the runner over them: hand-computed steps,
where the Gumbel noise goes, gradients by gradcheck, non-saturation over 1000 steps, and
the options each refuses."""

import functools
import math

import pytest
import torch
from torch.func import functional_call

from fairseq_revrnn.units import CellRNN, G2LSTMCell, NRUCell
from fairseq_revrnn.units import g2_lstm as g2_module


def sigmoid(a: float) -> float:
    return 1.0 / (1.0 + math.exp(-a))


def tiny_g2(gates: str, temperature=None) -> G2LSTMCell:
    """One unit, one input; pre-activations at x=1, h=0.5: i 0.6, f 0.0, g 0.6, o 0.35."""
    cell = G2LSTMCell(1, 1, gates=gates, temperature=temperature).double()
    with torch.no_grad():
        cell.weight_ih.copy_(torch.tensor([[0.5], [-0.3], [0.8], [0.2]], dtype=torch.float64))
        cell.weight_hh.copy_(torch.tensor([[0.1], [0.4], [-0.2], [0.3]], dtype=torch.float64))
        cell.bias.copy_(torch.tensor([0.05, 0.1, -0.1, 0.0], dtype=torch.float64))
    return cell


def g2_step(cell: G2LSTMCell) -> tuple[float, float]:
    x = torch.tensor([[1.0]], dtype=torch.float64)
    state = (torch.tensor([[0.5]], dtype=torch.float64), torch.tensor([[-0.2]], dtype=torch.float64))
    h, (h2, c) = cell(x, state)
    assert torch.equal(h, h2)
    return h.item(), c.item()


def expected_lstm(i: float, f: float) -> tuple[float, float]:
    c = f * -0.2 + i * math.tanh(0.6)
    return sigmoid(0.35) * math.tanh(c), c


@pytest.mark.parametrize(
    "gates, temperature, training, i, f",
    [
        ("sigmoid", None, True, sigmoid(0.6), 0.5),
        ("sharpened", 0.5, True, sigmoid(1.2), 0.5),
        ("sharpened", None, False, sigmoid(0.6 / 0.2), 0.5),  # the paper's 0.2, in evaluation as well
        ("gumbel", None, False, sigmoid(0.6), 0.5),  # plain sigmoid in evaluation
        # training: U = 1/4 everywhere, log U - log(1 - U) = -log 3, then the paper's tau 0.9
        ("gumbel", None, True, sigmoid((0.6 - math.log(3)) / 0.9), sigmoid(-math.log(3) / 0.9)),
    ],
)
def test_g2_step_by_hand(monkeypatch, gates, temperature, training, i, f):
    monkeypatch.setattr(g2_module, "logistic_noise", lambda a: torch.full_like(a, -math.log(3)))
    cell = tiny_g2(gates, temperature).train(training)
    h, c = g2_step(cell)
    want_h, want_c = expected_lstm(i, f)
    assert c == pytest.approx(want_c, abs=1e-12) and h == pytest.approx(want_h, abs=1e-12)


def test_sigmoid_gates_are_torch_lstm_cell():
    reference = torch.nn.LSTMCell(5, 7)
    cell = G2LSTMCell(5, 7, gates="sigmoid")
    with torch.no_grad():
        cell.weight_ih.copy_(reference.weight_ih)
        cell.weight_hh.copy_(reference.weight_hh)
        cell.bias.copy_(reference.bias_ih + reference.bias_hh)
    x, h, c = torch.randn(3, 5), torch.randn(3, 7), torch.randn(3, 7)
    want_h, want_c = reference(x, (h, c))
    got_h, (_, got_c) = cell(x, (h, c))
    torch.testing.assert_close(got_h, want_h)
    torch.testing.assert_close(got_c, want_c)


def gates_of(cell: G2LSTMCell, a: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The four gates for pre-activations ``a`` (batch, 4H) at h = 0."""
    return cell.gates(a, torch.zeros(a.shape[0], cell.hidden_size))


def test_gumbel_noise_only_in_training_and_only_on_input_and_forget_gates():
    cell = G2LSTMCell(3, 50, gates="gumbel")
    a = torch.randn(40, 200) * 2
    a_i, a_f, a_g, a_o = a.chunk(4, dim=-1)
    i, f, g, o = gates_of(cell.train(), a)
    torch.testing.assert_close(g, torch.tanh(a_g), rtol=0, atol=0)
    torch.testing.assert_close(o, torch.sigmoid(a_o), rtol=0, atol=0)
    for noisy, pre in ((i, a_i), (f, a_f)):
        assert not torch.allclose(noisy, torch.sigmoid(pre / 0.9), atol=1e-3)
        assert (noisy - torch.sigmoid(pre / 0.9)).abs().mean() > 0.1
    assert not torch.equal(gates_of(cell, a)[0], i), "fresh noise at every call"
    evaluated = gates_of(cell.eval(), a)
    for got, want in zip(evaluated, (torch.sigmoid(a_i), torch.sigmoid(a_f), torch.tanh(a_g), torch.sigmoid(a_o))):
        torch.testing.assert_close(got, want)


def test_gumbel_gate_is_a_relaxed_bernoulli_of_sigmoid_a():
    """Proposition 3.1's proof: G(a, tau) >= 1 - eps with probability sigmoid(a - tau log(1/eps - 1)),
    and symmetrically at the bottom; eps = 1/2 gives sigmoid(a), the Bernoulli being relaxed."""
    cell = G2LSTMCell(1, 500, gates="gumbel").train()
    a = torch.full((200, 2000), 1.0)
    i, f, _, _ = gates_of(cell, a)
    values = torch.cat([i, f])
    for eps in (0.5, 0.1, 0.01):
        margin = 0.9 * math.log(1 / eps - 1)
        top = values.ge(1 - eps).double().mean().item()
        bottom = values.le(eps).double().mean().item()
        assert top == pytest.approx(sigmoid(1.0 - margin), abs=0.005)
        assert bottom == pytest.approx(sigmoid(-1.0 - margin), abs=0.005)


def test_gumbel_fraction_leaves_the_other_gate_values_without_noise():
    cell = G2LSTMCell(1, 500, gates="gumbel", gumbel_fraction=0.3).train()
    a = torch.randn(100, 2000)
    i, f, _, _ = gates_of(cell, a)
    quiet = torch.cat([i, f]).eq(torch.sigmoid(torch.cat(a.chunk(4, dim=-1)[:2]) / 0.9))
    assert quiet.double().mean().item() == pytest.approx(0.7, abs=0.02)


def test_sharpened_gates_are_deterministic():
    cell = G2LSTMCell(2, 6, gates="sharpened", temperature=0.3)
    a = torch.randn(5, 24)
    train = gates_of(cell.train(), a)
    evaluation = gates_of(cell.eval(), a)
    for got, want in zip(train, evaluation):
        assert torch.equal(got, want)
    torch.testing.assert_close(train[0], torch.sigmoid(a[:, :6] / 0.3))


def tiny_nru(relu_heads: bool) -> NRUCell:
    """Hidden 1, memory 4, one head (directions from 2-vectors): weights chosen by hand."""
    cell = NRUCell(1, 1, memory_size=4, memory_heads=1, relu_heads=relu_heads).double()
    with torch.no_grad():
        cell.weight_ih.copy_(torch.tensor([[0.5]], dtype=torch.float64))
        cell.weight_hm.copy_(torch.tensor([[0.2, 0.1, -0.1, 0.3, 0.0]], dtype=torch.float64))
        cell.bias.copy_(torch.tensor([0.1], dtype=torch.float64))
        heads = torch.zeros(10, 5, dtype=torch.float64)
        # rows: alpha, beta, p_w (2), q_w (2), p_e (2), q_e (2); columns: h, m (4)
        heads[:, 0] = torch.tensor([0.5, 0.25, 1.0, 2.0, 1.0, -1.0, 0.5, 0.0, 2.0, 2.0], dtype=torch.float64)
        heads[0, 1] = 0.1  # alpha also reads m[0]
        cell.heads.weight.copy_(heads)
        cell.heads.bias.zero_()
    return cell


@pytest.mark.parametrize("relu_heads", [False, True])
def test_nru_step_by_hand(relu_heads):
    cell = tiny_nru(relu_heads)
    x = torch.tensor([[2.0]], dtype=torch.float64)
    m = torch.tensor([[1.0, 0.0, -1.0, 2.0]], dtype=torch.float64)
    h, (_, new_m) = cell(x, (torch.tensor([[0.5]], dtype=torch.float64), m))
    # pre-activation 0.5*2 + 0.1 + 0.2*0.5 + 0.1*1 - 0.1*0 + 0.3*(-1) + 0*2 = 1.0
    assert h.item() == pytest.approx(1.0, abs=1e-12)
    alpha, beta = 0.5 + 0.1 * 1.0, 0.25
    write = [1.0, -1.0, 2.0, -2.0]  # outer([1, 2], [1, -1])
    erase = [1.0, 1.0, 0.0, 0.0]  # outer([0.5, 0], [2, 2])
    if relu_heads:
        write = [max(v, 0.0) for v in write]
    write_norm = sum(abs(v) ** 5 for v in write) ** 0.2
    erase_norm = sum(abs(v) ** 5 for v in erase) ** 0.2
    want = [mi + alpha * w / write_norm - beta * e / erase_norm for mi, w, e in zip(m[0].tolist(), write, erase)]
    assert new_m[0].tolist() == pytest.approx(want, abs=1e-12)


def test_nru_mean_over_heads_is_the_sum_divided_by_their_number():
    summed = NRUCell(3, 5, memory_size=16, memory_heads=4, head_reduction="sum")
    averaged = NRUCell(3, 5, memory_size=16, memory_heads=4, head_reduction="mean")
    averaged.load_state_dict(summed.state_dict())
    x, h, m = torch.randn(2, 3), torch.randn(2, 5), torch.randn(2, 16)
    _, (_, m_sum) = summed(x, (h, m))
    _, (_, m_mean) = averaged(x, (h, m))
    torch.testing.assert_close(m_mean - m, (m_sum - m) / 4)


def test_nru_directions_have_unit_l5_norm_and_layer_norm_normalises_the_pre_activation():
    cell = NRUCell(3, 6, memory_size=9, memory_heads=4, layer_norm=True)
    v = cell.directions(torch.randn(5, 6), torch.randn(5, 6))
    assert v.shape == (5, 4, 9)
    torch.testing.assert_close(torch.linalg.vector_norm(v, ord=5, dim=-1), torch.ones(5, 4))
    with torch.no_grad():
        cell.bias.fill_(100.0)  # a huge shift: layer norm removes it, so about half the units stay off
    h, _ = cell(torch.randn(64, 3))
    assert 0.2 < h.eq(0).double().mean().item() < 0.8


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(memory_size=64, memory_heads=3),
            r"memory_size \* memory_heads must be a perfect square .* 64 \* 3 = 192",
        ),
        (dict(memory_size=0, memory_heads=4), r"memory_size must be an integer >= 1; got 0"),
        (dict(memory_heads=2.0), r"memory_heads must be an integer >= 1; got 2.0"),
        (dict(head_reduction="max"), r"head_reduction must be one of \['mean', 'sum'\]; got 'max'"),
    ],
)
def test_nru_refuses_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NRUCell(4, 8, **kwargs)


def test_nru_option_errors_can_name_command_line_options():
    from fairseq_revrnn.units import memory_settings

    names = {"memory_size": "--memory-size", "memory_heads": "--memory-heads", "head_reduction": "--nru-head-reduction"}
    with pytest.raises(ValueError, match=r"--memory-size \* --memory-heads must be a perfect square"):
        memory_settings(10, 1, "sum", names)
    assert memory_settings(64, 4, "mean", names) == 16


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(gates="hard"), r"gates must be one of \['sigmoid', 'sharpened', 'gumbel'\]; got 'hard'"),
        (dict(gates="gumbel", temperature=0.0), r"temperature must be a number > 0; got 0.0"),
        (dict(gates="sharpened", temperature=-1), r"temperature must be a number > 0; got -1"),
        (dict(gates="sigmoid", temperature=0.5), r"temperature is only used with gates sharpened or gumbel"),
        (dict(gates="gumbel", gumbel_fraction=1.5), r"gumbel_fraction must be in \(0, 1\]; got 1.5"),
        (dict(gates="sharpened", gumbel_fraction=0.5), r"gumbel_fraction is only used with gates gumbel"),
    ],
)
def test_g2_refuses_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        G2LSTMCell(4, 8, **kwargs)


CELLS = {
    "g2_gumbel": functools.partial(G2LSTMCell, gates="gumbel"),
    "g2_sharpened": functools.partial(G2LSTMCell, gates="sharpened"),
    "nru": functools.partial(NRUCell, memory_size=4, memory_heads=4),
    "nru_ln_relu_mean": functools.partial(
        NRUCell, memory_size=9, memory_heads=1, layer_norm=True, relu_heads=True, head_reduction="mean"
    ),
}


@pytest.mark.parametrize("name", CELLS)
def test_gradcheck_through_the_runner(name):
    """Inputs, initial states and every parameter, float64, two layers over three steps with
    padding; Gumbel noise drawn from the same seed at every evaluation (training mode)."""
    rnn = CellRNN(CELLS[name], 3, [4, 4]).double().train()
    x = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    states = [tuple(torch.randn(2, s, dtype=torch.float64, requires_grad=True) for s in cell.state_sizes)
              for cell in rnn.cells]  # fmt: skip
    valid = torch.tensor([[False, True], [True, True], [True, True]])
    names = [n for n, _ in rnn.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in rnn.parameters()]
    flat_states = [v for state in states for v in state]

    def run(x, *tensors):
        torch.manual_seed(1)
        weights = dict(zip(names, tensors[: len(names)]))
        rest = tensors[len(names) :]
        init = [tuple(rest[i : i + 2]) for i in range(0, len(rest), 2)]
        out, finals = functional_call(rnn, weights, (x, init, valid))
        return out.sum() + sum(v.square().sum() for state in finals for v in state)

    assert torch.autograd.gradcheck(run, (x, *params, *flat_states), eps=1e-6, atol=1e-5)


def first_input_gradient(cell_factory, steps: int) -> float:
    """||d sum(h_T) / d x_1||, float64, 4 random sequences of 8 features, 32 units."""
    torch.manual_seed(3)
    rnn = CellRNN(cell_factory, 8, [32]).double()
    x = torch.randn(1000, 4, 8, dtype=torch.float64)[:steps].requires_grad_()
    out, _ = rnn(x)
    (grad,) = torch.autograd.grad(out[-1].sum(), x)
    assert torch.isfinite(grad).all()
    return grad[0].norm().item()


def test_nru_gradients_do_not_vanish_over_1000_steps_where_an_lstm_gradient_does():
    """The paper's claim, measured at initialisation: from 10 to 1000 steps an LSTM's gradient
    with respect to the first input decays geometrically (forget gates near 1/2), while NRU's
    additive memory carries it undiminished (it grows: the memory feeds its own updates)."""
    lstm = functools.partial(G2LSTMCell, gates="sigmoid")
    nru = functools.partial(NRUCell, memory_size=64, memory_heads=4)
    lstm_10, lstm_100, lstm_1000 = (first_input_gradient(lstm, steps) for steps in (10, 100, 1000))
    nru_10, nru_100, nru_1000 = (first_input_gradient(nru, steps) for steps in (10, 100, 1000))
    print(f"after 10, 100, 1000 steps: LSTM {lstm_10:.3g}, {lstm_100:.3g}, {lstm_1000:.3g}; "
          f"NRU {nru_10:.3g}, {nru_100:.3g}, {nru_1000:.3g}")  # fmt: skip
    assert lstm_100 < 1e-10 * lstm_10 and lstm_1000 < 1e-100 * lstm_10
    assert nru_1000 > nru_100 > nru_10 > 1e-3


def test_runner_keeps_the_state_over_padding_on_either_side():
    rnn = CellRNN(functools.partial(NRUCell, memory_size=16, memory_heads=1), 3, [5, 5]).eval()
    seq = torch.randn(4, 1, 3)
    alone_out, alone = rnn(seq)
    pad = torch.randn(2, 1, 3)
    for x, valid in (
        (torch.cat([pad, seq]), torch.tensor([False, False, True, True, True, True]).unsqueeze(1)),
        (torch.cat([seq, pad]), torch.tensor([True, True, True, True, False, False]).unsqueeze(1)),
    ):
        out, finals = rnn(x, valid=valid)
        for got, want in zip(finals, alone):
            for u, v in zip(got, want):
                torch.testing.assert_close(u, v)
        torch.testing.assert_close(out[valid.squeeze(1)], alone_out)
        assert out[~valid.squeeze(1)].eq(0).all()


def test_runner_steps_match_the_whole_sequence_and_bidirectional_reads_reversed_time():
    rnn = CellRNN(functools.partial(G2LSTMCell, gates="gumbel"), 3, [6, 6], dropout=0.3).eval()
    x = torch.randn(5, 2, 3)
    whole, finals = rnn(x)
    states, outputs = rnn.initial_state(2, x), []
    for t in range(5):
        out, states = rnn.step(x[t], states)
        outputs.append(out)
    torch.testing.assert_close(torch.stack(outputs), whole)
    for got, want in zip(states, finals):
        torch.testing.assert_close(got[1], want[1])

    bi = CellRNN(functools.partial(G2LSTMCell, gates="sigmoid"), 3, [6], bidirectional=True).eval()
    out, (forward, backward) = bi(x)
    assert out.shape == (5, 2, 12)
    _, (reverse_state,) = CellRNN(lambda i, h: bi.cells[1], 3, [6])(x.flip(0))
    torch.testing.assert_close(backward[0], reverse_state[0])
    torch.testing.assert_close(out[0, :, 6:], backward[0])
    with pytest.raises(ValueError, match="bidirectional CellRNN cannot run one step at a time"):
        bi.step(x[0], bi.initial_state(2, x))
