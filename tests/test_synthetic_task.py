"""The ``rnn_synthetic`` task in-process: the sequences each problem generates (layout, scored
positions, determinism per seed), the memoryless baseline, option errors, and every language
model of the plugin (and fairseq's ``lstm_lm``) training and validating on it."""

import math

import numpy as np
import pytest
import torch

pytest.importorskip("fairseq")

from fairseq import options, tasks  # noqa: E402
from fairseq.dataclass.utils import convert_namespace_to_omegaconf  # noqa: E402
from fairseq.logging import metrics  # noqa: E402

from fairseq_revrnn.tasks.rnn_synthetic import (  # noqa: E402
    SyntheticSpec,
    generate,
    split_seed,
    synthetic_dictionary,
    token_ids,
)

from .data import PLUGIN  # noqa: E402

IDS = token_ids(synthetic_dictionary(4))
P, B, M = IDS.pad, IDS.blank, IDS.marker  # 1, 4, 5; symbols s0..s3 are 6..9
REV = ["--dropout-in", "0", "--dropout-out", "0", "--dropout-hidden", "0", "--dropout-embed", "0"]
SMALL = ["--decoder-layers", "1", "--decoder-embed-dim", "16", "--decoder-hidden-size", "16"]
ARCHS = {
    "rev_lstm_lm": ["--arch", "rev_lstm_lm", *REV, "--criterion", "rev_cross_entropy"],
    "rev_gru_lm": ["--arch", "rev_gru_lm", "--no-forgetting", *REV, "--criterion", "rev_cross_entropy"],
    "g2_lstm_lm": ["--arch", "g2_lstm_lm", "--dropout", "0", "--criterion", "cross_entropy"],
    "nru_lm": ["--arch", "nru_lm", "--memory-size", "16", "--memory-heads", "1", "--dropout", "0",
               "--criterion", "cross_entropy"],
    "lstm_lm": ["--arch", "lstm_lm", "--decoder-out-embed-dim", "16", "--dropout", "0", "--criterion", "cross_entropy"],
}  # fmt: skip


def build(*args: str, split: str = "valid"):
    """``(task, model, criterion)`` from fairseq-train's arguments, as fairseq-train builds them."""
    parser = options.get_training_parser()
    parsed = options.parse_args_and_arch(
        parser, ["--user-dir", str(PLUGIN), "--task", "rnn_synthetic", "--batch-size", "8", *args]
    )
    cfg = convert_namespace_to_omegaconf(parsed)
    task = tasks.setup_task(cfg.task)
    model, criterion = task.build_model(cfg.model), task.build_criterion(cfg.criterion)
    task.load_dataset(split)
    return task, model, criterion


def batch(task, split: str = "valid", n: int = 8) -> dict:
    ds = task.dataset(split)
    return ds.collater([ds[i] for i in range(n)])


# Three sequences of each problem from seed (1, 2, 3): 3 symbols of 4, written out and checked by hand.
EXAMPLES = {
    "repeat": (None, [[9, 8, 9, M], [6, 7, 8, M], [9, 7, 6, M]],
               [[P, 9, 8, 9], [P, 6, 7, 8], [P, 9, 7, 6]]),
    # the flag for 3 steps, the symbols reversed
    "remember": (None, [[9, 8, 9, M, M, M], [6, 7, 8, M, M, M], [9, 7, 6, M, M, M]],
                 [[P, P, P, 9, 8, 9], [P, P, P, 8, 7, 6], [P, P, P, 6, 7, 9]]),
    # T=3: symbols, T-1 blanks, the marker, k blanks; blanks until the marker's k steps, then the symbols
    "copy": (3, [[9, 8, 9, B, B, M, B, B, B], [6, 7, 8, B, B, M, B, B, B], [9, 7, 6, B, B, M, B, B, B]],
             [[B, B, B, B, B, B, 9, 8, 9], [B, B, B, B, B, B, 6, 7, 8], [B, B, B, B, B, B, 9, 7, 6]]),
    # the third sequence has lag 2: one blank before the marker, and is padded at the end
    "variable_copy": (3, [[9, 8, 9, B, B, M, B, B, B], [6, 7, 8, B, B, M, B, B, B], [9, 7, 6, B, M, B, B, B, P]],
                      [[B, B, B, B, B, B, 9, 8, 9], [B, B, B, B, B, B, 6, 7, 8], [B, B, B, B, B, 9, 7, 6, P]]),
    # T=5 positions of noise (blank) holding the 3 symbols in order, the marker, k blanks
    "denoise": (5, [[B, B, 9, 8, 9, M, B, B, B], [6, B, 7, 8, B, M, B, B, B], [B, B, 9, 7, 6, M, B, B, B]],
                [[B, B, B, B, B, B, 9, 8, 9], [B, B, B, B, B, B, 6, 7, 8], [B, B, B, B, B, B, 9, 7, 6]]),
}  # fmt: skip


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_each_problem_lays_out_its_inputs_and_targets_as_written(name):
    lag, source, target = EXAMPLES[name]
    spec = SyntheticSpec(name, 3, 4, lag)
    src, tgt, lengths = generate(spec, 3, (1, 2, 3), IDS)
    assert src.tolist() == source and tgt.tolist() == target
    assert lengths.tolist() == [sum(t != P for t in row) for row in source]
    assert src.dtype == tgt.dtype == np.int64


def test_the_dictionary_holds_the_specials_blank_marker_and_symbols_in_order():
    d = synthetic_dictionary(8)
    assert [d[i] for i in range(len(d))] == ["<s>", "<pad>", "</s>", "<unk>", "<blank>", "<marker>",
                                             *(f"s{i}" for i in range(8))]  # fmt: skip
    assert IDS.first_symbol == 6


@pytest.mark.parametrize(
    "name, lag, scored",
    [("repeat", None, lambda L, T: L), ("remember", None, lambda L, T: L), ("copy", 30, lambda L, T: T + 2 * L),
     ("variable_copy", 30, None), ("denoise", 30, lambda L, T: T + 1 + L)],
)  # fmt: skip
def test_scored_positions_and_where_the_symbols_are_to_be_recalled(name, lag, scored):
    spec = SyntheticSpec(name, 7, 8, lag)
    src, tgt, lengths = generate(spec, 200, (5,), token_ids(synthetic_dictionary(8)))
    first = IDS.first_symbol
    for s, t, n in zip(src, tgt, lengths):
        assert (t != P).sum() == (n if scored is None else scored(7, lag))
        assert (s[n:] == P).all() and (t[n:] == P).all()
        symbols = s[s >= first]
        recalled = t[t >= first]
        assert len(symbols) == 7
        assert recalled.tolist() == (symbols[::-1] if name == "remember" else symbols).tolist()
        if spec.lagged:  # the symbols come back right after the marker's k steps, at the end
            assert (t[n - 7 : n] == symbols).all() and (t[: n - 7] == B).all()
            assert (s == M).sum() == 1 and np.flatnonzero(s == M)[0] == n - 8
    if name == "variable_copy":  # lags 1..T, all of them for 200 draws of 30
        assert set(lengths - 14) == set(range(1, 31))


def test_sequences_are_deterministic_per_seed_and_fresh_for_every_training_epoch():
    task, _, _ = build("--synthetic-task", "denoise", "--lag", "20", *ARCHS["lstm_lm"], *SMALL, "--seed", "3")
    again, _, _ = build("--synthetic-task", "denoise", "--lag", "20", *ARCHS["lstm_lm"], *SMALL, "--seed", "3")
    other, _, _ = build("--synthetic-task", "denoise", "--lag", "20", *ARCHS["lstm_lm"], *SMALL, "--data-seed", "4")

    def tensors(t, split, epoch=1):
        t.load_dataset(split, epoch=epoch)
        return t.dataset(split).source, t.dataset(split).target

    assert all(torch.equal(a, b) for a, b in zip(tensors(task, "valid"), tensors(again, "valid")))
    assert not torch.equal(tensors(task, "valid")[0], tensors(other, "valid")[0])
    assert torch.equal(tensors(task, "valid", 1)[0], tensors(task, "valid", 2)[0])
    assert torch.equal(tensors(task, "train", 2)[0], tensors(again, "train", 2)[0])
    assert not torch.equal(tensors(task, "train", 1)[0], tensors(task, "train", 2)[0])
    assert not torch.equal(tensors(task, "train", 1)[0][: len(task.dataset("valid"))], tensors(task, "valid")[0])
    assert task.has_sharded_data("train") and not task.has_sharded_data("valid")  # fairseq reloads train each epoch
    assert split_seed(3, "valid", 5) == split_seed(3, "valid", 1) != split_seed(3, "train", 1)
    assert len(task.dataset("train")) == 10000 and len(task.dataset("valid")) == 1000


def test_the_memoryless_baseline_is_the_nru_papers_and_what_a_memoryless_predictor_scores():
    # 10 log(8) / (T + 20) nats: the NRU paper's figure 1 prints 0.17 (T=100) and 0.09 (T=200). Its text writes
    # k log n / (T + 2n), which with n=8 divides by T + 16 (0.18 at T=100): a sequence is T + 2k long.
    for lag, paper in ((100, 0.17), (200, 0.09)):
        nats = SyntheticSpec("copy", 10, 8, lag).baseline_bits * math.log(2)
        assert nats == pytest.approx(10 * math.log(8) / (lag + 20)) and round(nats, 2) == paper
    assert round(10 * math.log(8) / (100 + 16), 2) == 0.18
    # A predictor that knows positions but no symbol: certain of the blanks, uniform over the symbols.
    for name in ("copy", "denoise"):
        spec = SyntheticSpec(name, 10, 8, 40)
        _, tgt, _ = generate(spec, 50, (0,), IDS)
        recall = tgt >= IDS.first_symbol
        bits = np.where(recall, math.log2(8), 0.0).sum() / tgt.size
        assert bits == pytest.approx(spec.baseline_bits)
    assert SyntheticSpec("remember", 5).baseline_bits is None
    assert SyntheticSpec("variable_copy", 5).baseline_bits is None  # lengths vary: logged per batch instead


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seq-len", "0"], "--seq-len must be an integer >= 1; got 0"),
        (["--num-symbols", "1"], "--num-symbols must be an integer >= 2"),
        (["--synthetic-task", "repeat", "--lag", "5"], "--lag applies to copy, variable_copy, denoise only"),
        (["--synthetic-task", "copy", "--lag", "0"], "--lag must be an integer >= 1; got 0"),
        (["--synthetic-task", "variable_copy", "--lag", "-3"], "--lag must be an integer >= 1; got -3"),
        (["--synthetic-task", "denoise", "--seq-len", "10", "--lag", "9"],
         r"--lag must be an integer >= 10 for denoise \(the noisy sequence holds the --seq-len symbols\); got 9"),
        (["--train-size", "0"], "--train-size must be an integer >= 1"),
        (["--valid-size", "-1"], "--valid-size must be an integer >= 1"),
        (["--lag", "300", "--tokens-per-sample", "100"], "--tokens-per-sample must be an integer >= 320"),
    ],
)  # fmt: skip
def test_bad_options_name_themselves(args, message):
    with pytest.raises(ValueError, match=message):
        build(*args, *ARCHS["lstm_lm"], *SMALL)


def test_an_unknown_problem_is_refused_by_the_argument_parser(capsys):
    with pytest.raises(SystemExit):
        build("--synthetic-task", "sort", *ARCHS["lstm_lm"], *SMALL)
    assert "--synthetic-task: invalid choice: 'sort'" in capsys.readouterr().err


def reduced(task, criterion, logs: list[dict]) -> dict:
    with metrics.aggregate() as agg:
        task.reduce_metrics(logs, criterion)
        return agg.get_smoothed_values()


@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_language_model_trains_and_validates_as_a_sequence_to_label_model(arch):
    task, model, criterion = build("--synthetic-task", "variable_copy", "--lag", "6", "--seq-len", "3",
                                   *ARCHS[arch], *SMALL)  # fmt: skip
    sample = batch(task)
    assert sample["ntokens"] == int(sample["target"].ne(P).sum())
    model.train()
    loss, size, log = criterion(model, sample)
    loss.backward()
    assert torch.isfinite(loss) and size == sample["ntokens"] and "_correct" not in log
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    loss, size, log = task.valid_step(sample, model, criterion)
    model.eval()
    with torch.no_grad():
        predicted = model(**sample["net_input"])[0].argmax(-1)
    scored = sample["target"].ne(P)
    recall = sample["target"].ge(IDS.first_symbol)
    assert log["_scored"] == size == int(scored.sum())
    assert log["_correct"] == int((predicted.eq(sample["target"]) & scored).sum())
    assert log["_symbol_correct"] == int((predicted.eq(sample["target"]) & recall).sum())
    assert log["_symbols"] == int(recall.sum()) == 8 * 3
    values = reduced(task, criterion, [log])
    assert values["accuracy"] == pytest.approx(100 * log["_correct"] / log["_scored"], abs=1e-3)
    assert values["recall_accuracy"] == pytest.approx(100 * log["_symbol_correct"] / 24, abs=1e-3)
    assert values["baseline"] == pytest.approx(24 * 3 / log["_scored"], abs=1e-3)
    assert math.isfinite(values["loss"])


def test_a_fused_loss_and_fairseqs_logits_give_the_same_counts():
    """rev_cross_entropy returns summed losses, no logits: the task asks for them once more."""
    fused = build("--synthetic-task", "copy", "--lag", "8", *ARCHS["rev_lstm_lm"], *SMALL)
    unfused = build("--synthetic-task", "copy", "--lag", "8", *ARCHS["rev_lstm_lm"], *SMALL, "--no-fused-loss")
    unfused[1].load_state_dict(fused[1].state_dict())
    logs = [task.valid_step(batch(task), model, criterion)[2] for task, model, criterion in (fused, unfused)]
    keys = ("_correct", "_scored", "_symbol_correct", "_symbols", "_baseline_bits")
    assert [logs[0][k] for k in keys] == [logs[1][k] for k in keys]
    assert float(logs[0]["loss"]) == pytest.approx(float(logs[1]["loss"]), rel=1e-5)


def test_training_logs_no_accuracy_and_validation_of_copy_logs_the_baseline():
    task, model, criterion = build("--synthetic-task", "copy", "--lag", "100", *ARCHS["lstm_lm"], *SMALL)
    log = task.valid_step(batch(task, n=4), model, criterion)[2]
    values = reduced(task, criterion, [log, log])
    assert values["baseline"] == round(30 / 120, 3) == 0.25  # 10 log2(8) / (T + 20) bits
    assert set(values) >= {"accuracy", "recall_accuracy", "baseline", "loss"}
    training = {"loss": 1.0, "ntokens": 1, "nsentences": 1, "sample_size": 1}
    assert not {"accuracy", "baseline"} & set(reduced(task, criterion, [training]))
    remember, model, criterion = build("--synthetic-task", "remember", "--seq-len", "4", *ARCHS["lstm_lm"], *SMALL)
    values = reduced(remember, criterion, [remember.valid_step(batch(remember), model, criterion)[2]])
    assert "accuracy" in values and not {"recall_accuracy", "baseline"} & set(values)
