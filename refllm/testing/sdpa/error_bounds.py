"""A-priori rounding-error bounds of attention, elementwise, by first-order forward error analysis.

For a computation carried out in a dtype of unit roundoff ``u = eps / 2``, the standard model
``fl(a op b) = (a op b)(1 + delta), |delta| <= u`` gives for an inner product or matrix product of
length n (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., 2002, §3.1 Lemma 3.4
and §3.5, Eq. 3.13)::

    |fl(A B) - A B| <= gamma_n |A| |B|,        gamma_n = n u / (1 - n u)

in *any* order of summation (so it holds whatever the thread count, blocking or kernel). We carry
such bounds through attention, one step at a time, with the exact float64 values and their
magnitudes (first order: products of two error terms are dropped; the policy's
``ERROR_BOUND_FACTOR`` covers them). With S the logits, P the weights, O the output, g = dO::

    S  = scale q k^T + m        E_S  = gamma_{d+2} (|scale| |q| |k|^T + |m|)
    P  = softmax(S)             E_P  = P (E_S' + rowsum(P E_S')) + gamma_{s+4} P,
                                       E_S' = E_S + u |S - max S|   (the shifted exponent)
    O  = P v                    E_O  = E_P |v| + gamma_{s+1} P |v|
    dv = P^T g                  E_dv = E_P^T |g| + gamma_{t r} P^T |g|      (r: GQA group size)
    dP = g v^T                  E_dP = gamma_e |g| |v|^T
    D  = rowsum(P dP)           E_D  = rowsum(E_P |dP| + P E_dP) + gamma_s rowsum(P |dP|)
                                       + rowsum(|g| E_O) + gamma_e rowsum(|g| |O|)
    dS = P (dP - D)             E_dS = E_P |dP - D| + P (E_dP + E_D) + 2u P |dP - D|
    dq = scale dS k             E_dq = |scale| (E_dS |k| + gamma_{s+1} |dS| |k|)
    dk = scale dS^T q           E_dk = |scale| (E_dS^T |q| + gamma_{t r + 1} |dS|^T |q|)

``E_D`` holds both ways of computing D: the plain ``rowsum(P * dP)`` and FlashAttention-2's
``rowsum(dO * O)`` from the rounded output (Dao 2023, §3.1.2, Algorithm 2); the second is why dq
and dk of a fused kernel are off by about ``eps |D| |k|`` where a softmax row is one-hot (large
logits), though the exact dS is zero there. The bounds scale with the logits: a query with logits
of 1e4 in float32 has an uncertain softmax (``E_S`` about 1e-3), which is the false alarm the fixed
bound raised on PyTorch's own kernel, while a bug (a wrong scale, a flipped mask, a causal
off-by-one, a missing online-softmax rescale, a wrong GQA grouping) moves the result by a fraction
of ``|O|`` itself, far beyond these bounds.
"""

from __future__ import annotations

import torch
from torch import Tensor

from refllm.testing.engine.case import Case
from refllm.testing.engine.tolerances import gamma


def _inputs(case: Case) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, float, int]:
    """q, k, v (GQA heads repeated), the additive mask's finite part, the allowed positions."""
    q, k, v = (x.detach().to("cpu", torch.float64) for x in case.args[:3])
    kw = case.kwargs
    scale = kw.get("scale")
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    r = 1
    if kw.get("enable_gqa") and q.dim() >= 3 and k.shape[-3] != q.shape[-3]:
        r = q.shape[-3] // k.shape[-3]
        k, v = k.repeat_interleave(r, dim=-3), v.repeat_interleave(r, dim=-3)
    t, s = q.shape[-2], k.shape[-2]
    allowed = torch.ones(t, s, dtype=torch.bool)
    additive = torch.zeros(t, s, dtype=torch.float64)
    mask = kw.get("attn_mask")
    if kw.get("is_causal"):
        allowed = allowed.tril()
    elif mask is not None and mask.dtype == torch.bool:
        allowed = mask.to("cpu")
    elif mask is not None:
        m = mask.detach().to("cpu", torch.float64)
        allowed = m != float("-inf")
        additive = torch.where(allowed, m, 0.0)
    return q, k, v, additive, allowed, scale, r


def _group_sum(x: Tensor, r: int) -> Tensor:
    """Sum the r query heads of each GQA group: (..., g r, s, x) -> (..., g, s, x)."""
    if r == 1:
        return x
    return x.unflatten(-3, (x.shape[-3] // r, r)).sum(-3)


def sdpa_error_bounds(case: Case, g: Tensor | None, dtype: torch.dtype) -> dict[str, Tensor]:
    """Elementwise first-order bounds of the rounding error of attention computed in ``dtype``.

    Keys: ``"forward output"`` and, when ``g`` (the upstream gradient) is given, ``"grad wrt
    query"``, ``"grad wrt key"``, ``"grad wrt value"``; each tensor has the shape of what it
    bounds. ``case`` holds the inputs as the implementation received them (any dtype).
    """
    q, k, v, m, allowed, scale, r = _inputs(case)
    u = torch.finfo(dtype).eps / 2
    d, t, s, e = q.shape[-1], q.shape[-2], k.shape[-2], v.shape[-1]
    S = scale * (q @ k.transpose(-1, -2)) + m
    allowed = allowed.expand(S.shape)
    S = S.masked_fill(~allowed, float("-inf"))
    P = torch.softmax(S, dim=-1).nan_to_num(0.0)  # a fully masked row: zeros, as refllm
    live = P > 0
    top = S.masked_fill(~live, float("-inf")).amax(-1, keepdim=True)
    shift = torch.where(live, (S - top).abs(), 0.0)
    E_S = gamma(d + 2, dtype) * (abs(scale) * (q.abs() @ k.abs().transpose(-1, -2)) + m.abs())
    E_S = torch.where(live, E_S + u * shift, 0.0)
    E_P = P * (E_S + (P * E_S).sum(-1, keepdim=True)) + gamma(s + 4, dtype) * P
    av = v.abs()
    O = P @ v
    E_O = E_P @ av + gamma(s + 1, dtype) * (P @ av)
    bounds = {"forward output": E_O}
    if g is None:
        return bounds
    g = g.detach().to("cpu", torch.float64)
    ag = g.abs()
    Pt, E_Pt = P.transpose(-1, -2), E_P.transpose(-1, -2)
    bounds["grad wrt value"] = (_group_sum(E_Pt @ ag, r)
                                + gamma(t * r, dtype) * _group_sum(Pt @ ag, r))
    dP = g @ v.transpose(-1, -2)
    E_dP = gamma(e, dtype) * (ag @ av.transpose(-1, -2))
    E_D = ((E_P * dP.abs() + P * E_dP).sum(-1, keepdim=True)
           + gamma(s, dtype) * (P * dP.abs()).sum(-1, keepdim=True)
           + (ag * E_O).sum(-1, keepdim=True)
           + gamma(e, dtype) * (ag * O.abs()).sum(-1, keepdim=True))
    D = (P * dP).sum(-1, keepdim=True)
    dS = P * (dP - D)
    E_dS = E_P * (dP - D).abs() + P * (E_dP + E_D) + 2 * u * P * (dP - D).abs()
    c = abs(scale)
    bounds["grad wrt query"] = c * (E_dS @ k.abs() + gamma(s + 1, dtype) * (dS.abs() @ k.abs()))
    E_dSt, dSt = E_dS.transpose(-1, -2), dS.abs().transpose(-1, -2)
    bounds["grad wrt key"] = c * (_group_sum(E_dSt @ q.abs(), r)
                                  + gamma(t * r + 1, dtype) * _group_sum(dSt @ q.abs(), r))
    return bounds


__all__ = ["gamma", "sdpa_error_bounds"]
