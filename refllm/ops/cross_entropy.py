"""Cross-entropy of logits against a target class or a target distribution, and its gradient.

The equation, for one row of logits x over c classes and a target distribution y:

    L = -sum_c y_c log p_c,        p = softmax(x),  log p_c = (x_c - m) - log sum_k exp(x_k - m)

with m = max_k x_k (the max-subtracted log-sum-exp that keeps |x| <= 1e4 finite in float32).
PyTorch's full form (``torch.nn.functional.cross_entropy``; aten/src/ATen/native/LossNLL.cpp,
``cross_entropy_loss_label_smoothing`` and ``cross_entropy_loss_prob_target``), per row n:

* class-index target y_n, class weights w (ones when absent), smoothing eps:
      l_n = (1 - eps) * w[y_n] * (-log p_{n,y_n}) + (eps / C) * sum_c w_c * (-log p_{n,c})
  and l_n = 0 where y_n == ignore_index; "mean" divides sum_n l_n by sum_{n counted} w[y_n]
  (both terms: PyTorch divides the smoothing term by the same weight sum).
* class-probability target q_n (same shape as the input):
      l_n = -sum_c w_c * ((1 - eps) * q_{n,c} + eps / C) * log p_{n,c}
  and "mean" divides by the number of rows N * d1 * ... * dk, not by the weights.

Label smoothing: Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision",
§7 (q' = (1 - eps) q + eps / K). Gradient (hand-derived): with t_{n,c} the weighted target
distribution above (l_n = -sum_c t_{n,c} log p_{n,c}),

    dl_n / dx_{n,j} = (sum_c t_{n,c}) p_{n,j} - t_{n,j}.

Notation: ``c`` classes (PyTorch's C), ``b`` batch (N), ``*k`` extra dims d1..dk.
Deviation: eps spreads over all C classes, the target class included (as PyTorch, not as papers
that spread over the C - 1 others). An all-ignored batch gives nan under "mean" (0 / 0, as PyTorch)
and a zero gradient. Mixed input/target/weight dtypes are a TypeError (PyTorch promotes).
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor
from torch.autograd.function import once_differentiable

from refllm.ops._ieee import ieee_div
from refllm.ops._loss_checks import check_cross_entropy, check_grad_output

# ---------------------------------------------------------------------------------------------
# naive: explicit loops on Python floats (float64), a transcription of the equations above


def _rows(input: Tensor, target: Tensor) -> tuple[list, list, int]:
    """Logit rows (M, C) and per-row targets, the class axis moved last; and C."""
    x = input.unsqueeze(0) if input.ndim == 1 else input
    t = target.unsqueeze(0) if input.ndim == 1 else target
    n_classes = x.shape[1]
    rows = x.detach().movedim(1, -1).reshape(-1, n_classes).double().tolist()
    if t.is_floating_point():
        return rows, t.detach().movedim(1, -1).reshape(-1, n_classes).double().tolist(), n_classes
    return rows, t.reshape(-1).tolist(), n_classes


def _log_softmax_row(row: list[float]) -> list[float]:
    m = max(row)
    log_s = math.log(sum(math.exp(v - m) for v in row))
    return [(v - m) - log_s for v in row]


def _target_row(target, n_classes: int, w: list[float], ignore_index: int,
                eps: float) -> list[float]:
    """t_c: the weighted target distribution of one row (all zeros when ignored)."""
    if isinstance(target, list):  # class probabilities
        return [w[c] * ((1 - eps) * target[c] + eps / n_classes) for c in range(n_classes)]
    if target == ignore_index:
        return [0.0] * n_classes
    return [(1 - eps) * w[c] * (c == target) + eps / n_classes * w[c] for c in range(n_classes)]


def _naive_parts(input, target, weight, ignore_index, label_smoothing):
    """Per-row log-probabilities, weighted targets t, ignored flags, the "mean" denominator."""
    rows, targets, n_classes = _rows(input, target)
    w = [1.0] * n_classes if weight is None else weight.double().tolist()
    logps = [_log_softmax_row(row) for row in rows]
    ts = [_target_row(y, n_classes, w, ignore_index, label_smoothing) for y in targets]
    if target.is_floating_point():
        denom = float(len(rows))  # N * d1 * ... * dk rows, not the weights
    else:
        denom = sum(w[y] for y in targets if y != ignore_index)
    ignored = [not isinstance(y, list) and y == ignore_index for y in targets]
    return logps, ts, ignored, denom


def cross_entropy_naive(input: Float[Tensor, "b c *k"], target: Tensor,
                        weight: Tensor | None = None, ignore_index: int = -100,
                        reduction: str = "mean",
                        label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy, loops over rows in Python floats; PyTorch's signature and semantics.

    >>> x = torch.tensor([[0.0, math.log(3.0), 0.0]])  # p = (1/5, 3/5, 1/5)
    >>> round(cross_entropy_naive(x, torch.tensor([1])).item(), 6)  # -log(3/5)
    0.510826
    """
    check_cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing)
    logps, ts, _, denom = _naive_parts(input, target, weight, ignore_index, label_smoothing)
    losses = [-sum(t_c * lp_c for t_c, lp_c in zip(t, lp)) for t, lp in zip(ts, logps)]
    losses = [x + 0.0 for x in losses]  # -0.0 + 0.0 = +0.0 for the ignored rows
    if reduction == "none":
        shape = _loss_shape(input)
        return torch.tensor(losses, dtype=input.dtype, device=input.device).reshape(shape)
    total = math.fsum(losses) if reduction == "sum" else ieee_div(math.fsum(losses), denom)
    return torch.tensor(total, dtype=input.dtype, device=input.device)


def cross_entropy_grad_naive(input: Float[Tensor, "b c *k"], target: Tensor,
                             weight: Tensor | None = None, ignore_index: int = -100,
                             reduction: str = "mean", label_smoothing: float = 0.0,
                             grad_output: Tensor | None = None) -> Float[Tensor, "b c *k"]:
    """d loss / d input by loops: row n gets ((sum_c t_c) p_j - t_j) * g_n (/ denom for "mean")."""
    check_cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing)
    g = check_grad_output(grad_output, input, reduction, _loss_shape(input))
    logps, ts, ignored, denom = _naive_parts(input, target, weight, ignore_index, label_smoothing)
    g_rows = g.double().reshape(-1).tolist() if reduction == "none" else [g.item()] * len(logps)
    grads = []
    for lp, t, skip, g_n in zip(logps, ts, ignored, g_rows):
        if skip:  # an ignored row: exactly zero, even when the mean divides by zero
            grads.append([0.0] * len(lp))
            continue
        scale = ieee_div(g_n, denom) if reduction == "mean" else g_n
        coef = sum(t)
        grads.append([(coef * math.exp(lp_j) - t_j) * scale for lp_j, t_j in zip(lp, t)])
    x = input.unsqueeze(0) if input.ndim == 1 else input
    moved = x.movedim(1, -1).shape
    out = torch.tensor(grads, dtype=input.dtype, device=input.device).reshape(moved).movedim(-1, 1)
    return out.reshape(input.shape).contiguous()


def _loss_shape(input: Tensor) -> tuple[int, ...]:
    return () if input.ndim == 1 else (input.shape[0], *input.shape[2:])


# ---------------------------------------------------------------------------------------------
# fast: vectorised torch ops; a custom autograd.Function whose backward is the hand-derived one


def _index_parts(target: Tensor, weight: Tensor | None, ignore_index: int, dtype: torch.dtype):
    counted = target != ignore_index
    safe = torch.where(counted, target, 0).long()  # any valid class for the ignored entries
    w_y = counted.to(dtype) if weight is None else torch.where(counted, weight[safe], 0)
    return counted, safe, w_y


def _weight_view(weight: Tensor | None, ndim: int) -> Tensor | float:
    return 1.0 if weight is None else weight.view(1, -1, *([1] * (ndim - 2)))


def _forward(input: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int,
             reduction: str, eps: float) -> tuple[Tensor, Tensor]:
    """(loss, log_softmax(input)) by differentiable torch ops; the input has a batch axis."""
    n_classes = input.shape[1]
    logp = torch.log_softmax(input, dim=1)
    w = _weight_view(weight, input.ndim)
    if target.is_floating_point():
        q = target * (1 - eps) + eps / n_classes if eps > 0 else target
        loss = -(logp * (q * w)).sum(1)
        denom: Tensor | float = float(loss.numel())
    else:
        counted, safe, w_y = _index_parts(target, weight, ignore_index, input.dtype)
        loss = w_y * -logp.gather(1, safe.unsqueeze(1)).squeeze(1)
        if eps > 0:
            smooth = torch.where(counted, -(logp * w).sum(1), 0)
            loss = (1 - eps) * loss + eps / n_classes * smooth
        denom = w_y.sum()
    if reduction == "none":
        return loss, logp
    return (loss.sum() if reduction == "sum" else loss.sum() / denom), logp


def _grad(logp: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int,
          reduction: str, eps: float, g: Tensor) -> Tensor:
    """Hand-derived d loss / d input from the saved log-probabilities (batch axis present)."""
    n_classes = logp.shape[1]
    w = _weight_view(weight, logp.ndim)
    grad = logp.exp()
    if target.is_floating_point():
        wq = (target * (1 - eps) + eps / n_classes) * w if eps > 0 else target * w
        scale = g / (logp.numel() // n_classes) if reduction == "mean" else g
        scale = scale.expand(logp.shape[:1] + logp.shape[2:]).unsqueeze(1)
        return grad.mul_(wq.sum(1, keepdim=True) * scale).sub_(wq * scale)
    counted, safe, w_y = _index_parts(target, weight, ignore_index, logp.dtype)
    scale = g / w_y.sum() if reduction == "mean" else g
    scale = torch.where(counted, scale, 0)  # ignored: exactly zero, even under 0 / 0
    total_w = n_classes if weight is None else weight.sum()
    coef = (1 - eps) * w_y + eps / n_classes * total_w
    grad.mul_((coef * scale).unsqueeze(1))
    grad.scatter_add_(1, safe.unsqueeze(1), (-(1 - eps) * w_y * scale).unsqueeze(1))
    if eps > 0:
        grad.sub_(eps / n_classes * w * scale.unsqueeze(1))
    return grad


class _CrossEntropy(torch.autograd.Function):
    """Forward by torch ops; backward by :func:`_grad` (what a fused kernel does)."""

    @staticmethod
    def forward(ctx, input, target, weight, ignore_index, reduction, eps):
        loss, logp = _forward(input, target, weight, ignore_index, reduction, eps)
        ctx.save_for_backward(logp, target, weight)
        ctx.hyper = (ignore_index, reduction, eps)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        logp, target, weight = ctx.saved_tensors
        ignore_index, reduction, eps = ctx.hyper
        grad = _grad(logp, target, weight, ignore_index, reduction, eps, grad_output)
        return grad, None, None, None, None, None


def _batched(input: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    return (input.unsqueeze(0), target.unsqueeze(0)) if input.ndim == 1 else (input, target)


def cross_entropy(input: Float[Tensor, "b c *k"], target: Tensor, weight: Tensor | None = None,
                  ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy, vectorised; same signature, values and gradients as ``F.cross_entropy``.

    The gradient w.r.t. ``input`` is :func:`cross_entropy_grad`'s (a custom autograd Function,
    first order only). When ``target`` or ``weight`` requires grad, autograd runs through torch
    ops instead.

    >>> x = torch.tensor([[0.0, math.log(3.0), 0.0]])
    >>> round(cross_entropy(x, torch.tensor([1])).item(), 6)
    0.510826
    """
    check_cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing)
    x, t = _batched(input, target)
    eps = float(label_smoothing)
    if t.requires_grad or (weight is not None and weight.requires_grad):
        loss = _forward(x, t, weight, ignore_index, reduction, eps)[0]
    else:
        loss = _CrossEntropy.apply(x, t, weight, ignore_index, reduction, eps)
    return loss.squeeze(0) if input.ndim == 1 and reduction == "none" else loss


def cross_entropy_grad(input: Float[Tensor, "b c *k"], target: Tensor, weight: Tensor | None = None,
                       ignore_index: int = -100, reduction: str = "mean",
                       label_smoothing: float = 0.0,
                       grad_output: Tensor | None = None) -> Float[Tensor, "b c *k"]:
    """d loss / d input, hand-derived: ((sum_c t_c) softmax(x) - t) * grad_output (/ denom).

    ``grad_output`` has the loss's shape (a scalar for "mean" and "sum"); None means ones.

    >>> x = torch.tensor([[0.0, math.log(3.0), 0.0]])
    >>> cross_entropy_grad(x, torch.tensor([1]))  # softmax - one_hot
    tensor([[ 0.2000, -0.4000,  0.2000]])
    """
    check_cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing)
    g = check_grad_output(grad_output, input, reduction, _loss_shape(input))
    x, t = _batched(input.detach(), target.detach())
    g = g.unsqueeze(0) if input.ndim == 1 and reduction == "none" else g
    w = None if weight is None else weight.detach()
    grad = _grad(torch.log_softmax(x, dim=1), t, w, ignore_index, reduction,
                 float(label_smoothing), g)
    return grad.reshape(input.shape)
