"""Planted bugs in gated linear units, each in a plausible user kernel ``fn(gate, up)``.

    swiglu(gate, up) = silu(gate) up,  silu(a) = a sigmoid(a),  silu'(a) = s + a s (1 - s)
    geglu(gate, up)  = gelu(gate) up

Correct versions come first (an autograd one and one with a hand-written backward, as fused
kernels have), then the mutants, each ONE bug away from one of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def swiglu(gate, up):
    """SwiGLU by autograd."""
    return F.silu(gate) * up


class _FusedSwiGLU(torch.autograd.Function):
    """A fused kernel: the forward saves the inputs, the backward recomputes sigmoid in float32."""

    @staticmethod
    def forward(ctx, gate, up, slope_term):
        ctx.save_for_backward(gate, up)
        ctx.slope_term = slope_term
        g = gate.float()
        return (g * torch.sigmoid(g) * up.float()).to(gate.dtype)

    @staticmethod
    def backward(ctx, grad):
        gate, up = ctx.saved_tensors
        g, u, dy = gate.float(), up.float(), grad.float()
        s = torch.sigmoid(g)
        slope = s + g * s * (1 - s) if ctx.slope_term else s
        return (dy * u * slope).to(gate.dtype), (dy * g * s).to(up.dtype), None


def swiglu_fused(gate, up):
    """SwiGLU with a hand-written backward (correct)."""
    return _FusedSwiGLU.apply(gate, up, True)


def swiglu_gate_and_up_swapped(gate, up):
    """BUG: the activation applied to the up projection: ``silu(up) * gate``."""
    return F.silu(up) * gate


def swiglu_with_gelu(gate, up):
    """BUG: GeGLU's activation in a SwiGLU kernel (``gelu`` for ``silu``)."""
    return F.gelu(gate) * up


def swiglu_backward_without_the_slope_term(gate, up):
    """BUG: silu's derivative taken as ``sigmoid(a)``, the ``a s (1 - s)`` term forgotten; the
    forward is right."""
    return _FusedSwiGLU.apply(gate, up, False)


def swiglu_exp_overflows_in_backward(gate, up):
    """BUG: ``a / (1 + exp(-a))`` by autograd: for gates below about -89 (float32) ``exp(-a)``
    is inf and the gradient ``inf / inf`` NaN."""
    return gate / (1 + torch.exp(-gate)) * up


def geglu_tanh_form_for_exact(gate, up):
    """BUG: GeGLU's tanh approximation where the exact GELU is asked for (errors up to 5e-4)."""
    return F.gelu(gate, approximate="tanh") * up


CORRECT = [swiglu, swiglu_fused]
