"""Noise for G2 gates (Li et al. 2018) and discrete forgetting in the reversible cells.

While training, a G2 gate is ``sigmoid((a + log U - log(1 - U)) / tau)`` with
fresh ``U ~ Uniform(0, 1)`` for every gate value and step (logistic noise,
the difference of two Gumbel variables); discrete forgetting samples its
categories with Gumbel noise ``-log(-log U)`` (:mod:`.discrete`). The reverse must
recompute exactly the gates of the forward, so the noise is not stored but
regenerated: a call draws one seed, and the noise of a layer's chunk of steps
comes from a generator seeded by (seed, layer, chunk start); forward and
backward use the same chunks (``StackCall.chunks``). 64 bits per call instead
of one float per gate value and step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

Tensor = torch.Tensor

GATE_MODES = ("sigmoid", "sharpened", "gumbel")
PAPER_TEMPERATURE = {"sharpened": 0.2, "gumbel": 0.9}
"""The G2 paper's temperatures: 0.9 for G2 (section 4.1), 0.2 for the sharpened sigmoid (section 4.2)."""
# tau unless one is given: the G2 paper's for its gates, Jang et al.'s 1 for discrete forgetting
DEFAULT_TEMPERATURE = {**PAPER_TEMPERATURE, "discrete": 1.0}
NOISE_KINDS = ("logistic", "gumbel")


def noise(kind: str, shape: tuple[int, ...], generator: torch.Generator, device, dtype: torch.dtype) -> Tensor:
    """``log U - log(1 - U)`` (logistic) or ``-log(-log U)`` (Gumbel) for
    ``U ~ Uniform(0, 1)`` (``U`` kept off 0: no infinities)."""
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype).clamp_(min=torch.finfo(dtype).tiny)
    if kind == "logistic":
        return torch.log(u) - torch.log1p(-u)
    return -torch.log(-torch.log(u))


@dataclass(frozen=True)
class GateNoise:
    """The noise of one call, of ``kind`` in ``NOISE_KINDS``, regenerated from ``seed`` for any chunk."""

    seed: int
    kind: str = "logistic"

    @classmethod
    def draw(cls, kind: str) -> GateNoise:
        """A new seed from torch's global generator (``torch.manual_seed`` reproduces it)."""
        return cls(int(torch.randint(0, 2**62, (1,)).item()), kind)

    def chunk(self, layer: int, start: int, shape: tuple[int, ...], device, dtype: torch.dtype) -> Tensor:
        """The noise of ``layer``'s chunk starting at step ``start``: ``shape`` is (steps, B, width)."""
        generator = torch.Generator(device=device)
        generator.manual_seed(hash((self.seed, layer, start)) % 2**63)
        return noise(self.kind, shape, generator, device, dtype)
