"""Fused linear cross-entropy: the loss of ``cross_entropy(input @ W^T + b, target)`` without the
logits, with ``torch.nn.functional.linear_cross_entropy``'s signature (class-index targets).

The equation (see `refllm.ops.cross_entropy` for the loss and its options), per row n of the
hidden states h_n (width d), a classifier W (V, d) and bias b (V):

    z_{n,c} = h_n . W_c + b_c,       lse_n = log sum_c exp z_{n,c}
    l_n = (1 - eps) w[y_n] (lse_n - z_{n,y_n}) + (eps / V) sum_c w_c (lse_n - z_{n,c})

and its gradient with respect to the logits, with p = softmax(z) and S = sum_c w_c,

    dl_n / dz_{n,c} = p_{n,c} ((1 - eps) w[y_n] + (eps / V) S) - (1 - eps) w[y_n] [c = y_n]
                      - (eps / V) w_c,

from which dh_n = sum_c (dl_n/dz_{n,c}) W_c, dW_c = sum_n (dl_n/dz_{n,c}) h_n, db_c likewise.

The fast version never holds the (rows x V) logits: it visits ``chunk_rows`` rows at a time and,
within them, ``chunk_vocab`` classes at a time, keeping a running maximum and sum of exponentials
(the online log-sum-exp of Milakov & Gimelshein 2018), and its backward recomputes each chunk's
logits from the saved log-sum-exps (Wijmans et al. 2024, "Cut Your Losses in Large-Vocabulary
Language Models", computes it the same way in a kernel). Peak extra memory is
O(chunk_rows x chunk_vocab), not O(rows x V): beside the gradients of h and W, at most two
(chunk_rows x chunk_vocab) blocks at once (the probabilities, computed in place over the logits,
and their gradient; three with ``softcap``, whose tanh is kept for the backward) and one
(chunk_vocab x d) product. Half-precision inputs are computed in float32 and
the loss is returned in the input's dtype, as ``F.cross_entropy`` does.

The naive version forms the logits by explicit float64 loops and applies
`refllm.ops.cross_entropy.cross_entropy_naive`.

Extensions (refllm's, not in PyTorch), both off by default (the default result is bit-identical
to the loss without them):

* logit soft-capping, ``softcap=c`` (Gemma Team 2024, "Gemma 2", §2: logits = c tanh(logits / c)):
  every formula above and below applies to s_{n,c} = c tanh(z_{n,c} / c) in place of z_{n,c},
  before the log-sum-exp (the label-smoothing term too), and ds/dz = 1 - (s / c)^2 = 1 - tanh^2.
* z-loss, ``z_loss=a`` (Chowdhery et al. 2022, "PaLM", §5: an auxiliary a log^2 Z that keeps the
  softmax normaliser Z near 1): row n gains a w[y_n] lse_n^2, with w[y_n] the class weight of its
  target (1 without ``weight``; the smoothing term plays no part) and 0 where y_n == ignore_index;
  it is added to l_n before the reduction, so "mean" divides it by the main loss's sum of w[y_n]
  over the counted rows (without weights: the mean of a lse_n^2 over the rows not ignored). lse_n
  is that of the soft-capped logits when both are on. Its gradient adds 2 a w[y_n] lse_n p_{n,c}
  to dl_n / dz_{n,c}. ``return_z_loss=True`` returns (loss, z term), the loss including the z term
  and the z term reduced as the loss is.

Deviations from PyTorch: targets are class indices (class-probability targets are refused);
``linear_bias`` is (V,) only; no gradient flows to the class ``weight``; all tensors share one dtype
and device; ``ignore_index`` defaults to -100 (PyTorch's None maps to -100 too). Extension: the
input may have any leading shape (..., d) with a target of shape (...) (PyTorch takes (N, d) or
(d), since its reference applies ``cross_entropy`` with classes on axis 1).
"""

from __future__ import annotations

import math
import numbers

import torch
from jaxtyping import Float, Int
from torch import Tensor
from torch.autograd.function import once_differentiable

from refllm._validation import (
    describe,
    require_bool,
    require_choice,
    require_float,
    require_int,
    require_real,
    require_same_device,
    require_same_dtype,
)
from refllm.ops.choices import REDUCTIONS


def _check(input: object, linear_weight: object, target: object, linear_bias: object,
           weight: object, reduction: object, ignore_index: object, label_smoothing: object,
           extensions: tuple[object, object, object],
           chunks: tuple[object, object] = (1, 1)) -> tuple[Tensor, Tensor, Tensor]:
    h = require_float("input", input)
    w = require_float("linear_weight", linear_weight)
    if h.ndim < 1 or w.ndim != 2 or w.shape[1] != h.shape[-1]:
        raise ValueError(f"input must be (..., d) and linear_weight (V, d) with the same d, got "
                         f"input {describe(h)} and linear_weight {describe(w)}")
    if not isinstance(target, Tensor) or target.is_floating_point() or target.is_complex():
        raise TypeError(f"target must be an integer tensor of class indices (class-probability "
                        f"targets are not supported here), got {describe(target)}")
    if target.shape != h.shape[:-1]:
        raise ValueError(f"target must have the input's leading shape {tuple(h.shape[:-1])}, got "
                         f"{describe(target)}")
    tensors = [("input", h), ("linear_weight", w)]
    for name, t, shape in (("linear_bias", linear_bias, (w.shape[0],)),
                           ("weight", weight, (w.shape[0],))):
        if t is not None:
            t = require_float(name, t)
            if tuple(t.shape) != shape:
                raise ValueError(f"{name} must have shape {shape} (one per class), got "
                                 f"{describe(t)}")
            tensors.append((name, t))
    names, ts = zip(*tensors)
    require_same_dtype(names, ts)
    require_same_device(names + ("target",), ts + (target,))
    require_choice("reduction", reduction, REDUCTIONS)
    require_int("ignore_index", ignore_index)
    require_real("label_smoothing", label_smoothing, low=0.0, high=1.0)
    _check_extensions(*extensions)
    for name, value in zip(("chunk_rows", "chunk_vocab"), chunks):
        require_int(name, value, low=1)
    vocab = w.shape[0]
    valid = target[target != ignore_index]
    if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= vocab):
        bad = sorted({int(v) for v in valid.reshape(-1) if not 0 <= v < vocab})[:5]
        raise ValueError(f"target holds class indices outside [0, {vocab}) (V = linear_weight's "
                         f"rows) other than ignore_index={ignore_index}: {bad}")
    return h, w, target


def _check_extensions(z_loss: object, softcap: object, return_z_loss: object) -> None:
    require_real("z_loss", z_loss, low=0.0)
    if softcap is not None:
        if isinstance(softcap, bool) or not isinstance(softcap, numbers.Real):
            raise TypeError(f"softcap must be None (no capping) or a positive real number, got "
                            f"{describe(softcap)}")
        if not (math.isfinite(softcap) and float(softcap) > 0):
            raise ValueError(f"softcap must be None (no capping) or a positive finite number c "
                             f"(the logits become c * tanh(logits / c)), got {softcap!r}")
    require_bool("return_z_loss", return_z_loss)


def _reduce(per_row: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int,
            reduction: str, shape: tuple[int, ...]) -> Tensor:
    if reduction == "none":
        return per_row.reshape(shape)
    if reduction == "sum":
        return per_row.sum()
    kept = target != ignore_index
    denominator = ((weight[target.clamp(0, len(weight) - 1)] * kept).sum() if weight is not None
                   else kept.sum())
    # all ignored: the loss is 0 / 0 = nan and its gradient 0, both as PyTorch's (dividing by a
    # zero denominator through autograd would make the gradient 0 * inf = nan)
    empty = denominator == 0
    mean = per_row.sum() / torch.where(empty, torch.ones_like(denominator), denominator)
    return torch.where(empty, torch.full_like(mean, math.nan), mean)


def _z_terms_naive(logits: list[list[float]], target: list[int], weight: list[float] | None,
                   ignore_index: int, z_loss: float) -> list[float]:
    """Per row, z_loss * w[y_n] * lse_n^2 (0 where ignored), lse_n in Python floats."""
    terms = []
    for row, y in zip(logits, target):
        m = max(row)
        lse = m + math.log(math.fsum(math.exp(v - m) for v in row))
        terms.append(0.0 if y == ignore_index else
                     z_loss * (1.0 if weight is None else weight[y]) * lse * lse)
    return terms


def linear_cross_entropy_naive(input: Float[Tensor, "*batch d"],
                               linear_weight: Float[Tensor, "V d"],
                               target: Int[Tensor, "*batch"], *,
                               linear_bias: Float[Tensor, " V"] | None = None,
                               weight: Float[Tensor, " V"] | None = None, reduction: str = "mean",
                               ignore_index: int = -100, label_smoothing: float = 0.0,
                               z_loss: float = 0.0, softcap: float | None = None,
                               return_z_loss: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """The logits by explicit loops in Python floats (soft-capped there), then
    `cross_entropy_naive`, plus the z term by loops; see the module for the options."""
    from refllm.ops.cross_entropy import cross_entropy_naive

    h, w, t = _check(input, linear_weight, target, linear_bias, weight, reduction, ignore_index,
                     label_smoothing, (z_loss, softcap, return_z_loss))
    rows = h.detach().double().reshape(-1, h.shape[-1]).tolist()
    wl = w.detach().double().tolist()
    bl = [0.0] * w.shape[0] if linear_bias is None else linear_bias.detach().double().tolist()
    logits = [[math.fsum(a * b for a, b in zip(row, wc)) + bc for wc, bc in zip(wl, bl)]
              for row in rows]
    if softcap is not None:
        logits = [[softcap * math.tanh(v / softcap) for v in row] for row in logits]
    z = torch.tensor(logits, dtype=torch.float64).reshape(len(rows), w.shape[0])
    cw = None if weight is None else weight.detach().double()
    loss = cross_entropy_naive(z, t.reshape(-1), cw, ignore_index=ignore_index,
                               reduction=reduction, label_smoothing=label_smoothing)
    terms = torch.tensor(_z_terms_naive(logits, t.reshape(-1).tolist(),
                                        None if cw is None else cw.tolist(), ignore_index,
                                        float(z_loss)), dtype=torch.float64)
    z_term = _reduce(terms, t.reshape(-1), cw, ignore_index, reduction, tuple(t.shape))
    if z_loss:
        loss = loss + z_term.reshape(loss.shape)
    loss = (loss.reshape(t.shape) if reduction == "none" else loss).to(h.dtype)
    return (loss, z_term.to(h.dtype)) if return_z_loss else loss


def _logits(hr: Tensor, wc: Tensor, b: Tensor | None, cols: slice,
            softcap: float | None) -> tuple[Tensor, Tensor | None]:
    """One chunk's logits z = h W^T + b, or c tanh(z / c) with tanh(z / c) for the backward."""
    z = hr @ wc.T
    if b is not None:
        z = z + b[cols].to(z.dtype)
    if softcap is None:
        return z, None
    tanh = z.div_(softcap).tanh_()  # in place: z is not needed again
    return tanh * softcap, tanh


class _Chunked(torch.autograd.Function):
    """Per-row losses l_n and log-sum-exps lse_n (float32 or float64) from (h, W, b), chunk by
    chunk; see the module. lse is an output so that a z term built on it gets its gradient."""

    @staticmethod
    def forward(ctx, h, w, b, target, cw, ignore_index, eps, softcap, chunk_rows, chunk_vocab):  # type: ignore[override]
        n, vocab = h.shape[0], w.shape[0]
        cdt = torch.float64 if h.dtype == torch.float64 else torch.float32
        kept = target != ignore_index
        y = target.clamp(0, vocab - 1)
        wy = (cw[y] if cw is not None else torch.ones(n, dtype=cdt, device=h.device)) * kept
        s_w = float(cw.sum()) if cw is not None else float(vocab)
        lse = torch.empty(n, dtype=cdt, device=h.device)
        loss = torch.empty(n, dtype=cdt, device=h.device)
        for r0 in range(0, n, chunk_rows):
            hr = h[r0:r0 + chunk_rows].to(cdt)
            m = torch.full((hr.shape[0],), -math.inf, dtype=cdt, device=h.device)
            s = torch.zeros_like(m)
            zy = torch.zeros_like(m)
            wz = torch.zeros_like(m)  # sum_c w_c z_c, for the smoothing term
            yr = y[r0:r0 + chunk_rows]
            for c0 in range(0, vocab, chunk_vocab):
                cols = slice(c0, c0 + chunk_vocab)
                z = _logits(hr, w[cols].to(cdt), b, cols, softcap)[0]
                m_new = torch.maximum(m, z.max(dim=1).values)
                inside = (yr >= c0) & (yr < c0 + z.shape[1])
                zy = zy + torch.where(inside, z.gather(1, (yr - c0).clamp(0, z.shape[1] - 1)
                                                       [:, None])[:, 0], 0.0)
                wz = wz + (z @ cw[cols].to(cdt) if cw is not None else z.sum(dim=1))
                s = s * torch.exp(m - m_new) + z.sub_(m_new[:, None]).exp_().sum(dim=1)
                m = m_new
                del z  # before the next chunk's: at most two chunk-sized blocks at once
            lse_r = m + torch.log(s)
            lse[r0:r0 + chunk_rows] = lse_r
            rw = wy[r0:r0 + chunk_rows].to(cdt)
            smooth = (s_w * lse_r - wz) * (eps / vocab)
            loss[r0:r0 + chunk_rows] = torch.where(kept[r0:r0 + chunk_rows],
                                                   (1 - eps) * rw * (lse_r - zy) + smooth, 0.0)
        ctx.save_for_backward(h, w, b, y, kept, wy, cw, lse)
        ctx.options = (eps, s_w, softcap, chunk_rows, chunk_vocab, cdt)
        ctx.set_materialize_grads(False)  # no z term: lse's gradient stays None, skipped below
        return loss, lse

    @staticmethod
    @once_differentiable
    def backward(ctx, grad, grad_lse):  # type: ignore[override]
        h, w, b, y, kept, wy, cw, lse = ctx.saved_tensors
        eps, s_w, softcap, chunk_rows, chunk_vocab, cdt = ctx.options
        vocab = w.shape[0]
        dh = torch.zeros(h.shape, dtype=cdt, device=h.device)
        dw = torch.zeros(w.shape, dtype=cdt, device=w.device)
        db = torch.zeros(vocab, dtype=cdt, device=w.device) if b is not None else None
        g = (torch.zeros_like(lse) if grad is None else grad.to(cdt)) * kept
        coef = (1 - eps) * wy.to(cdt) + (eps / vocab) * s_w  # multiplies p
        for r0 in range(0, h.shape[0], chunk_rows):
            rows = slice(r0, r0 + chunk_rows)
            hr, yr, gr = h[rows].to(cdt), y[rows], g[rows]
            for c0 in range(0, vocab, chunk_vocab):
                cols = slice(c0, c0 + chunk_vocab)
                wc = w[cols].to(cdt)
                z, tanh = _logits(hr, wc, b, cols, softcap)
                p = z.sub_(lse[rows, None]).exp_()  # in place: two chunk-sized blocks, p and dz
                dz = p * coef[rows, None]
                inside = (yr >= c0) & (yr < c0 + z.shape[1])
                idx = (yr - c0).clamp(0, z.shape[1] - 1)[:, None]
                dz.scatter_add_(1, idx, -((1 - eps) * wy[rows].to(cdt) * inside)[:, None])
                if eps:
                    dz.sub_((eps / vocab) * (cw[cols].to(cdt) if cw is not None else 1.0))
                dz.mul_(gr[:, None])
                if grad_lse is not None:  # d lse_n / d z_{n,c} = p_{n,c}
                    dz.addcmul_(p, grad_lse[rows, None].to(cdt))  # no third block
                if tanh is not None:  # through the cap: ds/dz = 1 - tanh^2
                    dz.mul_(tanh.square_().neg_().add_(1))
                dh[rows] += dz @ wc
                dw[cols] += dz.T @ hr
                if db is not None:
                    db[cols] += dz.sum(dim=0)
                del z, p, dz, tanh  # before the next chunk's
        return (dh.to(h.dtype), dw.to(w.dtype), None if db is None else db.to(b.dtype),
                None, None, None, None, None, None, None)


def linear_cross_entropy(input: Float[Tensor, "*batch d"], linear_weight: Float[Tensor, "V d"],
                         target: Int[Tensor, "*batch"], *,
                         linear_bias: Float[Tensor, " V"] | None = None,
                         weight: Float[Tensor, " V"] | None = None, reduction: str = "mean",
                         ignore_index: int = -100, label_smoothing: float = 0.0,
                         chunk_rows: int = 1024, chunk_vocab: int = 8192, z_loss: float = 0.0,
                         softcap: float | None = None,
                         return_z_loss: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Cross-entropy of ``input @ linear_weight.T + linear_bias``, chunked (see the module).

    refllm's extensions: ``softcap=c`` soft-caps the logits to c tanh(z / c) before the
    log-sum-exp; ``z_loss=a`` adds a w[y_n] lse_n^2 to each counted row's loss (w[y_n] the class
    weight of its target, 1 without ``weight``; 0 for rows whose target is ``ignore_index``), before
    the same reduction as the loss ("mean" divides by the same sum of w[y_n]);
    ``return_z_loss=True`` returns ``(loss, z_term)``, the loss including the z term.

    >>> h = torch.eye(2, dtype=torch.float64)
    >>> w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    >>> round(float(linear_cross_entropy(h, w, torch.tensor([0, 1]))), 12)  # log(e + 2) - 1
    0.551444713932
    >>> _, z = linear_cross_entropy(h, w, torch.tensor([0, 1]), z_loss=1e-4, return_z_loss=True)
    >>> round(float(z), 12)  # 1e-4 * log(e + 2)^2
    0.00024069807
    """
    h, w, t = _check(input, linear_weight, target, linear_bias, weight, reduction, ignore_index,
                     label_smoothing, (z_loss, softcap, return_z_loss), (chunk_rows, chunk_vocab))
    flat_h, flat_t = h.reshape(-1, h.shape[-1]), t.reshape(-1)
    per_row, lse = _Chunked.apply(flat_h, w, linear_bias, flat_t, weight, ignore_index,
                                  float(label_smoothing), None if softcap is None else
                                  float(softcap), chunk_rows, chunk_vocab)
    cw = None if weight is None else weight.to(per_row.dtype)
    if not (z_loss or return_z_loss):
        return _reduce(per_row, flat_t, cw, ignore_index, reduction, tuple(t.shape)).to(h.dtype)
    kept = flat_t != ignore_index
    wy = cw[flat_t.clamp(0, w.shape[0] - 1)] * kept if cw is not None else kept.to(lse.dtype)
    terms = float(z_loss) * wy * lse.square()
    z_term = _reduce(terms, flat_t, cw, ignore_index, reduction, tuple(t.shape))
    total = per_row + terms if z_loss else per_row
    loss = _reduce(total, flat_t, cw, ignore_index, reduction, tuple(t.shape))
    return (loss.to(h.dtype), z_term.to(h.dtype)) if return_z_loss else loss.to(h.dtype)


__all__ = ["linear_cross_entropy", "linear_cross_entropy_naive"]
