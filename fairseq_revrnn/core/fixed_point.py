"""Fixed-point hidden states and quantised forget values (docs/design.md, section 3).

Hidden states are integers ``h* = h * 2**RH`` held in int64; forget values are
``z* / 2**RZ`` with ``0 < z* < 2**RZ``. Everything the exact reversal needs is
integer arithmetic on these, so forward and reverse agree bit for bit. The
radices RH and RZ (the paper's 23 and 10) are options of a stack
(:func:`check_radices` says which pairs int64 holds).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import torch

RH = 23
RZ = 10
MAX_FORGET_RADIX = 16
# int64 must hold a state times 2**(RH + RZ) (the product h* z* of the kept,
# lossy units); 63 - 52 = 11 bits leave room for |h|, |c| below 2**11.
MAX_RADIX_SUM = 52


def check_radices(
    hidden_radix: int, forget_radix: int, names: tuple[str, str] = ("hidden_radix", "forget_radix")
) -> None:
    """Refuse radices int64 cannot hold, naming the options (as ``names`` spell them) and the limits."""
    hidden, forget = names
    for name, value, top in ((hidden, hidden_radix, MAX_RADIX_SUM - 1), (forget, forget_radix, MAX_FORGET_RADIX)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise ValueError(f"{name} must be an integer in 1..{top}; got {value!r}")
    if hidden_radix + forget_radix > MAX_RADIX_SUM:
        raise ValueError(
            f"{hidden} + {forget} must be at most {MAX_RADIX_SUM} (int64 holds a state times "
            f"2**({hidden} + {forget}) for states below 2**{63 - MAX_RADIX_SUM}); got {hidden_radix} + {forget_radix}"
        )


def wide_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype in which values of ``dtype`` meet the fixed-point scale.

    ``2**RH`` times a float16 value overflows float16 (max 65504), and an int64
    ``h*`` cast to float16 is inf beyond that; bfloat16 has the range but 8
    mantissa bits. Scaling therefore happens in float32 (float64 stays float64),
    which holds every float16/bfloat16 value exactly, so the integers do not
    depend on the narrow dtype's range.
    """
    return torch.float64 if dtype == torch.float64 else torch.float32


def to_fixed(x: torch.Tensor, radix: int = RH) -> torch.Tensor:
    """Round a float tensor to the fixed-point grid (int64 ``h* = h * 2**radix``)."""
    return torch.round(x.to(wide_dtype(x.dtype)) * float(2**radix)).to(torch.int64)


def to_float(h: torch.Tensor, dtype: torch.dtype, radix: int = RH) -> torch.Tensor:
    """The float value of fixed-point integers, rounded once to ``dtype``."""
    return h.to(wide_dtype(dtype)).mul_(float(2.0**-radix)).to(dtype)


def on_grid(h: torch.Tensor, dtype: torch.dtype, radix: int = RH) -> torch.Tensor:
    """Round ``h*`` so that storing it as ``dtype`` and reading it back is exact."""
    return to_fixed(to_float(h, dtype, radix), radix)


def check_ceiling(
    name: str, value: Optional[float], max_bits: Optional[int], disabled: bool = False, radix: int = RZ
) -> None:
    """Refuse a forget-value ceiling that leaves no forget value to use, naming the option ``name``."""
    if value is None:
        return
    if disabled:
        raise ValueError(f"{name} bounds forget values; the no-forgetting variant has none")
    floor = 2 ** (radix - max_bits) if max_bits is not None else 1
    low = floor / 2**radix
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value < 1:
        raise ValueError(f"{name} must be a number in ({low:g}, 1), above the smallest forget value; got {value!r}")
    if int(value * 2**radix) <= floor:
        raise ValueError(f"{name}={value!r} leaves no forget value above {low:g} on the 2**-{radix} grid")


@dataclass(frozen=True)
class Forgetting:
    """How much a forget value may destroy per step, and how little.

    ``max_bits=k`` confines every forget value to ``(2**-k, 1)`` via
    ``z = (1 - 2**-k) * sigmoid(a) + 2**-k``; ``None`` means no limit (only
    ``z* >= 1``). ``disabled`` is the no-forgetting (NF) variant: the
    multiplicative forget factor is exactly 1 and updates are purely additive.

    ``radix`` is RZ: forget values are multiples of ``2**-radix``.

    ``ceiling`` caps the forget values at ``z*max / 2**RZ`` (the grid point at
    or below it): ``z = beta + (ceiling - beta) * sigmoid(a)``. Without it the
    largest is ``(2**RZ - 1) / 2**RZ``. ``hidden_ceiling`` is the cap for the
    forget value of the hidden state ``h`` (RevLSTM's ``p``, RevGRU's ``z``):
    ``h <- p h + o tanh(c)`` adds up to 1 per step, so ``|h|`` stays below
    ``1 / (1 - ceiling)`` instead of growing towards ``2**RZ`` on long
    sequences. :attr:`hidden` is the forgetting applied to ``h``.

    ``discrete`` is appendix D's discrete forgetting: forget values are
    ``2**-k`` for ``k`` in ``0..max_bits`` (a multiplication is a shift by k
    bits, and ``z = 1`` is exact: ``z* = 2**RZ``), chosen per unit and step
    from ``max_bits + 1`` scores (:mod:`.discrete`).
    """

    max_bits: Optional[int] = 3
    disabled: bool = False
    ceiling: Optional[float] = None
    hidden_ceiling: Optional[float] = None
    radix: int = RZ
    discrete: bool = False

    def __post_init__(self) -> None:
        bits, rz = self.max_bits, self.radix
        if bits is not None and (isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= rz):
            raise ValueError(
                f"max_forget_bits must be an integer in 1..{rz} (the forget radix) or None (no limit); got {bits!r}"
            )
        if self.discrete and (bits is None or self.disabled):
            raise ValueError("discrete forgetting needs max_forget_bits (the largest shift), not None or no forgetting")
        if self.discrete and (self.ceiling is not None or self.hidden_ceiling is not None):
            raise ValueError(
                "discrete forgetting takes no forget-value ceiling (max_hidden_forget): its values are 2**-k"
            )
        check_ceiling("ceiling", self.ceiling, bits, self.disabled, rz)
        check_ceiling("hidden_ceiling", self.hidden_ceiling, bits, self.disabled, rz)
        # computed once, not a cached_property: compiled code cannot enter its lock
        hidden = self
        if self.hidden_ceiling is not None:
            hidden = replace(self, ceiling=self.hidden_ceiling, hidden_ceiling=None)
        object.__setattr__(self, "_hidden", hidden)

    @property
    def hidden(self) -> Forgetting:
        """The forgetting applied to the hidden state ``h``."""
        return self._hidden

    @property
    def limited(self) -> bool:
        return self.max_bits is not None and not self.disabled

    @property
    def max_z(self) -> int:
        if self.discrete:
            return 2**self.radix
        return 2**self.radix - 1 if self.ceiling is None else int(self.ceiling * 2**self.radix)

    @property
    def columns(self) -> int:
        """Gate pre-activations per unit for one forget gate: ``max_bits + 1`` scores if discrete, else 1."""
        return self.max_bits + 1 if self.discrete else 1

    @property
    def top(self) -> float:
        """The largest forget value before quantisation."""
        return 1.0 if self.ceiling is None else self.max_z / 2**self.radix

    @property
    def alpha(self) -> float:
        return self.top - self.beta

    @property
    def beta(self) -> float:
        return 2.0**-self.max_bits if self.limited else 0.0

    @property
    def min_z(self) -> int:
        return 2 ** (self.radix - self.max_bits) if self.limited else 1

    @property
    def growth_bits(self) -> int:
        """The most bits one multiplication can add to a buffer entry: ``-log2`` of the smallest forget value."""
        return self.radix - (self.min_z.bit_length() - 1)

    def limit(self, s: torch.Tensor) -> torch.Tensor:
        """Map a sigmoid output in (0, 1) to a forget value in (beta, top)."""
        if self.alpha == 1.0 and self.beta == 0.0:
            return s
        return s * self.alpha + self.beta

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Integer numerator ``z*`` of the forget value actually applied."""
        return torch.round(z * float(2**self.radix)).clamp_(self.min_z, self.max_z).to(torch.int64)
