"""``rev_cross_entropy`` and ``rev_label_smoothed_cross_entropy``: fairseq's
losses, unchanged, plus the reversible models' memory savings."""

from __future__ import annotations

import torch
from fairseq.criterions.cross_entropy import CrossEntropyCriterion, CrossEntropyCriterionConfig
from fairseq.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    LabelSmoothedCrossEntropyCriterionConfig,
)

from .. import registry
from .memory_logging import add_memory, reduce_memory


class MemoryLogging:
    """Mixin: fairseq's loss, checked for finiteness, plus the model's memory counts."""

    name = ""

    def forward(self, model, sample, reduce=True):
        loss, sample_size, logging_output = super().forward(model, sample, reduce)
        if not bool(torch.isfinite(loss).all()):
            raise FloatingPointError(f"{self.name}: the loss is not finite ({loss.sum().item()}); stopping here")
        add_memory(model, logging_output)
        return loss, sample_size, logging_output


@registry.criterion("rev_cross_entropy", dataclass=CrossEntropyCriterionConfig)
class RevCrossEntropyCriterion(MemoryLogging, CrossEntropyCriterion):
    name = "rev_cross_entropy"

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        CrossEntropyCriterion.reduce_metrics(logging_outputs)
        reduce_memory(logging_outputs)


@registry.criterion("rev_label_smoothed_cross_entropy", dataclass=LabelSmoothedCrossEntropyCriterionConfig)
class RevLabelSmoothedCrossEntropyCriterion(MemoryLogging, LabelSmoothedCrossEntropyCriterion):
    name = "rev_label_smoothed_cross_entropy"

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        LabelSmoothedCrossEntropyCriterion.reduce_metrics(logging_outputs)
        reduce_memory(logging_outputs)
