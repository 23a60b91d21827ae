"""A-priori rounding-error bounds of cross-entropy computed in a floating-point dtype.

Every form of PyTorch's cross-entropy (index or probability targets, class weights,
``ignore_index``, label smoothing) is, row by row, linear in the logits once the log-sum-exp is
fixed:

    l_i = A_i * lse(x_i) - sum_c a_ic x_ic,      A_i = sum_c a_ic,
    lse(x) = m + log S,  m = max_c x_c,  S = sum_c exp(x_c - m)

(a_ic: the weighted, smoothed target of row i). The coefficients are read off refllm's float64
reference itself: ``l_i(0) = A_i log C`` and ``dl_i/dx_ic = A_i p_ic - a_ic``. First-order
forward error analysis (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed.,
§3.1 and §3.5; ``gamma_n = n u / (1 - n u)``, u the unit roundoff) of the shifted log-sum-exp and
of the sums that follow bounds what any of the usual formulations makes in the dtype:

* the log-sum-exp: ``x_c - m`` is off by ``u |x_c - m|``, so ``exp`` by a relative
  ``u (1 + |x_c - m|)``; the sum of C terms adds ``gamma_C``; the log and the final add,
  ``u (|log S| + |lse|)``:  E_i = gamma_{C+2} (1 + sum_c p_ic |x_ic - m_i| + |log S_i| + |lse_i|);
* the row loss: ``B_i = |A_i| E_i + gamma_{C+2} (|A_i| |lse_i| + sum_c |a_ic| |x_ic|)``; this
  covers ``logsumexp(x) - x[y]`` (whose error at logits near 1e4 is ``u * 1e4``, far above what
  PyTorch's log-softmax makes on the same input) as well as ``-log_softmax(x)[y]``;
* the reduction over n rows: ``sum_i B_i + gamma_n sum_i |l_i|`` for "sum", that over ``|D|``
  plus ``gamma_n |mean|`` for "mean" (D, the weighted count, is a sum too);
* the gradient ``g (A_i p_ic - a_ic) / D``: ``p_ic = exp(x_ic - lse_i)`` is off by
  ``p_ic (u (1 + |x_ic - lse_i|) + E_i)``, the difference by ``gamma_3 (|A_i| p_ic + |a_ic|)``.

The bounds hold while ``(C + 2) u < 1`` and ``n u < 1``; beyond (bfloat16 with 254 classes or
more) no bound is returned and the policy's same-dtype rule decides alone.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from refllm.testing.engine.case import Case


def _gamma(n: int, u: float) -> float:
    return n * u / (1 - n * u)


def cross_entropy_error_bounds(case: Case, g: torch.Tensor | None,
                               dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Elementwise bounds of "forward output" and "grad wrt input" for ``case`` (as the target
    receives it) computed in ``dtype``; {} where the model does not hold (module docs)."""
    from refllm.ops.cross_entropy import cross_entropy

    x = case.args[0].detach().to("cpu", torch.float64)
    target = case.args[1].detach().to("cpu")
    target = target.to(torch.float64) if target.is_floating_point() else target
    kwargs: dict[str, Any] = {k: (v.detach().to("cpu", torch.float64)
                                  if isinstance(v, torch.Tensor) and v.is_floating_point()
                                  else v) for k, v in case.kwargs.items()}
    reduction = kwargs.pop("reduction", "mean")
    dim = 0 if x.dim() == 1 else 1
    c = x.shape[dim]
    u = torch.finfo(dtype).eps / 2
    rows = max(1, x.numel() // max(c, 1))
    if c < 1 or (c + 3) * u >= 1 or rows * u >= 1 or x.numel() == 0:
        return {}
    if not bool(x.isfinite().all()):
        return {}  # -inf logits: the policy's rules for non-finite values decide
    leaf = x.clone().requires_grad_()
    losses = cross_entropy(leaf, target, reduction="none", **kwargs)
    (grad,) = torch.autograd.grad(losses.sum(), leaf)
    big_a = _total_coefficient(x, target, kwargs, dim).unsqueeze(dim)  # A_i, over the classes
    lse = torch.logsumexp(x, dim=dim, keepdim=True)
    p = (x - lse).exp()
    a = big_a * p - grad  # a_ic
    m = x.amax(dim=dim, keepdim=True)
    log_s = lse - m
    gc = _gamma(c + 2, u)
    e_lse = gc * (1 + (p * (x - m).abs()).sum(dim, keepdim=True) + log_s.abs() + lse.abs())
    row = (big_a.abs() * e_lse + gc * (big_a.abs() * lse.abs()
                                        + (a.abs() * x.abs()).sum(dim, keepdim=True))).squeeze(dim)
    d_grad = big_a.abs() * p * (u * (1 + (x - lse).abs()) + e_lse) + _gamma(3, u) * (
        big_a.abs() * p + a.abs())
    losses = losses.detach()
    n = losses.numel()
    gn = _gamma(max(n, 1), u)
    up = torch.ones_like(losses) if g is None else g.detach().to("cpu", torch.float64)
    if reduction == "none":
        return {"forward output": row,
                "grad wrt input": d_grad * up.unsqueeze(dim).abs()}
    scale = 1.0 if g is None else float(g.detach().abs().max())  # the scalar's upstream grad
    total = float(row.sum()) + gn * float(losses.abs().sum())
    if reduction == "sum":
        return {"forward output": torch.tensor(total, dtype=torch.float64),
                "grad wrt input": d_grad * scale}
    denominator = _denominator(x, target, kwargs, dim)
    if denominator == 0.0:
        return {}  # nothing kept: 0/0 on both sides, judged as non-finite
    mean = float(losses.sum()) / denominator
    bound = total / abs(denominator) + gn * abs(mean)
    # the gradient is divided by the rounded D as well: gamma_n of the exact gradient more
    grad_bound = (d_grad + gn * grad.abs()) * scale / abs(denominator)
    return {"forward output": torch.tensor(bound, dtype=torch.float64),
            "grad wrt input": grad_bound}


def _total_coefficient(x: torch.Tensor, target: torch.Tensor, kwargs: dict[str, Any],
                       dim: int) -> torch.Tensor:
    """A_i = sum_c a_ic of every row: ``l_i(0) / log C`` (at zero logits lse = log C), or for a
    single class (where every loss is 0) the weighted target mass itself."""
    from refllm.ops.cross_entropy import cross_entropy

    c = x.shape[dim]
    if c > 1:
        return cross_entropy(torch.zeros_like(x), target, reduction="none", **kwargs) / \
            math.log(c)
    weight = kwargs.get("weight")
    w = float(weight.reshape(-1)[0]) if isinstance(weight, torch.Tensor) else 1.0
    if target.is_floating_point():
        return w * target.squeeze(dim)
    return w * (target != kwargs.get("ignore_index", -100)).to(torch.float64)


def _denominator(x: torch.Tensor, target: torch.Tensor, kwargs: dict[str, Any],
                 dim: int) -> float:
    """D of the "mean": the number of rows for probability targets, else the summed class
    weights of the rows not ignored."""
    if target.is_floating_point():
        return float(x.numel() // x.shape[dim])
    return index_denominator(target, kwargs)


def index_denominator(target: torch.Tensor, kwargs: dict[str, Any]) -> float:
    """D of the "mean" with class indices: the summed class weights of the rows not ignored
    (also linear cross-entropy's)."""
    weight = kwargs.get("weight")
    kept = target != kwargs.get("ignore_index", -100)
    w = weight[target.clamp(min=0)] if isinstance(weight, torch.Tensor) else \
        torch.ones(target.shape, dtype=torch.float64)
    return float((w * kept).sum())


__all__ = ["cross_entropy_error_bounds"]
