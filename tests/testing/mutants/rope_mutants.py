"""Planted bugs in rotary position embedding, each in a plausible user kernel with refllm's
signature ``rope(x, positions=None, *, offset=0, base=10000.0, layout="neox", rotary_dim=None,
scaling=None)``.

    (x_a, x_b) -> (x_a cos(m theta_i) - x_b sin(m theta_i), x_b cos(m theta_i) + x_a sin(m theta_i))

Correct versions come first (one on float64 tables, one with a hand-written backward, the
transposed rotation), then the mutants, each ONE bug away from one of them.
"""

from __future__ import annotations

import torch

from refllm.ops.rope import rope_tables
from refllm.ops.rope_scaling import rope_frequencies


def _positions(x, positions, offset):
    if positions is None:
        return torch.arange(offset, offset + x.shape[-2])
    return positions


def _broadcast(table, x, positions):
    """(t, r/2) or (b, t, r/2) tables shaped to broadcast against x (..., t, r/2)."""
    if positions is not None and positions.dim() == 2:
        return table.reshape(table.shape[0], *(1,) * (x.dim() - 3), *table.shape[1:])
    return table


def _rotate(x, cos, sin, layout, r):
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    h, c, s = x.to(work), cos.to(work), sin.to(work)
    if layout == "neox":
        x1, x2 = h[..., : r // 2], h[..., r // 2: r]
        rotated = torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)
    else:
        x1, x2 = h[..., 0:r:2], h[..., 1:r:2]
        rotated = torch.stack((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1).flatten(-2)
    return torch.cat((rotated, h[..., r:]), dim=-1).to(x.dtype)


def rope(x, positions=None, *, offset=0, base=10000.0, layout="neox", rotary_dim=None,
         scaling=None):
    """RoPE on float64 tables from the integer positions, rotated in float32 (correct)."""
    r = x.shape[-1] if rotary_dim is None else rotary_dim
    pos = _positions(x, positions, offset)
    cos, sin = rope_tables(pos, r, base=base, scaling=scaling)
    cos, sin = _broadcast(cos, x, positions), _broadcast(sin, x, positions)
    return _rotate(x, cos, sin, layout, r)


class _FusedRope(torch.autograd.Function):
    """A fused kernel: the backward rotates the upstream gradient by the opposite angle."""

    @staticmethod
    def forward(ctx, x, cos, sin, layout, r, transpose):
        ctx.save_for_backward(cos, sin)
        ctx.layout, ctx.r, ctx.transpose = layout, r, transpose
        return _rotate(x, cos, sin, layout, r)

    @staticmethod
    def backward(ctx, g):
        cos, sin = ctx.saved_tensors
        sign = -1 if ctx.transpose else 1
        return _rotate(g, cos, sign * sin, ctx.layout, ctx.r), None, None, None, None, None


def _fused(x, positions, offset, base, layout, rotary_dim, scaling, transpose):
    r = x.shape[-1] if rotary_dim is None else rotary_dim
    pos = _positions(x, positions, offset)
    cos, sin = rope_tables(pos, r, base=base, scaling=scaling)
    return _FusedRope.apply(x, _broadcast(cos, x, positions), _broadcast(sin, x, positions),
                            layout, r, transpose)


def rope_fused(x, positions=None, *, offset=0, base=10000.0, layout="neox", rotary_dim=None,
               scaling=None):
    """RoPE with a hand-written backward (correct)."""
    return _fused(x, positions, offset, base, layout, rotary_dim, scaling, True)


def rope_backward_not_transposed(x, positions=None, *, offset=0, base=10000.0, layout="neox",
                                 rotary_dim=None, scaling=None):
    """BUG: the backward rotates the gradient by the forward angle (R g, not R^T g)."""
    return _fused(x, positions, offset, base, layout, rotary_dim, scaling, False)


def rope_tables_in_input_dtype(x, positions=None, *, offset=0, base=10000.0, layout="neox",
                               rotary_dim=None, scaling=None):
    """BUG: the angles computed from positions cast to the input's dtype (bfloat16 holds the
    integers exactly only up to 256: positions past it merge, and cos/sin follow)."""
    r = x.shape[-1] if rotary_dim is None else rotary_dim
    pos = _positions(x, positions, offset)
    theta, a = rope_frequencies(r, base, scaling)
    angle = pos.to(x.dtype)[..., None] * theta.to(x.dtype)
    cos, sin = angle.cos() * a, angle.sin() * a
    return _rotate(x, _broadcast(cos, x, positions), _broadcast(sin, x, positions), layout, r)


def rope_layouts_swapped(x, positions=None, *, offset=0, base=10000.0, layout="neox",
                         rotary_dim=None, scaling=None):
    """BUG: the interleaved pairs (GPT-J) used for the half split (NeoX) and back."""
    swapped = {"neox": "gptj", "gptj": "neox"}[layout]
    return rope(x, positions, offset=offset, base=base, layout=swapped, rotary_dim=rotary_dim,
                scaling=scaling)


def rope_offset_ignored(x, positions=None, *, offset=0, base=10000.0, layout="neox",
                        rotary_dim=None, scaling=None):
    """BUG: a KV cache's offset ignored: every call starts again at position 0."""
    return rope(x, positions, base=base, layout=layout, rotary_dim=rotary_dim, scaling=scaling)


def rope_rotates_every_feature(x, positions=None, *, offset=0, base=10000.0, layout="neox",
                               rotary_dim=None, scaling=None):
    """BUG: ``rotary_dim`` ignored: the pass-through features are rotated too."""
    return rope(x, positions, offset=offset, base=base, layout=layout, scaling=scaling)


def rope_rotates_backwards(x, positions=None, *, offset=0, base=10000.0, layout="neox",
                           rotary_dim=None, scaling=None):
    """BUG: sin's sign flipped: the rotation by -m theta (a transposed table)."""
    r = x.shape[-1] if rotary_dim is None else rotary_dim
    pos = _positions(x, positions, offset)
    cos, sin = rope_tables(pos, r, base=base, scaling=scaling)
    return _rotate(x, _broadcast(cos, x, positions), -_broadcast(sin, x, positions), layout, r)


CORRECT = [rope, rope_fused]
