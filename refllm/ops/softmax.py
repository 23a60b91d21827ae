"""Softmax, log-softmax and logsumexp along one axis, max-subtracted.

    logsumexp(x)_i   = m + log sum_j exp(x_j - m),       m = max_j x_j
    softmax(x)_j     = exp(x_j - m) / sum_k exp(x_k - m)
    log_softmax(x)_j = x_j - logsumexp(x) = (x_j - m) - log sum_k exp(x_k - m)

Subtracting the row maximum ``m`` changes nothing mathematically (softmax is invariant to a shift of
its logits) and keeps every exponent <= 0, so nothing overflows: the results are finite and correct
for logits up to +-1e4 in float32 (Goodfellow, Bengio and Courville 2016, *Deep Learning*, §4.1;
Bridle 1990 for the name "softmax"). PyTorch: `torch.softmax`, `torch.log_softmax`,
`torch.logsumexp`.

A row whose entries are all ``-inf`` (an attention row with every key masked out) has no maximum to
subtract; we define its results as the limit "no mass anywhere":

Deviation: for a row of all ``-inf``, softmax gives 0 (PyTorch: NaN), log_softmax gives ``-inf``
(PyTorch: NaN) and logsumexp gives ``-inf`` (as PyTorch); the gradient of all three with respect to
such a row is 0 (PyTorch's logsumexp gives NaN).
Deviation: ``dim`` is a single int (``torch.logsumexp`` also takes a tuple) and ``x`` must be at
least 1-D.

>>> import torch
>>> softmax(torch.tensor([0.0, 0.0]))
tensor([0.5000, 0.5000])
>>> softmax(torch.tensor([float("-inf"), float("-inf")]))
tensor([0., 0.])
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from refllm._validation import require_float, require_ndim

NEG_INF = float("-inf")


def _check(x: object, dim: object) -> Tensor:
    t = require_float("x", x)
    require_ndim("x", t, at_least=1, layout="(..., n)")
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, got {type(dim).__name__} {dim!r}")
    if not -t.ndim <= dim < t.ndim:
        raise ValueError(f"dim must lie in [{-t.ndim}, {t.ndim - 1}] for x of shape "
                         f"{tuple(t.shape)}, got {dim}")
    return t


# ----------------------------------------------------------------------------------------- naive


def _naive_rows(x: Tensor, dim: int, row_fn) -> Tensor:
    """Apply ``row_fn`` (list of 0-d tensors -> list of 0-d tensors) to every 1-D row along dim."""
    moved = x.movedim(dim, -1)
    flat = moved.reshape(-1, moved.shape[-1])
    if moved.shape[-1] == 0 or flat.shape[0] == 0:  # nothing to loop over
        return x.clone()
    out = torch.stack([torch.stack(row_fn(list(row))) for row in flat])
    return out.reshape(*moved.shape[:-1], -1).movedim(-1, dim)


def _naive_parts(row: list[Tensor]) -> tuple[Tensor, list[Tensor], Tensor]:
    """The row maximum m (0 if the row is all -inf), exp(x_j - m) for each j, and their sum."""
    m = row[0].detach()
    for x_j in row[1:]:
        m = torch.maximum(m, x_j.detach())
    if m == NEG_INF:
        m = torch.zeros_like(m)  # all -inf: shift by 0, every exp(x_j - m) is 0
    exps = [torch.exp(x_j - m) for x_j in row]
    total = exps[0]
    for e_j in exps[1:]:
        total = total + e_j
    return m, exps, total


def _safe_log_total(total: Tensor) -> Tensor:
    return torch.log(torch.where(total > 0, total, torch.ones_like(total)))


def softmax_naive(x: Float[Tensor, "... n"], dim: int = -1) -> Float[Tensor, "... n"]:
    """softmax(x)_j = exp(x_j - m) / sum_k exp(x_k - m), one element at a time (loops)."""
    x = _check(x, dim)

    def row_fn(row):
        _, exps, total = _naive_parts(row)
        return [e_j / total if total > 0 else e_j for e_j in exps]  # all -inf: exps are 0

    return _naive_rows(x, dim, row_fn)


def log_softmax_naive(x: Float[Tensor, "... n"], dim: int = -1) -> Float[Tensor, "... n"]:
    """log_softmax(x)_j = x_j - m - log sum_k exp(x_k - m), one element at a time (loops)."""
    x = _check(x, dim)

    def row_fn(row):
        m, _, total = _naive_parts(row)
        log_total = _safe_log_total(total)  # (x_j - m) - log_total: x_j - m is exact near the max
        return [torch.where(total > 0, (x_j - m) - log_total, NEG_INF) for x_j in row]

    return _naive_rows(x, dim, row_fn)


def logsumexp_naive(x: Float[Tensor, "... n"], dim: int = -1,
                    keepdim: bool = False) -> Float[Tensor, "*batch"]:
    """logsumexp(x) = m + log sum_j exp(x_j - m), one row at a time (loops)."""
    x = _check(x, dim)

    def row_fn(row):
        m, _, total = _naive_parts(row)
        return [torch.where(total > 0, m + _safe_log_total(total), NEG_INF)]

    if x.shape[dim] == 0:
        out = _empty_lse(x, dim)
    else:
        out = _naive_rows(x, dim, row_fn) if x.numel() else _empty_lse(x, dim)
    return out if keepdim else out.squeeze(dim)


def _empty_lse(x: Tensor, dim: int) -> Tensor:
    shape = list(x.shape)
    shape[dim] = 1
    return x.new_full(shape, NEG_INF)


# ------------------------------------------------------------------------------------------ fast


def _shifted_exp(x: Tensor, dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """m (detached, 0 on all -inf rows), exp(x - m) and its sum along dim (keepdim)."""
    m = x.detach().amax(dim, keepdim=True)
    m = torch.where(m == NEG_INF, torch.zeros_like(m), m)
    shifted = x - m  # a fresh tensor: without autograd, exponentiate it in place (one pass less)
    exps = shifted.exp() if shifted.requires_grad else shifted.exp_()
    return m, exps, exps.sum(dim, keepdim=True)


def softmax(x: Float[Tensor, "... n"], dim: int = -1) -> Float[Tensor, "... n"]:
    """Softmax along ``dim``, max-subtracted; rows of all -inf give 0. Same as `softmax_naive`."""
    x = _check(x, dim)
    if x.shape[dim] == 0:
        return x.clone()
    _, exps, total = _shifted_exp(x, dim)
    total = torch.where(total > 0, total, torch.ones_like(total))
    return exps / total if exps.requires_grad else exps.div_(total)


def log_softmax(x: Float[Tensor, "... n"], dim: int = -1) -> Float[Tensor, "... n"]:
    """Log-softmax along ``dim``; rows of all -inf give -inf. Same as `log_softmax_naive`."""
    x = _check(x, dim)
    if x.shape[dim] == 0:
        return x.clone()
    m, _, total = _shifted_exp(x, dim)
    # (x - m) - log(total), not x - logsumexp(x): x - m is exact near the maximum, so the result
    # keeps its precision when |x| is large (1e4 in float32)
    return torch.where(total > 0, (x - m) - _safe_log_total(total), NEG_INF)


def logsumexp(x: Float[Tensor, "... n"], dim: int = -1,
              keepdim: bool = False) -> Float[Tensor, "*batch"]:
    """logsumexp along ``dim``; rows of all -inf (and empty rows) give -inf."""
    x = _check(x, dim)
    if x.shape[dim] == 0:
        out = _empty_lse(x, dim)
    else:
        m, _, total = _shifted_exp(x, dim)
        out = torch.where(total > 0, m + _safe_log_total(total), NEG_INF)
    return out if keepdim else out.squeeze(dim)
