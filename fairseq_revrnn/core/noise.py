"""Gumbel noise for G2 gates (Li et al. 2018) in the reversible cells.

While training, a G2 gate is ``sigmoid((a + log U - log(1 - U)) / tau)`` with
fresh ``U ~ Uniform(0, 1)`` for every gate value and step. The reverse must
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


def logistic_noise(shape: tuple[int, ...], generator: torch.Generator, device, dtype: torch.dtype) -> Tensor:
    """``log U - log(1 - U)`` for ``U ~ Uniform(0, 1)`` (``U`` kept off 0: no infinities)."""
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype).clamp_(min=torch.finfo(dtype).tiny)
    return torch.log(u) - torch.log1p(-u)


@dataclass(frozen=True)
class GateNoise:
    """The Gumbel noise of one call, regenerated from ``seed`` for any chunk."""

    seed: int

    @classmethod
    def draw(cls) -> GateNoise:
        """A new seed from torch's global generator (``torch.manual_seed`` reproduces it)."""
        return cls(int(torch.randint(0, 2**62, (1,)).item()))

    def chunk(self, layer: int, start: int, shape: tuple[int, ...], device, dtype: torch.dtype) -> Tensor:
        """The noise of ``layer``'s chunk starting at step ``start``: ``shape`` is (steps, B, width)."""
        generator = torch.Generator(device=device)
        generator.manual_seed(hash((self.seed, layer, start)) % 2**63)
        return logistic_noise(shape, generator, device, dtype)
