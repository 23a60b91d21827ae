"""Rotary position embedding, RoPE (Su et al. 2021, "RoFormer", §3.4.2, Eq. 34).

The first r features of a query or key vector x of width d at position m (r = ``rotary_dim``,
even, r <= d; all of them by default) are rotated pair by pair, for i in [0, r/2):

    (x_a, x_b)  ->  a (x_a cos(m theta_i) - x_b sin(m theta_i),
                       x_b cos(m theta_i) + x_a sin(m theta_i))

with theta_i and the factor a (1 but for YaRN) from `refllm.ops.rope_scaling`, and features r..d-1
passed through. The pair (a, b) is the layout:

- ``"neox"``: the half split (i, i + r/2) of GPT-NeoX, Llama in Hugging Face, vLLM's
  ``is_neox_style`` (HF's ``rotate_half``);
- ``"gptj"``: interleaved (2i, 2i + 1), as the paper, GPT-J, Meta's Llama code and torchtune.

Positions are given (an integer tensor (t,), or (b, t) with one row per element of x's first
axis), or are ``offset + arange(t)`` (a KV cache's next positions). Each rotation is orthogonal
(times a), so ||R_m x|| = a ||x||, R_0 is the identity, R_m R_n = R_{m+n}, and
<R_m q, R_n k> = <q, R_{n-m} k> depends on m - n only.

Precision: the angles m theta_i are computed in float64 from the integer positions, and cos and
sin in float64 (angles from positions held in bfloat16 merge positions past 256, and float32
angles lose m * 2^-24 radians); they are cast to the computation type (float32 for float16 and
bfloat16 inputs, else the input's dtype) for the multiply, and the result is rounded to the
input's dtype once.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float, Int
from torch import Tensor

from refllm._validation import (
    describe,
    require_choice,
    require_float,
    require_int,
    require_ndim,
    require_tensor,
)
from refllm.ops.rope_scaling import (
    Scaling,
    check_frequency_args,
    rope_frequencies,
    rope_frequencies_naive,
)

LAYOUTS = ("neox", "gptj")
"""Which features form a rotated pair: the two halves (i, i + r/2), or neighbours (2i, 2i + 1)."""


def _require_integer(name: str, positions: object) -> Tensor:
    p = require_tensor(name, positions)
    if p.dtype == torch.bool or p.dtype.is_floating_point or p.dtype.is_complex:
        raise TypeError(f"{name} must be an integer tensor (e.g. int64), got {describe(p)}")
    return p


def _check_positions(x: Tensor, positions: object, offset: object) -> None:
    require_int("offset", offset)
    if positions is None:
        return
    p = _require_integer("positions", positions)
    t = x.shape[-2]
    ok = (p.ndim == 1 and p.shape[0] == t) or (
        p.ndim == 2 and x.ndim >= 3 and p.shape[1] == t and p.shape[0] in (1, x.shape[0]))
    if not ok:
        batch = f" or ({x.shape[0]}, {t})" if x.ndim >= 3 else ""
        raise ValueError(f"positions must have shape ({t},){batch}: (t,), or (b, t) for x's first "
                         f"axis b, with t = x.shape[-2]; got {describe(p)} for x {describe(x)}")
    if p.device != x.device:
        raise ValueError(f"positions must be on x's device {x.device}, got {describe(p)}")
    if offset != 0:
        raise ValueError(f"offset must be 0 when positions are given (it only makes offset + "
                         f"arange(t)), got offset={offset!r}")


def _check_rope(x: object, positions: object, offset: object, base: object, layout: object,
                rotary_dim: object, scaling: object) -> tuple[Tensor, int]:
    """Check every argument once; return x and the rotary width r."""
    t = require_float("x", x)
    require_ndim("x", t, at_least=2, layout="(..., t, d)")
    d = t.shape[-1]
    if rotary_dim is None and d % 2:
        raise ValueError(f"x's last axis (the head width d={d}) must be even for RoPE, or give "
                         f"an even rotary_dim < d; got {describe(t)}")
    r = d if rotary_dim is None else require_int("rotary_dim", rotary_dim, low=2)
    if r > d:
        raise ValueError(f"rotary_dim must be at most the head width d={d} (x's last axis), got "
                         f"rotary_dim={r}")
    check_frequency_args(r, base, scaling)
    require_choice("layout", layout, LAYOUTS)
    _check_positions(t, positions, offset)
    return t, r


def _positions(x: Tensor, positions: Tensor | None, offset: int) -> Tensor:
    if positions is None:
        return torch.arange(offset, offset + x.shape[-2], device=x.device)
    return positions


def _pairs(r: int, layout: str) -> list[tuple[int, int]]:
    """The feature indices (a, b) of each rotated pair i."""
    if layout == "neox":
        return [(i, i + r // 2) for i in range(r // 2)]
    return [(2 * i, 2 * i + 1) for i in range(r // 2)]


def rope_naive(x: Float[Tensor, "*batch t d"], positions: Int[Tensor, "*b t"] | None = None, *,
               offset: int = 0, base: float = 10000.0, layout: str = "neox",
               rotary_dim: int | None = None, scaling: Scaling | None = None) -> Tensor:
    """RoPE vector by vector and pair by pair in Python floats (``math.cos``, ``math.sin``).

    >>> x = torch.tensor([[1.0, 0.0]], dtype=torch.float64)      # (t d) = (1 2)
    >>> rope_naive(x, torch.tensor([1])).tolist()                 # angle 1: (cos 1, sin 1)
    [[0.5403023058681398, 0.8414709848078965]]
    """
    x, r = _check_rope(x, positions, offset, base, layout, rotary_dim, scaling)
    theta, a = rope_frequencies_naive(r, base, scaling)
    t, d = x.shape[-2:]
    pos = _positions(x, positions, offset)
    table = pos.reshape(pos.shape[0] if pos.ndim == 2 else 1, t).tolist()  # 1 or b rows
    rows = x.detach().double().reshape(-1, t, d).tolist() if x.numel() else []
    per_row = len(rows) // len(table) if rows else 1  # vectors (t, d) per row of positions
    out = []
    for j, row in enumerate(rows):
        for m, vec in zip(table[j // per_row], row):
            y = list(vec)  # features r..d-1 pass through
            for (ia, ib), th in zip(_pairs(r, layout), theta):
                c, s = a * math.cos(m * th), a * math.sin(m * th)
                y[ia] = vec[ia] * c - vec[ib] * s
                y[ib] = vec[ib] * c + vec[ia] * s
            out.append(y)
    return torch.tensor(out, dtype=torch.float64).reshape(x.shape).to(x.dtype)


def rope_tables(positions: Int[Tensor, "*p"], rotary_dim: int, *, base: float = 10000.0,
                scaling: Scaling | None = None) -> tuple[Tensor, Tensor]:
    """a cos(m theta_i) and a sin(m theta_i) in float64, of shape (*positions.shape, r/2).

    >>> cos, sin = rope_tables(torch.tensor([0, 1]), 2)
    >>> cos.tolist(), sin.tolist()
    ([[1.0], [0.5403023058681398]], [[0.0], [0.8414709848078965]])
    """
    positions = _require_integer("positions", positions)
    r = check_frequency_args(rotary_dim, base, scaling)
    theta, a = rope_frequencies(r, base, scaling, device=positions.device)
    angle = positions.to(torch.float64)[..., None] * theta  # float64 from the integers
    return angle.cos() * a, angle.sin() * a


def rotate_pairs(x: Float[Tensor, "*batch t d"], cos: Tensor, sin: Tensor,
                 layout: str = "neox") -> Tensor:
    """Rotate the first r = 2 cos.shape[-1] features of x (cos and sin broadcast to
    (..., t, r/2)) in the computation type; round to x's dtype once. Unchecked: callers check."""
    r = 2 * cos.shape[-1]
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    h, c, s = x.to(work), cos.to(work), sin.to(work)
    if layout == "neox":
        x1, x2 = h[..., : r // 2], h[..., r // 2: r]  # (..., t, r/2) each
        rotated = torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)
    else:
        x1, x2 = h[..., 0:r:2], h[..., 1:r:2]
        rotated = torch.stack((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1).flatten(-2)
    return torch.cat((rotated, h[..., r:]), dim=-1).to(x.dtype)


def rope(x: Float[Tensor, "*batch t d"], positions: Int[Tensor, "*b t"] | None = None, *,
         offset: int = 0, base: float = 10000.0, layout: str = "neox",
         rotary_dim: int | None = None, scaling: Scaling | None = None) -> Tensor:
    """RoPE, vectorised; equal to :func:`rope_naive`, and (layout "neox") to Hugging Face's
    ``apply_rotary_pos_emb``.

    >>> x = torch.tensor([[[1.0, 0.0, 0.0, 1.0]]])               # (h t d) = (1 1 4)
    >>> rope(x, torch.tensor([0])).tolist()                       # position 0: no rotation
    [[[1.0, 0.0, 0.0, 1.0]]]
    """
    x, r = _check_rope(x, positions, offset, base, layout, rotary_dim, scaling)
    pos = _positions(x, positions, offset)
    cos, sin = rope_tables(pos, r, base=base, scaling=scaling)  # (t, r/2) or (b, t, r/2)
    if pos.ndim == 2:  # one row per element of x's first axis: (b, 1, ..., 1, t, r/2)
        shape = (pos.shape[0],) + (1,) * (x.ndim - 3) + tuple(cos.shape[1:])
        cos, sin = cos.reshape(shape), sin.reshape(shape)
    return rotate_pairs(x, cos, sin, layout)


__all__ = ["LAYOUTS", "rope", "rope_naive", "rope_tables", "rotate_pairs"]
