"""G2 gates in the reversible cells (issue 11): Gumbel noise regenerated for the
reverse, so reversal stays exact and gradients equal the ordinary mode's."""

import pytest
import torch

from fairseq_revrnn.core import ReversibleRNN

from .helpers import assert_exact_and_ordinary, padded_inputs


def make(cell: str, gates: str, **kwargs) -> ReversibleRNN:
    return ReversibleRNN(cell, 5, [8, 6], max_forget_bits=3, slice_dim=2, gates=gates, **kwargs).double()


@pytest.mark.parametrize("gates", ["gumbel", "sharpened"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_g2_gates_reverse_exactly_and_match_the_ordinary_gradients(cell, gates):
    module = make(cell, gates)
    x, valid = padded_inputs(40)
    assert_exact_and_ordinary(module, x, valid)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_gumbel_noise_is_drawn_per_call_in_training_and_absent_in_evaluation(cell):
    module = make(cell, "gumbel")
    x, _ = padded_inputs(12)
    torch.manual_seed(1)
    first = module(x).outputs
    torch.manual_seed(1)
    assert torch.equal(module(x).outputs, first), "the seed comes from torch's generator"
    assert not torch.equal(module(x).outputs, first), "a new call draws new noise"

    plain = make(cell, "sigmoid")
    plain.load_state_dict(module.state_dict())
    module.eval()
    plain.eval()
    assert torch.equal(module(x).outputs, plain(x).outputs), "evaluation uses plain sigmoids"
    plain.train()
    assert not torch.equal(plain(x).outputs, first)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_sharpened_gates_keep_their_temperature_in_evaluation(cell):
    module, plain = make(cell, "sharpened", gate_temperature=0.2), make(cell, "sigmoid")
    plain.load_state_dict(module.state_dict())
    module.eval()
    plain.eval()
    x, _ = padded_inputs(12)
    assert not torch.equal(module(x).outputs, plain(x).outputs)
    step_by_step = torch.cat([module.advance(x[:5])[0], module.advance(x[5:], module.advance(x[:5])[1])[0]])
    assert torch.equal(step_by_step, module(x).outputs), "decoding in pieces computes the same gates"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"gates": "binary"}, "gates must be one of sigmoid, sharpened, gumbel; got 'binary'"),
        ({"gates": "gumbel", "gate_temperature": 0}, "gate_temperature must be a number > 0; got 0"),
    ],
)
def test_bad_gate_options_name_the_option(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReversibleRNN("lstm", 4, [4], **kwargs)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_compiled_g2_gates_reverse_exactly_and_match_the_ordinary_gradients(cell, compiling):
    module = ReversibleRNN(cell, 5, [8, 6], slice_dim=2, gates="gumbel", compile="on").double()
    x, valid = padded_inputs(20)
    assert_exact_and_ordinary(module, x, valid)
