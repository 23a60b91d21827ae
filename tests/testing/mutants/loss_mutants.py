"""Planted bugs in cross-entropy and mean squared error, each in a plausible user loss.

    cross-entropy  l_n = -sum_c t_{n,c} log softmax(x_n)_c,  dl_n/dx_n = (sum_c t_{n,c}) p_n - t_n
    MSE            L = (1 / N) sum_i (x_i - y_i)^2

with t the weighted, smoothed target distribution (see refllm/ops/cross_entropy.py for PyTorch's
full form). Every function has the signature of ``F.cross_entropy`` / ``F.mse_loss``. Correct
versions come first (autograd ones and ones with a hand-written backward, as fused kernels have),
then the mutants, each ONE bug away from one of them.
"""

from __future__ import annotations

import torch

# ----------------------------------------------------------------------------- cross-entropy


def _targets(input, target, weight, ignore_index, label_smoothing):
    """(t, denom): the weighted target distribution of each row (b, c, *k) and the "mean" divisor.

    Class indices: t = keep * ((1 - eps) w[y] onehot(y) + eps / C * w), divided by the sum of
    w[y] over kept targets. Probabilities q: t = w ((1 - eps) q + eps / C), divided by the row
    count.
    """
    c = input.size(1)
    shape = (1, c) + (1,) * (input.dim() - 2)
    w = torch.ones(c, dtype=input.dtype) if weight is None else weight
    w_c = w.reshape(shape)
    eps = label_smoothing
    if target.is_floating_point():
        t = w_c * ((1 - eps) * target + eps / c)
        return t, torch.tensor(float(target.numel() // c), dtype=input.dtype)
    keep = target != ignore_index
    safe = torch.where(keep, target, torch.zeros_like(target))
    onehot = torch.nn.functional.one_hot(safe, c).movedim(-1, 1).to(input.dtype)
    w_y = w[safe] * keep
    t = ((1 - eps) * w_y.unsqueeze(1) * onehot + eps / c * w_c) * keep.unsqueeze(1)
    return t, w_y.sum()


def _reduce(loss, denom, reduction):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    mean = loss.sum() / torch.where(denom > 0, denom, torch.ones_like(denom))
    return mean if denom > 0 else mean + float("nan")  # all ignored: 0 / 0, as PyTorch


def _batched(input, target):
    if input.dim() == 1:  # unbatched (c): a batch of one
        return input.unsqueeze(0), target.unsqueeze(0), True
    return input, target, False


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """A vectorised cross-entropy through autograd (correct)."""
    x, y, unbatched = _batched(input, target)
    t, denom = _targets(x, y, weight, ignore_index, label_smoothing)
    loss = -(t * torch.log_softmax(x, dim=1)).sum(1)
    loss = loss.squeeze(0) if unbatched else loss
    return _reduce(loss, denom, reduction)


class _FusedCE(torch.autograd.Function):
    """Forward and a hand-written backward, dl_n/dx_n = (sum_c t_{n,c}) p_n - t_n."""

    @staticmethod
    def forward(ctx, input, target, weight, ignore_index, reduction, label_smoothing):
        x, y, unbatched = _batched(input, target)
        t, denom = _targets(x, y, weight, ignore_index, label_smoothing)
        logp = torch.log_softmax(x, dim=1)
        ctx.save_for_backward(logp.exp(), t, denom)
        ctx.reduction, ctx.unbatched = reduction, unbatched
        loss = -(t * logp).sum(1)
        return _reduce(loss.squeeze(0) if unbatched else loss, denom, reduction)

    @staticmethod
    def backward(ctx, grad_loss):
        p, t, denom = ctx.saved_tensors
        grad = t.sum(1, keepdim=True) * p - t
        grad = _scale_grad(grad, grad_loss, denom, ctx.reduction, ctx.unbatched)
        return (grad.squeeze(0) if ctx.unbatched else grad), None, None, None, None, None


def _scale_grad(grad, grad_loss, denom, reduction, unbatched):
    if reduction == "none":
        g = grad_loss.unsqueeze(0) if unbatched else grad_loss
        return grad * g.unsqueeze(1)
    if reduction == "sum":
        return grad * grad_loss
    return grad * (grad_loss / denom if denom > 0 else torch.zeros_like(grad_loss))


def cross_entropy_fused(input, target, weight=None, ignore_index=-100, reduction="mean",
                        label_smoothing=0.0):
    """A cross-entropy with a hand-written backward (correct)."""
    return _FusedCE.apply(input, target, weight, ignore_index, reduction, label_smoothing)


def ce_weighted_mean_divides_by_count(input, target, weight=None, ignore_index=-100,
                                      reduction="mean", label_smoothing=0.0):
    # Modelled on pytorch/pytorch#40560 and #25571 (the weighted mean's divisor).
    x, y, unbatched = _batched(input, target)
    t, denom = _targets(x, y, weight, ignore_index, label_smoothing)
    if not y.is_floating_point():
        denom = (y != ignore_index).sum().to(x.dtype)  # BUG: count, not the sum of w[y]
    loss = -(t * torch.log_softmax(x, dim=1)).sum(1)
    return _reduce(loss.squeeze(0) if unbatched else loss, denom, reduction)


def ce_mean_counts_ignored_targets(input, target, weight=None, ignore_index=-100,
                                   reduction="mean", label_smoothing=0.0):
    # Modelled on allenai/OLMo#523 (mean reduction over padded tokens).
    x, y, unbatched = _batched(input, target)
    t, denom = _targets(x, y, weight, ignore_index, label_smoothing)
    if not y.is_floating_point():
        w = torch.ones(x.size(1), dtype=x.dtype) if weight is None else weight
        safe = torch.where(y == ignore_index, torch.zeros_like(y), y)
        denom = w[safe].sum()  # BUG: ignored targets still counted in the divisor
    loss = -(t * torch.log_softmax(x, dim=1)).sum(1)
    return _reduce(loss.squeeze(0) if unbatched else loss, denom, reduction)


def ce_smoothing_includes_ignored_targets(input, target, weight=None, ignore_index=-100,
                                          reduction="mean", label_smoothing=0.0):
    # Modelled on pytorch/pytorch#73205 (the uniform part counts ignored samples).
    x, y, unbatched = _batched(input, target)
    t, denom = _targets(x, y, weight, ignore_index, label_smoothing)
    if label_smoothing and not y.is_floating_point():
        c = x.size(1)
        w = torch.ones(c, dtype=x.dtype) if weight is None else weight
        ignored = (y == ignore_index).unsqueeze(1).to(x.dtype)
        t = t + ignored * label_smoothing / c * w.reshape((1, c) + (1,) * (x.dim() - 2))  # BUG
    loss = -(t * torch.log_softmax(x, dim=1)).sum(1)
    return _reduce(loss.squeeze(0) if unbatched else loss, denom, reduction)


def ce_smoothing_over_other_classes(input, target, weight=None, ignore_index=-100,
                                    reduction="mean", label_smoothing=0.0):
    # Modelled on awslabs/sockeye#203 and OpenNMT/OpenNMT#570 (eps / (C - 1) off the target).
    x, y, unbatched = _batched(input, target)
    c = x.size(1)
    eps = label_smoothing * c / (c - 1) if c > 1 else label_smoothing  # BUG: eps / (C - 1) ...
    t, denom = _targets(x, y, weight, ignore_index, eps)  # ... spread as if over C classes
    loss = -(t * torch.log_softmax(x, dim=1)).sum(1)
    return _reduce(loss.squeeze(0) if unbatched else loss, denom, reduction)


def ce_smoothing_ignores_class_weights(input, target, weight=None, ignore_index=-100,
                                       reduction="mean", label_smoothing=0.0):
    # Modelled on linkedin/Liger-Kernel#420 (class weights in the smoothing term).
    x, y, unbatched = _batched(input, target)
    logp = torch.log_softmax(x, dim=1)
    t, denom = _targets(x, y, weight, ignore_index, 0.0)
    t_eps, _ = _targets(x, y, None, ignore_index, label_smoothing)  # BUG: weight dropped ...
    t_one, _ = _targets(x, y, None, ignore_index, 0.0)
    t = (1 - label_smoothing) * t + (t_eps - (1 - label_smoothing) * t_one)  # ... in eps / C * w
    loss = -(t * logp).sum(1)
    return _reduce(loss.squeeze(0) if unbatched else loss, denom, reduction)


def ce_prob_targets_mean_by_weight_sum(input, target, weight=None, ignore_index=-100,
                                       reduction="mean", label_smoothing=0.0):
    # Modelled on pytorch/pytorch#40560 (which divisor: PyTorch uses N for soft targets).
    x, y, unbatched = _batched(input, target)
    t, denom = _targets(x, y, weight, ignore_index, label_smoothing)
    if y.is_floating_point() and weight is not None:
        denom = (weight.reshape((1, -1) + (1,) * (x.dim() - 2)) * y).sum()  # BUG
    loss = -(t * torch.log_softmax(x, dim=1)).sum(1)
    return _reduce(loss.squeeze(0) if unbatched else loss, denom, reduction)


def ce_without_max_subtraction(input, target, weight=None, ignore_index=-100, reduction="mean",
                               label_smoothing=0.0):
    # Modelled on pytorch/pytorch#12670 (numerical stability of a hand-written log-softmax).
    x, y, unbatched = _batched(input, target)
    t, denom = _targets(x, y, weight, ignore_index, label_smoothing)
    logp = x - x.exp().sum(1, keepdim=True).log()  # BUG: no max subtraction: exp overflows
    loss = -(t * logp).sum(1)
    return _reduce(loss.squeeze(0) if unbatched else loss, denom, reduction)


def ce_softmax_over_last_axis(input, target, weight=None, ignore_index=-100, reduction="mean",
                              label_smoothing=0.0):
    # Modelled on lucidrains/perceiver-pytorch#46 (softmax over the wrong dimension).
    x, y, unbatched = _batched(input, target)
    t, denom = _targets(x, y, weight, ignore_index, label_smoothing)
    loss = -(t * torch.log_softmax(x, dim=-1)).sum(1)  # BUG: classes are dim 1 for (b, c, d1)
    return _reduce(loss.squeeze(0) if unbatched else loss, denom, reduction)


def ce_reduction_none_returns_sum(input, target, weight=None, ignore_index=-100,
                                  reduction="mean", label_smoothing=0.0):
    # Modelled on linkedin/Liger-Kernel#435 (reduction="none" returned a scalar).
    x, y, unbatched = _batched(input, target)
    t, denom = _targets(x, y, weight, ignore_index, label_smoothing)
    loss = -(t * torch.log_softmax(x, dim=1)).sum(1)
    loss = loss.squeeze(0) if unbatched else loss
    if reduction == "mean":
        return _reduce(loss, denom, reduction)
    return loss.sum()  # BUG: "none" treated as "sum"


class _CEGradNotDividedFn(_FusedCE):
    @staticmethod
    def backward(ctx, grad_loss):
        p, t, denom = ctx.saved_tensors
        grad = t.sum(1, keepdim=True) * p - t
        if ctx.reduction == "none":
            g = grad_loss.unsqueeze(0) if ctx.unbatched else grad_loss
            grad = grad * g.unsqueeze(1)
        else:
            grad = grad * grad_loss  # BUG: "mean" must also divide by the weight sum
        return (grad.squeeze(0) if ctx.unbatched else grad), None, None, None, None, None


def ce_mean_grad_not_divided(input, target, weight=None, ignore_index=-100, reduction="mean",
                             label_smoothing=0.0):
    # Modelled on paiml/aprender#2182 (the reduction's 1/N in a hand-written CE backward).
    return _CEGradNotDividedFn.apply(input, target, weight, ignore_index, reduction,
                                     label_smoothing)


class _CEFirstUpstreamFn(_FusedCE):
    @staticmethod
    def backward(ctx, grad_loss):
        p, t, denom = ctx.saved_tensors
        grad = t.sum(1, keepdim=True) * p - t
        if ctx.reduction == "none":
            grad = grad * grad_loss.reshape(-1)[0]  # BUG: one upstream value for every row
        else:
            grad = _scale_grad(grad, grad_loss, denom, ctx.reduction, ctx.unbatched)
        return (grad.squeeze(0) if ctx.unbatched else grad), None, None, None, None, None


def ce_none_grad_reads_one_upstream(input, target, weight=None, ignore_index=-100,
                                    reduction="mean", label_smoothing=0.0):
    # Modelled on linkedin/Liger-Kernel#1298 (scalar load of a per-token grad_output).
    return _CEFirstUpstreamFn.apply(input, target, weight, ignore_index, reduction,
                                    label_smoothing)


# ----------------------------------------------------------------------------- MSE
def mse_loss(input, target, reduction="mean"):
    """Through autograd (correct)."""
    err = (input - target) ** 2
    return err if reduction == "none" else err.sum() if reduction == "sum" else err.mean()


class _MSEFn(torch.autograd.Function):
    """d L / d input = 2 (x - y) g / N (mean), d L / d target = -d L / d input."""

    @staticmethod
    def forward(ctx, input, target, reduction):
        diff = input - target
        ctx.save_for_backward(diff)
        ctx.reduction = reduction
        err = diff * diff
        return err if reduction == "none" else err.sum() if reduction == "sum" else err.mean()

    @staticmethod
    def backward(ctx, grad):
        (diff,) = ctx.saved_tensors
        scale = 1.0 / diff.numel() if ctx.reduction == "mean" else 1.0
        d_input = 2 * diff * grad * scale
        return d_input, -d_input, None


def mse_loss_fused(input, target, reduction="mean"):
    """With a hand-written backward (correct)."""
    return _MSEFn.apply(input, target, reduction)


def mse_mean_divides_by_batch(input, target, reduction="mean"):
    # Modelled on tensorflow/tensorflow#1358 (per-batch vs per-element averaging).
    err = (input - target) ** 2
    if reduction == "none":
        return err
    if reduction == "sum":
        return err.sum()
    return err.sum() / (input.size(0) if input.dim() else 1)  # BUG: numel, not the batch


class _MSEHalfGradFn(_MSEFn):
    @staticmethod
    def backward(ctx, grad):
        (diff,) = ctx.saved_tensors
        scale = 1.0 / diff.numel() if ctx.reduction == "mean" else 1.0
        d_input = diff * grad * scale  # BUG: the 2 of d(x^2)/dx is dropped
        return d_input, -d_input, None


def mse_grad_missing_factor_two(input, target, reduction="mean"):
    # Modelled on paiml/aprender#2182 (hand-derived loss gradients off by a constant factor).
    return _MSEHalfGradFn.apply(input, target, reduction)


class _MSETargetSignFn(_MSEFn):
    @staticmethod
    def backward(ctx, grad):
        (diff,) = ctx.saved_tensors
        scale = 1.0 / diff.numel() if ctx.reduction == "mean" else 1.0
        d_input = 2 * diff * grad * scale
        return d_input, d_input, None  # BUG: d/d target has the opposite sign


def mse_target_grad_wrong_sign(input, target, reduction="mean"):
    # Modelled on hardmaru/estool#35 (a sign convention lost in a hand-written gradient).
    return _MSETargetSignFn.apply(input, target, reduction)


CORRECT_CE = [cross_entropy, cross_entropy_fused]
def mse_expanded_square(input, target, reduction="mean"):
    # Modelled on losses computed as x^2 - 2xy + y^2 (a dot-product form, as for squared
    # distances through matrix products): exact in real arithmetic, but once input and target
    # share a large offset the squares cancel and the rounding error of x^2 is what is left.
    err = input * input - 2 * input * target + target * target  # BUG: (x - y)^2 was meant
    return err if reduction == "none" else err.sum() if reduction == "sum" else err.mean()


CORRECT_MSE = [mse_loss, mse_loss_fused]


# ----------------------------------------------------------------------------- the default call
class _CELanguageModelFn(_FusedCE):
    @staticmethod
    def backward(ctx, grad_loss):
        p, t, denom = ctx.saved_tensors
        # BUG: the mean's divisor is the number of logits (n * C), not of rows (n)
        grad = (p - t) * (grad_loss / p.numel())
        return grad, None, None, None, None, None


def ce_language_model_path_grad_over_logits(input, target, weight=None, ignore_index=-100,
                                            reduction="mean", label_smoothing=0.0):
    # A fused kernel for the language-model loss F.cross_entropy(logits (n, C), targets): mean,
    # no weight, no smoothing, the default ignore_index; other calls take the general backward.
    lm = (weight is None and label_smoothing == 0.0 and reduction == "mean"
          and ignore_index == -100 and input.dim() == 2 and not target.is_floating_point())
    fn = _CELanguageModelFn if lm else _FusedCE
    return fn.apply(input, target, weight, ignore_index, reduction, label_smoothing)


def mse_default_reduction_sum(input, target, reduction="sum"):
    # A wrong default: mse_loss(x, y) must be the mean; every explicit reduction is right.
    return mse_loss(input, target, reduction)
