"""``rev_cross_entropy`` and ``rev_label_smoothed_cross_entropy``: fairseq's
losses, computed inside the reversible models (fused with the output layer,
block by block: no T x B x V logits are kept), plus the models' memory savings.

``--no-fused-loss`` takes fairseq's own path instead: the model returns the
logits and fairseq's criterion computes the loss from them. Both give the same
loss, nll_loss and accuracy to float rounding. Models without fused-loss
support (e.g. fairseq's own) always take fairseq's path.
"""

from dataclasses import dataclass, field

import torch
from fairseq import utils
from fairseq.criterions.cross_entropy import CrossEntropyCriterion, CrossEntropyCriterionConfig
from fairseq.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    LabelSmoothedCrossEntropyCriterionConfig,
)

from .. import registry
from ..core.loss import BLOCK_ELEMENTS, TokenLoss
from .memory_logging import add_memory, reduce_memory

BLOCK_HELP = (
    "the fused loss's block: megabytes of float32 logits computed at once (the peak temporary; larger blocks make "
    "larger, faster matrix multiplies)"
)
BLOCK_MB = BLOCK_ELEMENTS * 4 / 2**20
NO_FUSED_LOSS_HELP = (
    "compute the loss from the model's logits (T x B x V, kept for backward) as fairseq does, instead of inside the "
    "reversible model one block of tokens at a time"
)


@dataclass
class RevCrossEntropyConfig(CrossEntropyCriterionConfig):
    no_fused_loss: bool = field(default=False, metadata={"help": NO_FUSED_LOSS_HELP})
    fused_loss_block_mb: float = field(default=BLOCK_MB, metadata={"help": BLOCK_HELP})


@dataclass
class RevLabelSmoothedCrossEntropyConfig(LabelSmoothedCrossEntropyCriterionConfig):
    no_fused_loss: bool = field(default=False, metadata={"help": NO_FUSED_LOSS_HELP})
    fused_loss_block_mb: float = field(default=BLOCK_MB, metadata={"help": BLOCK_HELP})


def _extra(net_output) -> dict:
    """The decoder's ``extra`` dict; fairseq's own models may put something else there
    (its ``lstm`` returns the attention weights, or None)."""
    extra = net_output[1] if len(net_output) > 1 else None
    return extra if isinstance(extra, dict) else {}


def _fused(net_output) -> bool:
    return bool(_extra(net_output).get("fused_loss", False))


class FusedLossCriterion:
    """Mixin over a fairseq criterion: asks the model for the summed loss
    (``loss, nll_loss, n_correct``) instead of logits, checks it is finite,
    and logs the memory counts the model returns with its output."""

    name = ""
    fused_loss = True
    block_elements = BLOCK_ELEMENTS
    logs_nll_loss = False  # whether the fairseq criterion logs nll_loss besides loss

    def configure_fused_loss(self, no_fused_loss: bool, block_mb: float) -> None:
        if not block_mb > 0:
            raise ValueError(f"--fused-loss-block-mb must be > 0; got {block_mb!r}")
        self.fused_loss = not no_fused_loss
        self.block_elements = max(1, int(block_mb * 2**20 / 4))

    def loss_request(self, sample: dict) -> dict:
        """The model's extra arguments for the fused loss: the loss and the (prefix-masked) targets."""
        target = sample["target"]
        prefix = getattr(self, "ignore_prefix_size", 0)
        if prefix > 0:
            target = target.clone()
            target[:, :prefix] = self.padding_idx
        eps = float(getattr(self, "eps", 0.0))
        accuracy = bool(getattr(self, "report_accuracy", False))
        loss = TokenLoss(self.padding_idx, eps, self.block_elements, count_correct=accuracy)
        return {"fused_loss": loss, "target": target}

    def forward(self, model, sample, reduce=True):
        """fairseq's criterion forward (the same loss, sample size and logging output), with the
        fused loss where the model offers it and the memory counts of the model's output."""
        if self.fused_loss and reduce and getattr(model, "supports_fused_loss", False):
            sample = dict(sample, net_input=dict(sample["net_input"], **self.loss_request(sample)))
        net_output = model(**sample["net_input"])
        loss, nll_loss = self.compute_loss(model, net_output, sample, reduce=reduce)
        if not bool(torch.isfinite(loss).all()):
            raise FloatingPointError(f"{self.name}: the loss is not finite ({loss.sum().item()}); stopping here")
        sample_size = sample["target"].size(0) if self.sentence_avg else sample["ntokens"]
        logging_output = {
            "loss": loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["target"].size(0),
            "sample_size": sample_size,
        }
        if self.logs_nll_loss:
            logging_output["nll_loss"] = nll_loss.data
        if getattr(self, "report_accuracy", False):
            n_correct, total = self.compute_accuracy(model, net_output, sample)
            logging_output["n_correct"] = utils.item(n_correct.data)
            logging_output["total"] = utils.item(total.data)
        add_memory(_extra(net_output).get("memory", {}), logging_output)
        return loss, sample_size, logging_output

    def compute_loss(self, model, net_output, sample, reduce=True):
        if _fused(net_output):
            sums = net_output[0]
            return sums[0], sums[1]
        return super().compute_loss(model, net_output, sample, reduce)

    def compute_accuracy(self, model, net_output, sample):
        if _fused(net_output):
            return net_output[0][2], sample["net_input"]["target"].ne(self.padding_idx).sum()
        return super().compute_accuracy(model, net_output, sample)


@registry.criterion("rev_cross_entropy", dataclass=RevCrossEntropyConfig)
class RevCrossEntropyCriterion(FusedLossCriterion, CrossEntropyCriterion):
    name = "rev_cross_entropy"

    def __init__(self, task, sentence_avg, no_fused_loss=False, fused_loss_block_mb=BLOCK_MB):
        super().__init__(task, sentence_avg)
        self.configure_fused_loss(no_fused_loss, fused_loss_block_mb)

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        CrossEntropyCriterion.reduce_metrics(logging_outputs)
        reduce_memory(logging_outputs)


@registry.criterion("rev_label_smoothed_cross_entropy", dataclass=RevLabelSmoothedCrossEntropyConfig)
class RevLabelSmoothedCrossEntropyCriterion(FusedLossCriterion, LabelSmoothedCrossEntropyCriterion):
    name = "rev_label_smoothed_cross_entropy"
    logs_nll_loss = True

    def __init__(
        self,
        task,
        sentence_avg,
        label_smoothing,
        ignore_prefix_size=0,
        report_accuracy=False,
        no_fused_loss=False,
        fused_loss_block_mb=BLOCK_MB,
    ):
        super().__init__(task, sentence_avg, label_smoothing, ignore_prefix_size, report_accuracy)
        self.configure_fused_loss(no_fused_loss, fused_loss_block_mb)

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        LabelSmoothedCrossEntropyCriterion.reduce_metrics(logging_outputs)
        reduce_memory(logging_outputs)
