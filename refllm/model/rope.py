"""The GPT's rotary positions: `refllm.ops.rope` in the interleaved layout (pairs (2i, 2i+1)).

The decoder rotates q and k (never v) after the projections and before the scores, with the
unscaled frequencies theta_i = base^(-2 i / d) over the whole head (Su et al. 2021, "RoFormer",
§3.4.2, Eq. 34); the maths, the layouts and the scaling rules are in `refllm.ops.rope`. The tables
are computed once per forward pass (`rope_angles`) and applied to q and k of every layer
(`rotate`).

Deviation (from GPT-NeoX / LLaMA / Hugging Face): the pairs are *interleaved* (2i, 2i+1) as in the
paper, not the two halves (i, i + d/2); a converter from those checkpoints must permute q and k.

>>> import torch
>>> x = torch.tensor([[[[1.0, 0.0]]]], dtype=torch.float64)         # (b h t d) = (1 1 1 2)
>>> apply_rope(x, torch.tensor([[0]]), base=10000.0).tolist()        # position 0: no rotation
[[[[1.0, 0.0]]]]
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from refllm.ops.rope import rope, rope_naive, rope_tables, rotate_pairs
from refllm.ops.rope_scaling import Scaling

LAYOUT = "gptj"  # interleaved pairs


def apply_rope_naive(x: Float[Tensor, "b h t d"], positions: Int[Tensor, "b t"],
                     base: float) -> Float[Tensor, "b h t d"]:
    """RoPE by explicit loops (`refllm.ops.rope.rope_naive`, interleaved)."""
    return rope_naive(x, positions, base=base, layout=LAYOUT)


def rope_angles(positions: Int[Tensor, "b t"], d: int, base: float,
                dtype: torch.dtype, scaling: Scaling | None = None) -> tuple[Tensor, Tensor]:
    """a cos(m theta_i) and a sin(m theta_i) of shape (b, 1, t, d/2) (theta and a rescaled by
    ``scaling``: `refllm.ops.rope_scaling`), computed in float64, cast to ``dtype``."""
    cos, sin = rope_tables(positions, d, base=base, scaling=scaling)  # (b, t, d/2)
    return cos[:, None].to(dtype), sin[:, None].to(dtype)


def rotate(x: Float[Tensor, "b h t d"], cos: Tensor, sin: Tensor) -> Float[Tensor, "b h t d"]:
    """Rotate the interleaved pairs of ``x`` by the angles whose cos and sin are given."""
    return rotate_pairs(x, cos, sin, LAYOUT)


def apply_rope(x: Float[Tensor, "b h t d"], positions: Int[Tensor, "b t"],
               base: float) -> Float[Tensor, "b h t d"]:
    """RoPE, vectorised (`refllm.ops.rope.rope`, interleaved); equal to :func:`apply_rope_naive`."""
    return rope(x, positions, base=base, layout=LAYOUT)


__all__ = ["apply_rope", "apply_rope_naive", "rope_angles", "rotate"]
