"""``rnn_synthetic``: the synthetic memory problems of our source papers as a fairseq task.

No data directory and no preprocessing: the dictionary and the sequences are built in memory
from a seed, so the same options give the same data on any machine (numpy's PCG64 generator: the
stream can change between numpy versions, which a test would notice). Each sample is an input
sequence and one target per position; positions that are not scored hold the padding index,
which fairseq's criterions (and ours) ignore. Any language model works on it as a
sequence-to-label model: at position t it sees inputs 1..t and predicts target t.

- ``repeat`` (reversible paper, section 4 and appendix B): L random symbols, then the
  end-of-input flag; each symbol is to be output one step after it was read. Trivial for an
  ordinary RNN, but a no-forgetting reversible one must keep every symbol: its reverse pass
  decodes them all, in reverse order, from the final state.
- ``remember`` (appendix B, the "memorization" task): L symbols, then L steps of the
  end-of-input flag, during which the symbols are to be output in reverse order (the order in
  which the NF model's reversal produces them on ``repeat``, the paper's figure 1).
- ``copy`` (NRU paper, after Arjovsky et al. 2016): k symbols, T - 1 blanks, the start-recall
  marker, k blanks; the targets are blanks, then the k symbols. Every position is scored, so
  a memoryless model, perfect on the blanks and guessing the symbols, has the loss
  k log(n) / (T + 2k): 10 log(8) / (T + 20) with the paper's k=10, n=8.
- ``variable_copy`` (after Henaff et al. 2016): ``copy`` with each sequence's T drawn
  uniformly from 1..T, so the recall's position varies (padded at the end).
- ``denoise`` (NRU paper, after Jing et al. 2017): k symbols at random positions of a
  length-T sequence of noise (blank) symbols, then the marker and k blanks; the symbols are
  to be recalled in order after the marker.

The marker token is copy's start-recall marker and remember's end-of-input flag. Validation
logs ``accuracy`` (percent of the scored positions predicted exactly), and for the tasks with
blank targets ``recall_accuracy`` (the symbol positions only) and ``baseline``, the
memoryless loss in fairseq's unit (bits per scored position, beside ``loss``).
"""

import math
import zlib
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch
from fairseq.data import Dictionary, FairseqDataset, data_utils
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.logging import metrics
from fairseq.tasks import FairseqTask
from omegaconf import II

from .. import registry

SYNTHETIC_TASKS = ("repeat", "remember", "copy", "variable_copy", "denoise")
LAGGED_TASKS = ("copy", "variable_copy", "denoise")
"""Tasks with a lag T and blank targets, whose memoryless baseline is logged."""
DEFAULT_LAG = 100
BLANK, MARKER = "<blank>", "<marker>"
COUNT_KEYS = ("_correct", "_scored", "_symbol_correct", "_symbols", "_baseline_bits")


@dataclass(frozen=True)
class SyntheticSpec:
    """One problem's shape, checked on construction (errors name the option): what to
    generate, how long its sequences are and which positions are scored."""

    task: str
    seq_len: int
    num_symbols: int = 8
    lag: Optional[int] = None

    def __post_init__(self) -> None:
        if self.task not in SYNTHETIC_TASKS:
            raise ValueError(f"--synthetic-task must be one of {', '.join(SYNTHETIC_TASKS)}; got {self.task!r}")
        _check_int("--seq-len", self.seq_len, 1)
        _check_int("--num-symbols", self.num_symbols, 2, "(with one symbol there is nothing to remember)")
        if self.task not in LAGGED_TASKS:
            if self.lag is not None:
                raise ValueError(
                    f"--lag applies to {', '.join(LAGGED_TASKS)} only; got --lag {self.lag} with {self.task}"
                )
            return
        if self.lag is None:
            object.__setattr__(self, "lag", DEFAULT_LAG)
        if self.task == "denoise":
            _check_int("--lag", self.lag, self.seq_len, "for denoise (the noisy sequence holds the --seq-len symbols)")
        else:
            _check_int("--lag", self.lag, 1)

    @property
    def length(self) -> int:
        """The longest sequence: every one has this length except variable_copy's, which is at most this."""
        k, lag = self.seq_len, self.lag
        if self.task == "repeat":
            return k + 1
        if self.task == "remember":
            return 2 * k
        return lag + 1 + k if self.task == "denoise" else lag + 2 * k

    @property
    def lagged(self) -> bool:
        return self.task in LAGGED_TASKS

    @property
    def baseline_bits(self) -> Optional[float]:
        """The memoryless loss per scored position in bits (fairseq's unit) for a fixed-length
        lagged task: k log2(n) / length; None for the others."""
        if self.task not in ("copy", "denoise"):
            return None
        return self.seq_len * math.log2(self.num_symbols) / self.length


def _check_int(option: str, value, minimum: int, why: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{option} must be an integer >= {minimum}{' ' + why if why else ''}; got {value!r}")


@dataclass(frozen=True)
class TokenIds:
    """The indices :func:`synthetic_dictionary` gives the task's tokens."""

    pad: int
    blank: int
    marker: int
    first_symbol: int


def synthetic_dictionary(num_symbols: int) -> Dictionary:
    """fairseq's four special tokens, ``<blank>``, ``<marker>``, then the symbols ``s0``, ``s1``, ...
    (not finalized: the order is the layout the generators and tests rely on)."""
    dictionary = Dictionary()
    for symbol in (BLANK, MARKER, *(f"s{i}" for i in range(num_symbols))):
        dictionary.add_symbol(symbol)
    return dictionary


def token_ids(dictionary: Dictionary) -> TokenIds:
    return TokenIds(dictionary.pad(), dictionary.index(BLANK), dictionary.index(MARKER), dictionary.index("s0"))


def generate(
    spec: SyntheticSpec, count: int, seed: Sequence[int], ids: TokenIds
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` sequences: (source, target), both (count, spec.length) int64, padded with
    ``ids.pad`` at the end, and their lengths. The same ``seed`` (any integers) gives the same
    sequences (numpy's PCG64 from a SeedSequence)."""
    rng = np.random.default_rng(list(seed))
    k, lag, pad, blank, marker = spec.seq_len, spec.lag, ids.pad, ids.blank, ids.marker
    symbols = ids.first_symbol + rng.integers(spec.num_symbols, size=(count, k), dtype=np.int64)

    def fill(value: int, width: int) -> np.ndarray:
        return np.full((count, width), value, dtype=np.int64)

    lengths = np.full(count, spec.length, dtype=np.int64)
    if spec.task == "repeat":
        source = [symbols, fill(marker, 1)]
        target = [fill(pad, 1), symbols]
    elif spec.task == "remember":
        source = [symbols, fill(marker, k)]
        target = [fill(pad, k), symbols[:, ::-1]]
    elif spec.task == "copy":
        source = [symbols, fill(blank, lag - 1), fill(marker, 1), fill(blank, k)]
        target = [fill(blank, lag + k), symbols]
    elif spec.task == "denoise":
        slots = np.sort(rng.random((count, lag)).argsort(axis=1)[:, :k], axis=1)
        noisy = fill(blank, lag)
        np.put_along_axis(noisy, slots, symbols, axis=1)
        source = [noisy, fill(marker, 1), fill(blank, k)]
        target = [fill(blank, lag + 1), symbols]
    else:  # variable_copy: copy with this sequence's lag t in 1..T, then padding
        t = rng.integers(1, lag + 1, size=(count, 1), dtype=np.int64)
        lengths = t[:, 0] + 2 * k
        col = np.arange(spec.length, dtype=np.int64)[None, :]
        src = np.where(col < t + 2 * k, blank, pad)
        src[:, :k] = symbols
        np.put_along_axis(src, t + k - 1, marker, axis=1)
        recall = (col >= t + k) & (col < t + 2 * k)
        recalled = np.take_along_axis(symbols, np.clip(col - t - k, 0, k - 1), axis=1)
        tgt = np.where(recall, recalled, np.where(col < t + k, blank, pad))
        return src, tgt, lengths
    return np.concatenate(source, axis=1), np.concatenate(target, axis=1), lengths


class SyntheticDataset(FairseqDataset):
    """Generated sequences held as two (count, length) tensors; batches are padded at the end."""

    def __init__(self, source: np.ndarray, target: np.ndarray, lengths: np.ndarray, pad: int):
        self.source, self.target = torch.from_numpy(source), torch.from_numpy(target)
        self.lengths, self.pad = lengths, pad

    def __getitem__(self, index: int) -> dict:
        n = int(self.lengths[index])
        return {"id": index, "source": self.source[index, :n], "target": self.target[index, :n]}

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def sizes(self) -> np.ndarray:
        return self.lengths

    def num_tokens(self, index: int) -> int:
        return int(self.lengths[index])

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        return self.lengths[indices]

    def size(self, index: int) -> int:
        return int(self.lengths[index])

    def collater(self, samples: list[dict]) -> dict:
        if not samples:
            return {}
        target = data_utils.collate_tokens([s["target"] for s in samples], self.pad)
        return {
            "id": torch.tensor([s["id"] for s in samples]),
            "nsentences": len(samples),
            "ntokens": int(target.ne(self.pad).sum()),
            "net_input": {
                "src_tokens": data_utils.collate_tokens([s["source"] for s in samples], self.pad),
                "src_lengths": torch.tensor([len(s["source"]) for s in samples]),
            },
            "target": target,
        }


@dataclass
class RNNSyntheticConfig(FairseqDataclass):
    synthetic_task: ChoiceEnum(list(SYNTHETIC_TASKS)) = field(
        default="copy",
        metadata={"help": "repeat / remember: the reversible paper's appendix B; copy / variable_copy / denoise: the "
                  "NRU paper's synthetic tasks"},
    )  # fmt: skip
    seq_len: int = field(
        default=10,
        metadata={"help": "symbols to remember: L for repeat and remember, k for copy, variable_copy and denoise "
                  "(the NRU paper's 10)"},
    )  # fmt: skip
    num_symbols: int = field(default=8, metadata={"help": "symbols to draw from (both papers: 8); at least 2"})
    lag: Optional[int] = field(
        default=None,
        metadata={"help": f"T of copy, variable_copy (the largest) and denoise (the noisy sequence's length); default "
                  f"{DEFAULT_LAG}; not for repeat or remember"},
    )  # fmt: skip
    train_size: int = field(
        default=10000, metadata={"help": "sequences per epoch; split 'train' is drawn afresh every epoch"}
    )
    valid_size: int = field(default=1000, metadata={"help": "sequences of every other split (valid, test): fixed"})
    data_seed: Optional[int] = field(default=None, metadata={"help": "seed of the sequences (default: --seed)"})
    seed: int = II("common.seed")
    tokens_per_sample: int = field(
        default=65536,
        metadata={"help": "the models' maximum positions (the language models read it); at least the task's "
                  "sequence length"},
    )  # fmt: skip


def split_seed(data_seed: int, split: str, epoch: int) -> tuple[int, int, int]:
    """The seed of one split: 'train' gets fresh sequences every epoch, any other split the same ones."""
    return data_seed, zlib.crc32(split.encode()), epoch if split == "train" else 0


@registry.task("rnn_synthetic", dataclass=RNNSyntheticConfig)
class RNNSyntheticTask(FairseqTask):
    """Synthetic sequence problems generated from a seed; see the module docstring."""

    def __init__(self, cfg: RNNSyntheticConfig, spec: SyntheticSpec):
        super().__init__(cfg)
        self.spec = spec
        self.dictionary = synthetic_dictionary(spec.num_symbols)
        self.ids = token_ids(self.dictionary)

    @classmethod
    def setup_task(cls, cfg: RNNSyntheticConfig, **kwargs) -> "RNNSyntheticTask":
        spec = SyntheticSpec(str(cfg.synthetic_task), cfg.seq_len, cfg.num_symbols, cfg.lag)
        _check_int("--train-size", cfg.train_size, 1)
        _check_int("--valid-size", cfg.valid_size, 1)
        _check_int("--tokens-per-sample", cfg.tokens_per_sample, spec.length, "(the task's sequence length)")
        return cls(cfg, spec)

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs) -> None:
        count = self.cfg.train_size if split == "train" else self.cfg.valid_size
        data_seed = self.cfg.seed if self.cfg.data_seed is None else self.cfg.data_seed
        source, target, lengths = generate(self.spec, count, split_seed(data_seed, split, epoch), self.ids)
        self.datasets[split] = SyntheticDataset(source, target, lengths, self.ids.pad)

    def has_sharded_data(self, split: str) -> bool:
        """True for 'train': fairseq then reloads it every epoch, which draws fresh sequences
        (the papers train on new sequences throughout)."""
        return split == "train"

    def max_positions(self) -> int:
        return self.spec.length

    @property
    def source_dictionary(self) -> Dictionary:
        return self.dictionary

    @property
    def target_dictionary(self) -> Dictionary:
        return self.dictionary

    def valid_step(self, sample: dict, model, criterion) -> tuple:
        """The criterion's loss, plus the counts behind ``accuracy``: from the logits the
        criterion's own forward returned, or, where the loss was fused into the model (the
        plugin's criterions with a reversible model return only summed losses), from one more
        forward that returns logits."""
        outputs = []
        handle = model.register_forward_hook(lambda _module, _args, output: outputs.append(output))
        try:
            loss, sample_size, logging_output = super().valid_step(sample, model, criterion)
        finally:
            handle.remove()
        logits = next((out[0] for out in outputs if out[0].dim() == 3), None)
        if logits is None:
            with torch.no_grad():
                logits = model(**sample["net_input"])[0]
        logging_output.update(self.counts(logits.argmax(-1), sample["target"]))
        return loss, sample_size, logging_output

    def counts(self, predicted: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """Scored positions and correct predictions among them, the same for the symbol
        (recall) positions, and the memoryless loss summed over the scored positions in bits."""
        scored = target.ne(self.ids.pad)
        correct = predicted.eq(target) & scored
        symbols = target.ge(self.ids.first_symbol)
        n_symbols = int(symbols.sum())
        return {
            "_correct": int(correct.sum()),
            "_scored": int(scored.sum()),
            "_symbol_correct": int((correct & symbols).sum()),
            "_symbols": n_symbols,
            "_baseline_bits": n_symbols * math.log2(self.spec.num_symbols),
        }

    def reduce_metrics(self, logging_outputs: list[dict], criterion) -> None:
        super().reduce_metrics(logging_outputs, criterion)
        totals = {key: sum(log.get(key, 0) for log in logging_outputs) for key in COUNT_KEYS}
        if totals["_scored"] == 0:  # training: no counts
            return
        for key, value in totals.items():
            metrics.log_scalar(key, value, weight=1, round=0)
        metrics.log_derived("accuracy", lambda m: _percent(m, "_correct", "_scored"))
        if self.spec.lagged:
            metrics.log_derived("recall_accuracy", lambda m: _percent(m, "_symbol_correct", "_symbols"))
            metrics.log_derived("baseline", lambda m: round(_sum(m, "_baseline_bits") / max(_sum(m, "_scored"), 1), 3))


def _sum(meters, key: str) -> float:
    """A summed meter as a float (across workers fairseq sums them as tensors)."""
    value = meters[key].sum
    return float(value.item() if torch.is_tensor(value) else value)


def _percent(meters, part: str, whole: str) -> float:
    return round(100.0 * _sum(meters, part) / max(_sum(meters, whole), 1), 3)
