"""Bad configuration fails early with the option's name and what is allowed."""

import pytest

from fairseq_revrnn.core import ReversibleRNN


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(hidden_sizes=[7]), "hidden sizes must be even"),
        (dict(hidden_sizes=[8, 5]), "hidden sizes must be even"),
        (dict(hidden_sizes=[8], slice_dim=5), r"slice_dim must be an integer in 0\.\.4"),
        (dict(max_forget_bits=0), r"max_forget_bits must be an integer in 1\.\.10 \(the forget radix\) or None"),
        (dict(max_forget_bits=-2), r"max_forget_bits must be an integer in 1\.\.10 \(the forget radix\) or None"),
        (dict(max_forget_bits=2.5), r"max_forget_bits must be an integer in 1\.\.10 \(the forget radix\) or None"),
        (dict(cell_type="rnn"), r"cell_type must be one of \['gru', 'lstm'\]"),
        (dict(dropout_out=1.0), r"dropout_out must be in \[0, 1\)"),
        (dict(hidden_sizes=[]), "hidden_sizes must name at least one layer"),
    ],
)
def test_bad_configuration_raises_value_error(kwargs, message):
    args = dict(cell_type="lstm", input_size=4, hidden_sizes=[8])
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ReversibleRNN(**args)


def test_wrong_input_shapes_are_reported():
    import torch

    module = ReversibleRNN("gru", 4, [8])
    with pytest.raises(ValueError, match="inputs have 3 features but input_size is 4"):
        module(torch.randn(5, 2, 3))
    with pytest.raises(ValueError, match=r"valid must have shape \(5, 2\)"):
        module(torch.randn(5, 2, 4), torch.ones(5, 3, dtype=torch.bool))


def test_non_finite_values_stop_with_their_location():
    import torch

    module = ReversibleRNN("lstm", 4, [8, 6])
    x = torch.randn(5, 2, 4)
    with torch.no_grad():
        module.weight_hh2_l1[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="parameter weight_hh2_l1"):
        module(x)
    with torch.no_grad():
        module.weight_hh2_l1[0, 0] = 0.0
    x[3, 1, 2] = float("inf")
    with pytest.raises(FloatingPointError, match="input"):
        module(x)
