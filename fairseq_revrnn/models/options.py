"""The options of the reversible stacks, shared by the translation model and the language model.

Without ``from __future__ import annotations``: fairseq reads the field types
(choices) from the dataclass at run time.
"""

from dataclasses import dataclass, field
from typing import Optional

from fairseq.dataclass import FairseqDataclass

from ..core.fixed_point import RH, RZ
from .common import COMPILE_CHOICES, ESTIMATOR_CHOICES, FORGET_BITS_CHOICES, GATE_CHOICES, HELP, OVERFLOW_CHOICES


@dataclass
class ReversibleOptions(FairseqDataclass):
    """The options of the reversible stacks, shared by the translation model and the language model."""

    max_forget_bits: FORGET_BITS_CHOICES = field(default="3", metadata={"help": HELP["max_forget_bits"]})
    no_forgetting: bool = field(default=False, metadata={"help": HELP["no_forgetting"]})
    max_hidden_forget: str = field(default="auto", metadata={"help": HELP["max_hidden_forget"]})
    no_reversible: bool = field(default=False, metadata={"help": HELP["no_reversible"]})
    rev_compile: COMPILE_CHOICES = field(default="auto", metadata={"help": HELP["rev_compile"]})
    rev_overflow: OVERFLOW_CHOICES = field(default="auto", metadata={"help": HELP["rev_overflow"]})
    gates: GATE_CHOICES = field(default="sigmoid", metadata={"help": HELP["gates"]})
    gate_temperature: Optional[float] = field(default=None, metadata={"help": HELP["gate_temperature"]})
    hidden_radix: int = field(default=RH, metadata={"help": HELP["hidden_radix"]})
    forget_radix: int = field(default=RZ, metadata={"help": HELP["forget_radix"]})
    discrete_forgetting: bool = field(default=False, metadata={"help": HELP["discrete_forgetting"]})
    df_estimator: ESTIMATOR_CHOICES = field(default="gumbel", metadata={"help": HELP["df_estimator"]})
