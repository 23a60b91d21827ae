"""Planted bugs in fused linear cross-entropy, each in a plausible user kernel with the signature
of ``F.linear_cross_entropy(input, linear_weight, target, *, linear_bias, weight, reduction,
ignore_index, label_smoothing)``.

    z = input W^T + b,   loss = cross_entropy(z, target, ...)

Correct versions come first (the unfused composition; one chunked over the vocabulary with an
online log-sum-exp, as fused kernels are), then the mutants, each ONE bug away from one of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def linear_cross_entropy(input, linear_weight, target, *, linear_bias=None, weight=None,
                         reduction="mean", ignore_index=-100, label_smoothing=0.0):
    """The unfused composition in float32 (correct)."""
    logits = F.linear(input.float(), linear_weight.float(),
                      None if linear_bias is None else linear_bias.float())
    loss = F.cross_entropy(logits, target, weight=None if weight is None else weight.float(),
                           reduction=reduction, ignore_index=ignore_index,
                           label_smoothing=label_smoothing)
    return loss.to(input.dtype)


def _chunked_lse(logits, chunk, rescale=True):
    """The online log-sum-exp over vocabulary chunks (``rescale=False``: the running sum is not
    rescaled when the running maximum grows)."""
    m = torch.full(logits.shape[:-1], float("-inf"), dtype=logits.dtype)
    s = torch.zeros(logits.shape[:-1], dtype=logits.dtype)
    for start in range(0, logits.shape[-1], chunk):
        block = logits[..., start:start + chunk]
        new = torch.maximum(m, block.amax(-1))
        s = (s * torch.exp(m - new) if rescale else s) + torch.exp(
            block - new[..., None]).sum(-1)
        m = new
    return m + torch.log(s)


def _loss_from_lse(logits, lse, target, weight, reduction, ignore_index, label_smoothing,
                   count_ignored=False):
    v = logits.shape[-1]
    keep = target != ignore_index
    safe = torch.where(keep, target, torch.zeros_like(target))
    w = torch.ones(v, dtype=logits.dtype) if weight is None else weight.to(logits.dtype)
    wy = w[safe] * keep
    nll = lse - logits.gather(-1, safe[:, None])[:, 0]
    smooth = (w * (lse[:, None] - logits)).sum(-1) / v * keep
    per_row = (1 - label_smoothing) * wy * nll + label_smoothing * smooth
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return per_row.sum()
    denom = (w[safe] if count_ignored else wy).sum()
    return per_row.sum() / denom


def linear_cross_entropy_chunked(input, linear_weight, target, *, linear_bias=None,
                                 weight=None, reduction="mean", ignore_index=-100,
                                 label_smoothing=0.0, _chunk=256, _rescale=True, _pad=None,
                                 _count_ignored=False):
    """Chunked over the vocabulary with an online log-sum-exp, by autograd (correct)."""
    logits = F.linear(input.float(), linear_weight.float(),
                      None if linear_bias is None else linear_bias.float())
    lse_logits = logits
    if _pad:  # slots up to a multiple of _pad, logits 0 (zero weight rows)
        extra = -logits.shape[-1] % _pad
        lse_logits = torch.cat((logits, logits.new_zeros(logits.shape[0], extra)), dim=-1)
    lse = _chunked_lse(lse_logits, _chunk, _rescale)
    return _loss_from_lse(logits, lse, target, weight, reduction, ignore_index,
                          label_smoothing, _count_ignored).to(input.dtype)


def lce_padded_vocab_slots_in_the_lse(input, linear_weight, target, **kw):
    """BUG: the vocabulary padded to a multiple of 128 with zero rows of the classifier, and the
    padded slots' logits (0) left in the log-sum-exp."""
    return linear_cross_entropy_chunked(input, linear_weight, target, **kw, _pad=128)


def lce_mean_counts_ignored_targets(input, linear_weight, target, **kw):
    """BUG: the mean divided by the weights of every row, ignored ones included."""
    return linear_cross_entropy_chunked(input, linear_weight, target, **kw,
                                        _count_ignored=True)


def lce_chunks_of_256_not_rescaled(input, linear_weight, target, **kw):
    """BUG: the running sum of exponentials not rescaled when a later chunk of 256 classes
    raises the maximum (right within one chunk)."""
    return linear_cross_entropy_chunked(input, linear_weight, target, **kw, _rescale=False)


class _OneUpstream(torch.autograd.Function):
    @staticmethod
    def forward(ctx, per_row):
        return per_row.clone()

    @staticmethod
    def backward(ctx, g):
        return g.mean().expand_as(g)  # BUG: one upstream value for every row


def lce_none_ignores_the_per_row_upstream_grad(input, linear_weight, target, *,
                                               reduction="mean", **kw):
    """BUG: under ``reduction='none'`` the backward uses one upstream value (the mean of the
    rows') for every row, as if the loss had been reduced."""
    loss = linear_cross_entropy(input, linear_weight, target, reduction=reduction, **kw)
    return _OneUpstream.apply(loss) if reduction == "none" else loss


CORRECT = [linear_cross_entropy, linear_cross_entropy_chunked]
