"""The one dropout helper that naive and fast attention share (Srivastava et al. 2014, §2).

    keep_ij ~ Bernoulli(1 - p),    dropped(probs)_ij = probs_ij * keep_ij / (1 - p)

The keep-mask is drawn once, for the whole ``(..., h, t, s)`` block of attention weights, from
``generator`` (PyTorch's global generator when ``None``): naive and fast attention call
`draw_keep_mask` with the same shape, so given the same seed they drop exactly the same weights.
Dividing by ``1 - p`` ("inverted dropout") keeps the expected value of every weight unchanged.

Deviation: PyTorch's SDPA draws its mask from the global generator with its own kernel, so refllm's
mask cannot equal PyTorch's for the same seed; only the distribution is the same.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor


def draw_keep_mask(shape: tuple[int, ...], p: float, *, generator: torch.Generator | None,
                   device: torch.device) -> Bool[Tensor, "*shape"] | None:
    """A boolean mask, True with probability ``1 - p``, or ``None`` when ``p == 0`` (no dropout).

    Drawn as ``U >= p`` with ``U ~ Uniform[0, 1)`` in float64, so ``P(keep) = 1 - p`` exactly.
    """
    if p == 0.0:
        return None
    u = torch.rand(shape, generator=generator, device=device, dtype=torch.float64)
    return u >= p


def apply_keep_mask(probs: Float[Tensor, "*shape"], keep: Tensor | None, p: float) -> Tensor:
    """``probs * keep / (1 - p)``; ``probs`` itself when there is no mask."""
    if keep is None:
        return probs
    return probs * keep / (1.0 - p)
