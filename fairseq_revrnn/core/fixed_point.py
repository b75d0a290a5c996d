"""Fixed-point hidden states and quantised forget values (SPEC section 3).

Hidden states are integers ``h* = h * 2**RH`` held in int64; forget values are
``z* / 2**RZ`` with ``0 < z* < 2**RZ``. Everything the exact reversal needs is
integer arithmetic on these, so forward and reverse agree bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

RH = 23
RZ = 10
_H_SCALE = float(2**RH)
_H_INV = float(2.0**-RH)


def to_fixed(x: torch.Tensor) -> torch.Tensor:
    """Round a float tensor to the fixed-point grid (int64 ``h*``)."""
    return torch.round(x * _H_SCALE).to(torch.int64)


def to_float(h: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The float value of fixed-point integers (exact while ``|h*| < 2**mantissa``)."""
    return h.to(dtype).mul_(_H_INV)


def on_grid(h: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Round ``h*`` so that storing it as ``dtype`` and reading it back is exact."""
    return to_fixed(to_float(h, dtype))


@dataclass(frozen=True)
class Forgetting:
    """How much a forget value may destroy per step.

    ``max_bits=k`` confines every forget value to ``(2**-k, 1)`` via
    ``z = (1 - 2**-k) * sigmoid(a) + 2**-k``; ``None`` means no limit (only
    ``z* >= 1``). ``disabled`` is the no-forgetting (NF) variant: the
    multiplicative forget factor is exactly 1 and updates are purely additive.
    """

    max_bits: Optional[int] = 3
    disabled: bool = False

    def __post_init__(self) -> None:
        bits = self.max_bits
        if bits is not None and (isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= RZ):
            raise ValueError(f"max_forget_bits must be an integer in 1..{RZ} or None (no limit); got {bits!r}")

    @property
    def limited(self) -> bool:
        return self.max_bits is not None and not self.disabled

    @property
    def alpha(self) -> float:
        return 1.0 - 2.0**-self.max_bits if self.limited else 1.0

    @property
    def beta(self) -> float:
        return 2.0**-self.max_bits if self.limited else 0.0

    @property
    def min_z(self) -> int:
        return 2 ** (RZ - self.max_bits) if self.limited else 1

    def limit(self, s: torch.Tensor) -> torch.Tensor:
        """Map a sigmoid output in (0, 1) to a forget value in (2**-k, 1)."""
        if not self.limited:
            return s
        return s * self.alpha + self.beta

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Integer numerator ``z*`` of the forget value actually applied."""
        return torch.round(z * float(2**RZ)).clamp_(self.min_z, 2**RZ - 1).to(torch.int64)
