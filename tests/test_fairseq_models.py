"""The fairseq models and criterions, in-process: memory, losses, decoding."""

import importlib

import pytest
import torch

from fairseq_revrnn.core import SavedTensorMeter, total

from .fairseq_helpers import TINY_NMT, build, sample

pytest.importorskip("fairseq")


DIMS = {48, 40, 24}  # hidden, embedding, half-hidden of TINY_NMT
# Per-layer states, buffers and overflow words: bounded, whatever the length.
STATE_BUDGET = 16 * 6 * 48 * 2 * 2  # 16 state-sized tensors x batch 6 x 2 layers x (encoder, decoder)


def _forbidden(shape, lengths, batch, dims) -> bool:
    return (
        len(shape) == 3 and set(shape) >= {batch} and (shape[0] in lengths or shape[1] in lengths) and shape[2] in dims
    )


def _per_step_elements(shapes, batch: int) -> int:
    return sum(s[0] * s[1] for s in shapes if len(s) == 2 and s[0] == batch and s[1] in DIMS)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("attention", ["slice", "emb", "emb+slice", "none"])
def test_training_step_keeps_nothing_of_hidden_or_embedding_size(multi30k_bin, cell, attention):
    extra = ["--attention-slice-dim", "6"] if "slice" in attention else []
    task, model, criterion = build(
        multi30k_bin, "--arch", f"rev_{cell}", *TINY_NMT, "--attention", attention, *extra,
        "--encoder-layers", "2", "--decoder-layers", "2", "--dropout-hidden", "0.3",
        "--criterion", "rev_label_smoothed_cross_entropy", "--label-smoothing", "0.1",
    )  # fmt: skip
    model.train()
    batch = sample(task, n=6)
    src_len, tgt_len = batch["net_input"]["src_tokens"].shape[1], batch["target"].shape[1]
    with SavedTensorMeter(exclude=list(model.parameters())) as meter:
        loss, _, log = criterion(model, batch)
    loss.backward()
    bad = [s for s in meter.shapes if _forbidden(s, {src_len, tgt_len}, 6, DIMS)]
    assert not bad, f"saved activations of hidden/embedding size: {bad}"
    assert _per_step_elements(meter.shapes, 6) <= STATE_BUDGET, "per-step states are being kept"
    if "slice" in attention:
        assert (src_len, 6, 6) in meter.shapes, "the attention slice is what the encoder keeps"
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    assert log["_mem_enc_actual"] < log["_mem_enc_naive"]


def test_ordinary_mode_does_keep_them(multi30k_bin):
    task, model, criterion = build(
        multi30k_bin, "--arch", "rev_lstm", *TINY_NMT, "--attention-slice-dim", "6", "--no-reversible",
        "--encoder-layers", "2", "--decoder-layers", "2", "--criterion", "rev_cross_entropy",
    )  # fmt: skip
    batch = sample(task, n=6)
    with SavedTensorMeter(exclude=list(model.parameters())) as meter:
        loss, _, log = criterion(model, batch)
    assert _per_step_elements(meter.shapes, 6) > STATE_BUDGET
    assert log["_mem_enc_actual"] == log["_mem_enc_naive"]


def test_hidden_attention_keeps_encoder_states_as_documented(multi30k_bin):
    task, model, criterion = build(
        multi30k_bin, "--arch", "rev_lstm", *TINY_NMT, "--attention", "hidden", "--criterion", "rev_cross_entropy"
    )
    batch = sample(task, n=6)
    with SavedTensorMeter(exclude=list(model.parameters())) as meter:
        criterion(model, batch)[0].backward()
    assert (batch["net_input"]["src_tokens"].shape[1], 6, 48) in meter.shapes


@pytest.mark.parametrize(
    "rev, ref, extra",
    [
        ("rev_cross_entropy", "cross_entropy", []),
        (
            "rev_label_smoothed_cross_entropy",
            "label_smoothed_cross_entropy",
            ["--label-smoothing", "0.1", "--report-accuracy"],
        ),
    ],
)
def test_criterions_compute_fairseqs_loss(multi30k_bin, rev, ref, extra):
    """``--no-fused-loss`` is fairseq's criterion bit for bit; the fused loss equals it to rounding."""
    from fairseq import criterions

    task, model, criterion = build(
        multi30k_bin, "--arch", "rev_gru", *TINY_NMT, "--criterion", rev, *extra, "--no-fused-loss"
    )
    fused = build(multi30k_bin, "--arch", "rev_gru", *TINY_NMT, "--criterion", rev, *extra)[2]
    model.eval()
    reference = criterions.CRITERION_REGISTRY[ref](task, **_criterion_kwargs(criterion))
    batch = sample(task)
    with torch.no_grad():
        ours, size_a, log_a = criterion(model, batch)
        theirs, size_b, log_b = reference(model, batch)
        close, _, _ = fused(model, batch)
    assert torch.equal(ours, theirs) and size_a == size_b
    assert {k: v for k, v in log_a.items() if not k.startswith("_mem_")} == log_b
    assert {"_mem_enc_naive", "_mem_dec_actual", "_mem_dec_ideal"} <= set(log_a)
    assert torch.allclose(close, theirs, rtol=1e-5)


def _criterion_kwargs(criterion):
    kwargs = {"sentence_avg": criterion.sentence_avg}
    if hasattr(criterion, "eps"):
        kwargs.update(label_smoothing=criterion.eps, report_accuracy=criterion.report_accuracy)
    return kwargs


def test_memory_counts_travel_with_the_output(multi30k_bin):
    """The encoder returns its bit counts in ``encoder_out`` (reordering keeps them), the decoder
    both parts in ``extra``, with logits or the fused loss alike; the criterion logs those of the
    output it computes the loss from. The model keeps none."""
    task, model, criterion = build(
        multi30k_bin, "--arch", "rev_lstm", *TINY_NMT, "--attention", "hidden", "--encoder-layers", "2",
        "--decoder-layers", "2", "--criterion", "rev_cross_entropy",
    )  # fmt: skip
    model.eval()
    batch = sample(task, n=6)
    net_input = batch["net_input"]
    with torch.no_grad():
        encoder_out = model.encoder(net_input["src_tokens"], net_input["src_lengths"])
        _, extra = model.decoder(net_input["prev_output_tokens"], encoder_out)
        _, fused_extra = model(**net_input, **criterion.loss_request(batch))
        _, _, log = criterion(model, batch)
    assert len(encoder_out["memory"]) == 2
    assert model.encoder.reorder_encoder_out(encoder_out, torch.arange(5, -1, -1))["memory"] == encoder_out["memory"]
    memory = extra["memory"]
    assert set(memory) == {"enc", "dec"} and memory["enc"] == total(encoder_out["memory"])
    assert fused_extra["fused_loss"] and fused_extra["memory"] == memory
    for part, stats in memory.items():
        logged = [log[f"_mem_{part}_{kind}"] for kind in ("naive", "actual", "ideal")]
        assert logged == [stats.naive_bits, stats.actual_bits, stats.ideal_bits]
    assert not any(hasattr(m, name) for m in model.modules() for name in ("last_memory", "memory_stats"))


def test_fairseqs_own_models_work_with_the_plugins_criterions(multi30k_bin):
    """fairseq's ``lstm`` returns its attention weights (or None) where ours return a dict: the
    criterion takes fairseq's path, logs no memory counts and computes fairseq's loss."""
    from fairseq import criterions

    sizes = ["--encoder-embed-dim", "--decoder-embed-dim", "--encoder-hidden-size", "--decoder-hidden-size",
             "--decoder-out-embed-dim"]  # fmt: skip
    args = ["--arch", "lstm", *(v for size in sizes for v in (size, "16")), "--criterion", "rev_cross_entropy"]
    task, model, criterion = build(multi30k_bin, *args)
    reference = criterions.CRITERION_REGISTRY["cross_entropy"](task, sentence_avg=False)
    batch = sample(task, n=4)
    model.train()
    loss, _, log = criterion(model, batch)
    loss.backward()
    assert not any(k.startswith("_mem_") for k in log)
    model.eval()
    with torch.no_grad():
        assert torch.equal(criterion(model, batch)[0], reference(model, batch)[0])


@pytest.mark.parametrize("arch, attention", [("rev_lstm", "emb+slice"), ("rev_gru", "hidden"), ("rev_lstm", "none")])
def test_greedy_incremental_decoding_matches_full_forward(multi30k_bin, arch, attention):
    from fairseq.sequence_generator import SequenceGenerator

    extra = ["--attention-slice-dim", "5"] if "slice" in attention else []
    torch.manual_seed(0)
    task, model, _ = build(
        multi30k_bin, "--arch", arch, *TINY_NMT, "--attention", attention, *extra, "--encoder-layers", "2",
        "--decoder-layers", "2",
    )  # fmt: skip
    model.eval()
    tgt = task.target_dictionary
    generator = SequenceGenerator([model], tgt, beam_size=1, max_len_a=0, max_len_b=12)
    checked = ties = 0
    for i in range(5):
        one = sample(task, n=1, start=i)
        hyp = generator.generate([model], one)[0][0]["tokens"]
        prev = torch.cat([hyp.new_tensor([tgt.eos()]), hyp[:-1]]).unsqueeze(0)
        with torch.no_grad():
            logits, _ = model(one["net_input"]["src_tokens"], one["net_input"]["src_lengths"], prev)
        lprobs = torch.log_softmax(logits[0].float(), -1)
        lprobs[:, tgt.pad()] = float("-inf")
        lprobs[0, tgt.eos()] = float("-inf")  # min_len = 1
        full = lprobs.argmax(-1)
        steps = len(hyp) if hyp[-1] != tgt.eos() or len(hyp) <= 12 else len(hyp) - 1
        for t in full[:steps].ne(hyp[:steps]).nonzero().flatten().tolist():
            # The states are exact; the full pass projects all steps in one matrix multiply, so
            # logits differ by float rounding (~4e-8) and only a near-tie may pick another token.
            assert lprobs[t, full[t]] - lprobs[t, hyp[t]] < 1e-6, (t, full, hyp)
            ties += 1
        checked += steps
    assert checked >= 10 and ties <= 1


def test_lm_forward_and_memory_names(ptb_bin):
    task, model, criterion = build(
        ptb_bin, "--arch", "rev_lstm_lm", "--decoder-embed-dim", "32", "--decoder-hidden-sizes", "48,32",
        "--share-decoder-input-output-embed", "--tokens-per-sample", "30", "--criterion", "rev_cross_entropy",
        task="language_modeling",
    )  # fmt: skip
    batch = sample(task, n=4)
    loss, _, log = criterion(model, batch)
    loss.backward()
    assert set(k for k in log if k.startswith("_mem_")) == {"_mem_lm_naive", "_mem_lm_actual", "_mem_lm_ideal"}
    assert model.decoder.embed_tokens.weight.grad.abs().sum() > 0


def test_memory_metrics_are_derived_with_the_documented_names():
    from fairseq.logging import metrics

    from fairseq_revrnn.criterions.rev_cross_entropy import RevCrossEntropyCriterion

    logs = [
        {"loss": 2.0, "ntokens": 10, "sample_size": 10, "nsentences": 2,
         "_mem_enc_naive": 640.0, "_mem_enc_actual": 64.0, "_mem_enc_ideal": 32.0,
         "_mem_dec_naive": 1280.0, "_mem_dec_actual": 128.0, "_mem_dec_ideal": 40.0},
    ]  # fmt: skip
    with metrics.aggregate() as agg:
        RevCrossEntropyCriterion.reduce_metrics(logs)
        values = agg.get_smoothed_values()
    assert values["mem_savings"] == 10.0
    assert values["mem_savings_ideal"] == round(1920 / 72, 2)
    assert values["enc_mem_savings"] == 10.0 and values["dec_mem_savings"] == 10.0
    assert values["enc_mem_savings_ideal"] == 20.0 and values["dec_mem_savings_ideal"] == 32.0
    assert not any(k.startswith("_mem") for k in values)


def test_importing_the_plugin_twice_registers_nothing_twice():
    import fairseq_revrnn.criterions.rev_cross_entropy as crit
    import fairseq_revrnn.models.rev_rnn as nmt
    import fairseq_revrnn.models.rev_rnn_lm as lm

    for module in (nmt, lm, crit):
        importlib.reload(module)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--attention-slice-dim", "30"], r"--attention-slice-dim must be in 1\.\.24"),
        (["--attention", "emb", "--attention-slice-dim", "4"], "--attention-slice-dim is only used with"),
        (["--encoder-hidden-size", "47", "--decoder-hidden-size", "47"], "--encoder-hidden-size must be an even"),
        (["--decoder-layers", "2"], "--decoder-layers/--decoder-hidden-size must equal"),
    ],
)
def test_bad_model_options_name_the_option(multi30k_bin, extra, message):
    args = ["--encoder-embed-dim", "40", "--decoder-embed-dim", "40", "--encoder-hidden-size", "48"]
    with pytest.raises(ValueError, match=message):
        build(multi30k_bin, "--arch", "rev_lstm", *args, *extra)


def test_non_finite_loss_stops_training_with_its_name(multi30k_bin):
    task, model, criterion = build(multi30k_bin, "--arch", "rev_gru", *TINY_NMT, "--criterion", "rev_cross_entropy")
    with torch.no_grad():
        model.decoder.out_bias[5] = float("nan")
    with pytest.raises(FloatingPointError, match="rev_cross_entropy: the loss is not finite"):
        criterion(model, sample(task))


def test_non_finite_parameter_is_named(multi30k_bin):
    task, model, criterion = build(multi30k_bin, "--arch", "rev_lstm", *TINY_NMT, "--criterion", "rev_cross_entropy")
    with torch.no_grad():
        model.encoder.rnn.weight_hh1_l0[0, 0] = float("inf")
    with pytest.raises(FloatingPointError, match="parameter weight_hh1_l0"):
        criterion(model, sample(task))


def test_memory_metrics_are_derived_from_all_reduced_tensors():
    """With several workers fairseq sums the logging outputs with all_reduce: the values are tensors."""
    from fairseq.logging import metrics

    from fairseq_revrnn.criterions.rev_cross_entropy import RevLabelSmoothedCrossEntropyCriterion

    summed = {"loss": 4.0, "nll_loss": 3.0, "ntokens": 20, "sample_size": 20, "nsentences": 4,
              "_mem_enc_naive": 1280.0, "_mem_enc_actual": 128.0, "_mem_enc_ideal": 64.0,
              "_mem_dec_naive": 2560.0, "_mem_dec_actual": 256.0, "_mem_dec_ideal": 80.0}  # fmt: skip
    logs = [{k: torch.tensor(float(v), dtype=torch.float64) for k, v in summed.items()}]
    with metrics.aggregate() as agg:
        RevLabelSmoothedCrossEntropyCriterion.reduce_metrics(logs)
        values = agg.get_smoothed_values()
    assert values["mem_savings"] == 10.0 and values["enc_mem_savings_ideal"] == 20.0
    assert values["dec_mem_savings_ideal"] == 32.0 and values["mem_savings_ideal"] == round(3840 / 144, 2)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--dropout-embed", "1.0"], r"--dropout-embed must be a probability in \[0, 1\); got 1\.0"),
        (["--dropout-embed", "1.5"], r"--dropout-embed must be a probability in \[0, 1\); got 1\.5"),
        (["--dropout-embed", "-0.5"], r"--dropout-embed must be a probability in \[0, 1\); got -0\.5"),
        (["--dropout-in", "nan"], r"--dropout-in must be a probability in \[0, 1\); got nan"),
        (["--dropout-hidden", "1"], r"--dropout-hidden must be a probability in \[0, 1\)"),
        (["--dropout-out", "-1"], r"--dropout-out must be a probability in \[0, 1\)"),
        (["--encoder-layers", "0", "--decoder-layers", "0"], "--encoder-layers must be an integer >= 1; got 0"),
        (["--encoder-embed-dim", "0"], "--encoder-embed-dim must be an integer >= 1; got 0"),
        (["--max-target-positions", "-3"], "--max-target-positions must be an integer >= 1; got -3"),
        (["--max-hidden-forget", "1.5"], r"--max-hidden-forget must be a number in \(0\.125, 1\)"),
        (["--max-hidden-forget", "0.5", "--max-forget-bits", "1"], r"must be a number in \(0\.5, 1\)"),
        (["--max-hidden-forget", "high"], r"--max-hidden-forget must be a number in \(0, 1\), 'none' or 'auto'"),
        (["--max-hidden-forget", "0.9", "--no-forgetting"], "the no-forgetting variant has none"),
    ],
)
def test_numeric_options_are_checked_at_build(multi30k_bin, extra, message):
    with pytest.raises(ValueError, match=message):
        build(multi30k_bin, "--arch", "rev_lstm", *TINY_NMT, *extra)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--dropout-embed", "1.0"], r"--dropout-embed must be a probability in \[0, 1\)"),
        (["--decoder-layers", "0"], "--decoder-layers must be an integer >= 1; got 0"),
        (["--decoder-embed-dim", "-1"], "--decoder-embed-dim must be an integer >= 1; got -1"),
        (["--decoder-hidden-sizes", "32,7"], r"--decoder-hidden-size\(s\) must be an even integer >= 2"),
    ],
)
def test_language_model_options_are_checked_at_build(ptb_bin, extra, message):
    with pytest.raises(ValueError, match=message):
        build(ptb_bin, "--arch", "rev_gru_lm", "--tokens-per-sample", "30", *extra, task="language_modeling")


@pytest.mark.parametrize(
    "arch, extra, bound",
    [
        ("rev_lstm_lm", [], 0.9375),
        ("rev_gru_lm", [], None),
        ("rev_lstm_lm", ["--max-hidden-forget", "none"], None),
        ("rev_gru_lm", ["--max-hidden-forget", "0.75"], 0.75),
        ("rev_lstm_lm", ["--no-forgetting"], None),
    ],
)
def test_the_forget_bound_of_h_defaults_by_cell(ptb_bin, arch, extra, bound):
    _, model, _ = build(ptb_bin, "--arch", arch, "--decoder-embed-dim", "16", "--decoder-hidden-size", "16",
                        "--tokens-per-sample", "30", *extra, task="language_modeling")  # fmt: skip
    assert model.decoder.rnn.config.forgetting.hidden_ceiling == bound


def test_language_model_eos_break_mode_loads(ptb_bin):
    """fairseq's TokenBlockDataset in eos mode uses np.compat (gone in numpy 2)."""
    task, model, criterion = build(
        ptb_bin, "--arch", "rev_lstm_lm", "--decoder-embed-dim", "16", "--decoder-hidden-size", "16",
        "--tokens-per-sample", "100", "--sample-break-mode", "eos", "--criterion", "rev_cross_entropy",
        task="language_modeling",
    )  # fmt: skip
    batch = sample(task, n=4)
    eos = task.dictionary.eos()
    assert batch["net_input"]["src_tokens"][:, 0].eq(eos).all(), "each sample starts a sentence"
    assert batch["target"].eq(eos).sum(1).eq(1).all(), "and holds exactly one"
    loss, _, _ = criterion(model, batch)
    assert torch.isfinite(loss)


def test_beam_search_scores_equal_forced_scoring_of_the_hypotheses(multi30k_bin):
    """Beam 4 over several sentences reorders the encoder output and the decoder's exact state
    (with its buffers) at every step; each hypothesis's token scores must be what a teacher-forced
    pass over that hypothesis alone gives."""
    from fairseq.sequence_generator import SequenceGenerator

    task, model, _ = build(
        multi30k_bin, "--arch", "rev_lstm", *TINY_NMT, "--attention-slice-dim", "5", "--encoder-layers", "2",
        "--decoder-layers", "2",
    )  # fmt: skip
    model.eval()
    src_dict, tgt = task.source_dictionary, task.target_dictionary
    generator = SequenceGenerator([model], tgt, beam_size=4, max_len_a=0, max_len_b=10)
    batch = sample(task, n=4)
    checked = 0
    for i, nbest in enumerate(generator.generate([model], batch)):
        src = batch["net_input"]["src_tokens"][i]
        src = src[src.ne(src_dict.pad())].unsqueeze(0)
        for hyp in nbest:
            tokens = hyp["tokens"]
            prev = torch.cat([tokens.new_tensor([tgt.eos()]), tokens[:-1]]).unsqueeze(0)
            with torch.no_grad():
                logits, _ = model(src, torch.tensor([src.shape[1]]), prev)
            forced = torch.log_softmax(logits[0].float(), -1).gather(1, tokens.unsqueeze(1)).squeeze(1)
            assert torch.allclose(hyp["positional_scores"], forced, atol=1e-4), (i, hyp, forced)
            checked += 1
    assert checked == 16


class NotAllowListed:
    """Any class fairseq does not write into checkpoints."""


def test_safe_loading_still_refuses_other_objects_in_process(tmp_path):
    import argparse
    import pickle

    import fairseq_revrnn  # noqa: F401  (installs the allow-list)

    torch.save({"args": argparse.Namespace(arch="lstm")}, tmp_path / "fairseq.pt")
    assert torch.load(tmp_path / "fairseq.pt")["args"].arch == "lstm"
    torch.save({"x": NotAllowListed()}, tmp_path / "other.pt")
    with pytest.raises(pickle.UnpicklingError, match="NotAllowListed"):
        torch.load(tmp_path / "other.pt")
