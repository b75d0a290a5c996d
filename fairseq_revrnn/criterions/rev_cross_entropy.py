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


def _checked(name: str, loss: torch.Tensor) -> torch.Tensor:
    if not bool(torch.isfinite(loss).all()):
        raise FloatingPointError(f"{name}: the loss is not finite ({loss.sum().item()}); stopping before it spreads")
    return loss


@registry.criterion("rev_cross_entropy", dataclass=CrossEntropyCriterionConfig)
class RevCrossEntropyCriterion(CrossEntropyCriterion):
    def forward(self, model, sample, reduce=True):
        loss, sample_size, logging_output = super().forward(model, sample, reduce)
        add_memory(model, logging_output)
        return _checked("rev_cross_entropy", loss), sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        CrossEntropyCriterion.reduce_metrics(logging_outputs)
        reduce_memory(logging_outputs)


@registry.criterion("rev_label_smoothed_cross_entropy", dataclass=LabelSmoothedCrossEntropyCriterionConfig)
class RevLabelSmoothedCrossEntropyCriterion(LabelSmoothedCrossEntropyCriterion):
    def forward(self, model, sample, reduce=True):
        loss, sample_size, logging_output = super().forward(model, sample, reduce)
        add_memory(model, logging_output)
        return _checked("rev_label_smoothed_cross_entropy", loss), sample_size, logging_output

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        LabelSmoothedCrossEntropyCriterion.reduce_metrics(logging_outputs)
        reduce_memory(logging_outputs)
