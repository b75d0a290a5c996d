"""The G2-LSTM and NRU fairseq models in-process: decoding one token at a time equals a
full pass (beam reorders included), fairseq's criterions train every parameter, the
architectures set only what they name, and bad options name themselves."""

import argparse
import dataclasses

import pytest
import torch

from .fairseq_helpers import build, resolved_defaults, sample

pytest.importorskip("fairseq")

from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_INV_REGISTRY  # noqa: E402

from fairseq_revrnn.models import g2_lstm, nru  # noqa: E402

TINY = {
    "g2_lstm": ["--encoder-embed-dim", "16", "--encoder-hidden-size", "24"],
    "nru": ["--encoder-embed-dim", "16", "--encoder-hidden-size", "24", "--memory-size", "16", "--memory-heads", "1"],
}
TINY_LM = {
    "g2_lstm_lm": ["--decoder-embed-dim", "16", "--decoder-hidden-size", "24"],
    "nru_lm": ["--decoder-embed-dim", "16", "--decoder-hidden-size", "24", "--memory-size", "9", "--memory-heads", "4"],
}
LM = ["--tokens-per-sample", "20", "--sample-break-mode", "eos"]


def decode_stepwise(model, batch, order=None) -> torch.Tensor:
    """Logits of the target positions fed one at a time through incremental state; after the
    third step, ``order`` reorders the batch as beam search would."""
    net = batch["net_input"]
    encoder_out = model.encoder(net["src_tokens"], net["src_lengths"])
    prev = net["prev_output_tokens"]
    state, logits = {}, []
    for t in range(prev.shape[1]):
        if order is not None and t == 3:
            encoder_out = model.encoder.reorder_encoder_out(encoder_out, order)
            model.decoder.reorder_incremental_state_scripting(state, order)
            prev = prev.index_select(0, order)
            logits = [x.index_select(0, order) for x in logits]
        out, extra = model.decoder(prev[:, : t + 1], encoder_out=encoder_out, incremental_state=state)
        assert extra["attn"][0].shape == (prev.shape[0], 1, net["src_tokens"].shape[1])
        logits.append(out[:, -1])
    return torch.stack(logits, dim=1)


@pytest.mark.parametrize("arch", TINY)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_translation_decodes_one_token_at_a_time_as_a_full_pass(multi30k_bin, arch, bidirectional):
    extra = ["--encoder-bidirectional", "--encoder-layers", "2", "--decoder-layers", "2"] if bidirectional else []
    task, model, _ = build(multi30k_bin, "--arch", arch, *TINY[arch], *extra)
    model.eval()
    batch = sample(task, n=5)
    with torch.no_grad():
        full, _ = model(**batch["net_input"])
        torch.testing.assert_close(decode_stepwise(model, batch), full, atol=1e-5, rtol=1e-4)
        order = torch.tensor([4, 4, 0, 2, 1])
        torch.testing.assert_close(decode_stepwise(model, batch, order), full.index_select(0, order), atol=1e-5,
                                   rtol=1e-4)  # fmt: skip


@pytest.mark.parametrize("arch", TINY_LM)
def test_language_model_decodes_one_token_at_a_time_as_a_full_pass(ptb_bin, arch):
    task, model, _ = build(ptb_bin, "--arch", arch, *TINY_LM[arch], *LM, task="language_modeling")
    model.eval()
    tokens = sample(task, n=4)["net_input"]["src_tokens"][:, :8]
    with torch.no_grad():
        full, _ = model(tokens)
        state, steps = {}, []
        for t in range(tokens.shape[1]):
            steps.append(model.decoder(tokens[:, : t + 1], incremental_state=state)[0][:, -1])
    torch.testing.assert_close(torch.stack(steps, dim=1), full, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "arch, task, criterion",
    [
        ("g2_lstm", "translation", "label_smoothed_cross_entropy"),
        ("nru", "translation", "cross_entropy"),
        ("g2_lstm_lm", "language_modeling", "cross_entropy"),
        ("nru_lm", "language_modeling", "label_smoothed_cross_entropy"),
    ],
)
def test_fairseqs_criterions_train_every_parameter(multi30k_bin, ptb_bin, arch, task, criterion):
    lm = task == "language_modeling"
    data, sizes = (ptb_bin, TINY_LM[arch] + LM) if lm else (multi30k_bin, TINY[arch])
    extra = ["--label-smoothing", "0.1"] if criterion.startswith("label") else []
    t, model, crit = build(data, "--arch", arch, *sizes, "--criterion", criterion, *extra, task=task)
    model.train()
    loss, sample_size, log = crit(model, sample(t, n=6))
    loss.backward()
    assert torch.isfinite(loss) and sample_size > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_gumbel_gates_are_random_in_training_only_and_each_gate_type_builds(multi30k_bin):
    task, model, _ = build(multi30k_bin, "--arch", "g2_lstm", *TINY["g2_lstm"], "--dropout", "0")
    batch = sample(task, n=4)
    model.train()
    assert not torch.equal(model(**batch["net_input"])[0], model(**batch["net_input"])[0])
    model.eval()
    assert torch.equal(model(**batch["net_input"])[0], model(**batch["net_input"])[0])
    cell = model.encoder.rnn.cells[0]
    assert (cell.gate_type, cell.temperature, cell.gumbel_fraction) == ("gumbel", 0.9, 1.0)
    _, sharpened, _ = build(multi30k_bin, "--arch", "g2_lstm", *TINY["g2_lstm"], "--gates", "sharpened", split=None)
    assert sharpened.decoder.rnn.cells[0].temperature == 0.2, "the paper's sharpened-sigmoid temperature"
    _, baseline, _ = build(multi30k_bin, "--arch", "g2_lstm", *TINY["g2_lstm"], "--gates", "sigmoid", "--dropout", "0")
    baseline.train()
    assert torch.equal(baseline(**batch["net_input"])[0], baseline(**batch["net_input"])[0])
    assert (baseline.encoder.rnn.cells[0].gate_type, baseline.encoder.rnn.cells[0].temperature) == ("sigmoid", None)


@pytest.mark.parametrize(
    "args, task, message",
    [
        (["--arch", "nru", "--memory-size", "10", "--memory-heads", "3"], "translation",
         r"--memory-size \* --memory-heads must be a perfect square .* 10 \* 3 = 30"),
        (["--arch", "nru_lm", "--memory-heads", "0"], "language_modeling", "--memory-heads must be an integer >= 1"),
        (["--arch", "g2_lstm", "--gates", "sigmoid", "--gate-temperature", "0.5"], "translation",
         "--gate-temperature is only used with --gates sharpened or gumbel"),
        (["--arch", "g2_lstm_lm", "--gate-temperature", "0"], "language_modeling",
         "--gate-temperature must be a number > 0"),
        (["--arch", "g2_lstm", "--gumbel-fraction", "2"], "translation", r"--gumbel-fraction must be in \(0, 1\]"),
        (["--arch", "g2_lstm", "--decoder-layers", "2"], "translation", "--decoder-layers must equal --encoder-layers"),
        (["--arch", "nru", "--decoder-attention", "maybe"], "translation", "--decoder-attention must be True or False"),
        (["--arch", "g2_lstm", "--encoder-dropout-in", "1"], "translation",
         r"--encoder-dropout-in must be a probability in \[0, 1\)"),
        (["--arch", "g2_lstm", "--share-decoder-input-output-embed", "--decoder-out-embed-dim", "64"], "translation",
         "--share-decoder-input-output-embed needs the decoder's output size"),
        (["--arch", "nru_lm", "--decoder-hidden-sizes", "8,x"], "language_modeling",
         "--decoder-hidden-sizes must be comma-separated integers >= 1"),
    ],
)  # fmt: skip
def test_bad_options_name_themselves(multi30k_bin, ptb_bin, args, task, message):
    data = ptb_bin if task == "language_modeling" else multi30k_bin
    with pytest.raises(ValueError, match=message):
        build(data, *args, task=task, split=None)


MODELS = [
    ("g2_lstm", g2_lstm.G2LSTMConfig, g2_lstm.ARCHITECTURES),
    ("g2_lstm_lm", g2_lstm.G2LSTMLMConfig, g2_lstm.LM_ARCHITECTURES),
    ("nru", nru.NRUConfig, {}),
    ("nru_lm", nru.NRULMConfig, {}),
]


@pytest.mark.parametrize("model_name, config, architectures", MODELS, ids=[m[0] for m in MODELS])
def test_architectures_set_their_settings_over_the_defaults_and_nothing_else(model_name, config, architectures):
    defaults = {f.name: getattr(config(), f.name) for f in dataclasses.fields(config) if not f.name.startswith("_")}
    assert set(ARCH_MODEL_INV_REGISTRY[model_name]) - {model_name} == set(architectures)
    for arch, settings in architectures.items():
        assert all(name in defaults and defaults[name] != value for name, value in settings.items()), arch
        args = argparse.Namespace()
        ARCH_CONFIG_REGISTRY[arch](args)
        assert vars(args) == {**defaults, **settings}, arch


def test_paper_configurations(multi30k_bin, ptb_bin):
    from omegaconf import OmegaConf

    _, iwslt, _ = build(multi30k_bin, "--arch", "g2_lstm_iwslt_de_en", split=None)
    cfg = OmegaConf.to_container(iwslt.encoder.cfg, resolve=True)
    assert {k: cfg[k] for k in ("encoder_layers", "decoder_layers", "encoder_hidden_size", "decoder_embed_dim")} == {
        "encoder_layers": 2, "decoder_layers": 2, "encoder_hidden_size": 256, "decoder_embed_dim": 256,
    }  # fmt: skip
    _, ptb, _ = build(ptb_bin, "--arch", "g2_lstm_lm_ptb", task="language_modeling", split=None)
    assert [cell.hidden_size for cell in ptb.decoder.rnn.cells] == [1150, 1150, 400]
    assert ptb.decoder.fc_out is None and ptb.decoder.additional_fc is None, "tied to the 400-dim embeddings"
    resolved = resolved_defaults(
        g2_lstm.G2LSTMLMConfig, {"tokens_per_sample": 70}, g2_lstm.LM_ARCHITECTURES["g2_lstm_lm_ptb"]
    )
    assert (resolved["decoder_dropout_in"], resolved["decoder_dropout_out"]) == (0.4, 0.4)
