"""A-priori rounding-error bounds of fused linear cross-entropy computed in a floating-point dtype.

    z = h W^T + b                 (n, V): the logits, dot products over the hidden size d
    L = cross_entropy(z, y, ...)  class weights, ignore_index, label smoothing, every reduction

Row by row the loss is ``l_n = A_n lse_n - sum_c a_nc z_nc`` (a_nc: the weighted, smoothed
target; A_n = sum_c a_nc; see :mod:`refllm.testing.cross_entropy.error_bounds`), and its logit
gradient ``G_nc = g_n (A_n p_nc - a_nc) / D`` (p = softmax(z), g the upstream gradient, D the
mean's divisor, 1 otherwise). First-order forward error analysis (Higham, *Accuracy and
Stability of Numerical Algorithms*, 2nd ed., §3.1 and §3.5: a dot product of k terms is off by at
most ``gamma_k sum |x_i y_i|``, ``gamma_k = k u / (1 - k u)``) with two unit roundoffs: ``u_a``,
that of the accumulation (float32 for bfloat16 and float16 inputs, as CPU and GPU matrix products
and PyTorch's reductions accumulate them; the dtype's own for float32 and float64), and ``u_s``,
that of the input's dtype, where a value is stored (the unfused computation's logits,
log-probabilities and logit gradients are tensors of the input's dtype). Per element:

1. the logits: ``E_z = gamma_{d+1}(u_a) (|h| |W|^T + |b|) + u_s |z|`` (the sum over d, the bias
   and the rounding to the stored dtype);
2. the row loss: the log-sum-exp is 1-Lipschitz in the largest logit error, each target term
   moves by its own: ``|A_n| max_c E_z,nc + sum_c |a_nc| E_z,nc``; the cross-entropy's own
   rounding on the logits, its bound at ``u_a``; below float32, a stored sum of exponentials
   and log-sum-exp (``e_lse = u_s (2 + |lse_n|)``, times ``|A_n|``) and stored
   log-probabilities (``u_s sum_c |a_nc| |log p_nc|``);
3. the loss: for "sum" and "mean" the rows' bounds summed (over ``|D|``) plus, below float32, the
   reduction in the dtype, a tree (``gamma_k(u_s) sum |l_n|``, k = ceil(log2 n): PyTorch's
   bfloat16 ``nll_loss`` sums so) and the result's rounding ``u_s |L|``;
4. the logit gradient: ``p = exp(z - lse)`` has the relative error ``expm1(E_z,nc + max_c E_z,nc
   + e_lse + u_s |log p_nc|)`` (not first order: a logit of 1e3 stored in bfloat16 is off by
   4), capped at 1; G moves by ``|g_n A_n| / |D|`` times ``p`` times that, plus the
   cross-entropy's gradient bound at ``u_a``, the stored G (``u_s |G|``) and, below float32,
   ``A p - a`` formed from stored terms (``2 u_s |g| (|A| p + |a|) / |D|``) and the divisor D
   rounded (``(u_s + gamma_n(u_a)) |G|``);
5. the gradients are products with G: ``dh = G W`` (a sum over V), ``dW = G^T h`` and ``db =
   sum_n G`` (sums over the n rows); each is off by the propagated ``|dG| |W|`` (``|dG|^T |h|``,
   ``sum |dG|``), by ``gamma_V(u_a)`` (``gamma_n(u_a)``) of ``|G| |W|`` (``|G|^T |h|``, ``sum
   |G|``), and by its own rounding, ``u_s |dh|``;
6. underflow: a probability or a gradient in the subnormal range is off by at most the spacing
   there, ``tiny * eps`` of its dtype, added where it enters.

A sum accumulated in the input's bfloat16 over many rows or classes (a kernel that forgot to
upcast, or a chunked kernel that adds its chunks' partial gradients in bfloat16) is not covered,
on purpose: it is what the oracle is for. The bounds are {} where a ``gamma`` has no value, for
an all-ignored mean (0 / 0, judged as non-finite) and for non-finite logits.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from refllm.testing.cross_entropy.error_bounds import cross_entropy_error_bounds, index_denominator
from refllm.testing.engine.case import Case


def _gamma(k: int, u: float) -> float:
    return k * u / (1 - k * u)


LOW = (torch.bfloat16, torch.float16)


def _accumulation(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in LOW else dtype


@dataclasses.dataclass
class _Model:
    """The float64 quantities of one case that every bound reads (module docs)."""

    h: torch.Tensor  # (n, d)
    w: torch.Tensor  # (V, d)
    z: torch.Tensor  # (n, V) logits
    e_z: torch.Tensor  # (n, V) their error bound (1.)
    slope: torch.Tensor  # (n, V) dl_n / dz_nc = A_n p_nc - a_nc
    big_a: torch.Tensor  # (n,) A_n
    rows: torch.Tensor  # (n,) l_n
    up: torch.Tensor  # (n,) the upstream gradient of each row
    denominator: float  # D
    u_a: float
    u_s: float
    low: bool

    @property
    def p(self) -> torch.Tensor:
        return torch.softmax(self.z, dim=1)

    @property
    def a(self) -> torch.Tensor:
        return self.big_a[:, None] * self.p - self.slope

    @property
    def e_lse(self) -> torch.Tensor:
        """(n,) a stored sum of exponentials and log-sum-exp (below float32; 2.)."""
        if not self.low:
            return torch.zeros(self.z.shape[0], dtype=torch.float64)
        return self.u_s * (2 + torch.logsumexp(self.z, dim=1).abs())


def linear_cross_entropy_error_bounds(case: Case, g: torch.Tensor | None,
                                      dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Elementwise bounds of "forward output" and the gradients wrt ``input``, ``linear_weight``
    and ``linear_bias`` for ``case`` (as the target receives it) computed in ``dtype``; {} where
    the model does not hold (module docs)."""

    h, w = (t.detach().to("cpu", torch.float64) for t in case.args[:2])
    y = case.args[2].detach().to("cpu")
    kwargs = {k: (v.detach().to("cpu", torch.float64) if isinstance(v, torch.Tensor) else v)
              for k, v in case.kwargs.items()}
    b = kwargs.pop("linear_bias", None)
    if h.dim() != 2 or h.shape[0] == 0 or max(h.shape[0], *w.shape, w.shape[1] + 1) * \
            torch.finfo(_accumulation(dtype)).eps / 2 >= 1:
        return {}
    z = torch.nn.functional.linear(h, w, b)
    if not bool(z.isfinite().all()):
        return {}
    ce = cross_entropy_error_bounds(Case((z, y), kwargs), g, _accumulation(dtype))
    if not ce:
        return {}  # an all-ignored mean: 0 / 0 on both sides, judged as non-finite
    m = _model(h, w, b, z, y, kwargs, g, dtype)
    d_g = _logit_grad_bound(m, ce["grad wrt input"], dtype)
    grad_z = m.up[:, None] * m.slope / m.denominator  # G
    n, v = z.shape
    reduction = str(kwargs.get("reduction", "mean"))
    out = {"forward output": _loss_bound(m, ce["forward output"], reduction),
           "grad wrt input": d_g @ w.abs() + _gamma(v, m.u_a) * (grad_z.abs() @ w.abs())
           + m.u_s * (grad_z @ w).abs(),
           "grad wrt linear_weight": d_g.T @ h.abs()
           + _gamma(n, m.u_a) * (grad_z.abs().T @ h.abs()) + m.u_s * (grad_z.T @ h).abs()}
    if b is not None:
        out["grad wrt linear_bias"] = d_g.sum(0) + _gamma(n, m.u_a) * grad_z.abs().sum(0) \
            + m.u_s * grad_z.sum(0).abs()
    tiny = torch.finfo(dtype).tiny * torch.finfo(dtype).eps  # a result in the subnormal range
    return {k: t + tiny for k, t in out.items()}


def _model(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, z: torch.Tensor,
           y: torch.Tensor, kwargs: dict[str, Any], g: torch.Tensor | None,
           dtype: torch.dtype) -> _Model:
    from refllm.ops.cross_entropy import cross_entropy

    u_a, u_s = (torch.finfo(t).eps / 2 for t in (_accumulation(dtype), dtype))
    e_z = _gamma(h.shape[1] + 1, u_a) * (h.abs() @ w.abs().T + (0.0 if b is None else b.abs())) \
        + u_s * z.abs()
    leaf = z.clone().requires_grad_()
    rows = cross_entropy(leaf, y, **{**kwargs, "reduction": "none"})
    (slope,) = torch.autograd.grad(rows.sum(), leaf)
    reduction = kwargs.get("reduction", "mean")
    n = z.shape[0]
    if g is None:
        up = torch.ones(n, dtype=torch.float64)
    else:
        g64 = g.detach().to("cpu", torch.float64).reshape(-1)
        up = g64.reshape(n) if reduction == "none" else g64.expand(n)
    return _Model(h, w, z, e_z, slope, _total_coefficient(z, y, kwargs), rows.detach(), up,
                  index_denominator(y, kwargs) if reduction == "mean" else 1.0, u_a, u_s,
                  dtype in LOW)


def _loss_bound(m: _Model, ce_bound: torch.Tensor, reduction: str) -> torch.Tensor:
    """Steps 2 and 3 of the module docs."""
    d_rows = m.big_a.abs() * m.e_z.amax(1) + (m.a.abs() * m.e_z).sum(1)
    if m.low:
        d_rows = d_rows + m.big_a.abs() * m.e_lse \
            + m.u_s * (m.a.abs() * torch.log_softmax(m.z, dim=1).abs()).sum(1)
    if reduction == "none":
        return ce_bound + d_rows + m.u_s * m.rows.abs()
    n = m.rows.numel()
    tree = _gamma(max(1, math.ceil(math.log2(max(n, 2)))), m.u_s) if m.low else 0.0
    total = float(d_rows.sum()) + tree * float(m.rows.abs().sum())
    loss = float(m.rows.sum()) / m.denominator
    return ce_bound + total / abs(m.denominator) + (m.u_s + tree) * abs(loss)


def _logit_grad_bound(m: _Model, ce_grad: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Step 4 of the module docs: the bound of |dG|, (n, V)."""
    p, n = m.p, m.z.shape[0]
    log_p = torch.log_softmax(m.z, dim=1)
    shift = m.e_z + m.e_z.amax(1, keepdim=True) + m.e_lse[:, None] + (
        m.u_s * log_p.abs() if m.low else 0.0)
    e_p = torch.minimum(p * torch.expm1(shift.clamp(max=80.0)), torch.ones_like(p))
    acc = _accumulation(dtype)
    tiny_a, tiny_s = (torch.finfo(t).tiny * torch.finfo(t).eps for t in (acc, dtype))
    scale = m.up.abs()[:, None] / abs(m.denominator)
    grad_z = (m.up[:, None] * m.slope / m.denominator).abs()
    out = scale * m.big_a.abs()[:, None] * (e_p + tiny_a) + ce_grad + m.u_s * grad_z + tiny_s
    if m.low:  # A p - a formed from stored terms, and the mean's divisor rounded
        out = out + 2 * m.u_s * scale * (m.big_a.abs()[:, None] * p + m.a.abs())
        if m.denominator != 1.0:
            out = out + (m.u_s + _gamma(n, m.u_a)) * grad_z
    return out


def _total_coefficient(z: torch.Tensor, y: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
    """A_n = sum_c a_nc of every row: the loss at zero logits over log V (lse = log V there), or
    with one class the weighted kept target itself."""
    from refllm.ops.cross_entropy import cross_entropy

    v = z.shape[1]
    if v > 1:
        return cross_entropy(torch.zeros_like(z), y, **{**kwargs, "reduction": "none"}) / \
            math.log(v)
    weight = kwargs.get("weight")
    c = float(weight.reshape(-1)[0]) if isinstance(weight, torch.Tensor) else 1.0
    return c * (y != kwargs.get("ignore_index", -100)).to(torch.float64)


__all__ = ["linear_cross_entropy_error_bounds"]
