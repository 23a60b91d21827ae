"""Rotary position embedding, RoPE (Su et al. 2021, "RoFormer", §3.4.2, Eq. 34).

A query or key vector x of width d at position m is rotated pair by pair: for i in [0, d/2),

    theta_i = base^(-2 i / d)
    (x_{2i}, x_{2i+1})  ->  (x_{2i} cos(m theta_i) - x_{2i+1} sin(m theta_i),
                             x_{2i} sin(m theta_i) + x_{2i+1} cos(m theta_i))

so that <R_m q, R_n k> depends on m - n only (the relative position). Su's base is 10000.
Applied to q and k (never v) after the projections and before the scores.

Deviation (from GPT-NeoX / LLaMA / Hugging Face): the pairs are *interleaved* (2i, 2i+1) as in the
paper, not the two halves (i, i + d/2); a converter from those checkpoints must permute q and k.

>>> import torch
>>> x = torch.tensor([[[[1.0, 0.0]]]], dtype=torch.float64)         # (b h t d) = (1 1 1 2)
>>> apply_rope(x, torch.tensor([[0]]), base=10000.0).tolist()        # position 0: no rotation
[[[[1.0, 0.0]]]]
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float, Int
from torch import Tensor


def apply_rope_naive(x: Float[Tensor, "b h t d"], positions: Int[Tensor, "b t"],
                     base: float) -> Float[Tensor, "b h t d"]:
    """RoPE by explicit loops over batch, head, position and pair (float64-friendly)."""
    b, h, t, d = x.shape
    out = torch.empty_like(x)
    for bi in range(b):
        for hi in range(h):
            for ti in range(t):
                m = float(positions[bi, ti])
                for i in range(d // 2):
                    angle = m * base ** (-2.0 * i / d)
                    c, s = math.cos(angle), math.sin(angle)
                    x0, x1 = x[bi, hi, ti, 2 * i], x[bi, hi, ti, 2 * i + 1]
                    out[bi, hi, ti, 2 * i] = x0 * c - x1 * s
                    out[bi, hi, ti, 2 * i + 1] = x0 * s + x1 * c
    return out


def rope_angles(positions: Int[Tensor, "b t"], d: int, base: float,
                dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """cos(m theta_i) and sin(m theta_i) of shape (b, 1, t, d/2), computed in float64."""
    i = torch.arange(d // 2, dtype=torch.float64, device=positions.device)
    theta = base ** (-2.0 * i / d)  # (d/2)
    angle = positions.to(torch.float64)[:, None, :, None] * theta  # (b, 1, t, d/2)
    return angle.cos().to(dtype), angle.sin().to(dtype)


def rotate(x: Float[Tensor, "b h t d"], cos: Tensor, sin: Tensor) -> Float[Tensor, "b h t d"]:
    """Rotate the interleaved pairs of ``x`` by the angles whose cos and sin are given."""
    x0, x1 = x[..., 0::2], x[..., 1::2]  # (b h t d/2) each
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


def apply_rope(x: Float[Tensor, "b h t d"], positions: Int[Tensor, "b t"],
               base: float) -> Float[Tensor, "b h t d"]:
    """RoPE, vectorised; equal to :func:`apply_rope_naive`."""
    cos, sin = rope_angles(positions, x.shape[-1], base, x.dtype)
    return rotate(x, cos, sin)


__all__ = ["apply_rope", "apply_rope_naive", "rope_angles", "rotate"]
