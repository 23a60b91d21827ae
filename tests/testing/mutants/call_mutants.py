"""Planted bugs in how a kernel treats its call, not in its arithmetic.

Each is a bug class that reached users of real kernel libraries: a kernel that works in place on
the caller's tensors (scaling the query, writing the softmax into the logits) where the caller
does not track gradients; an inference path (inputs that do not require grad) that differs from
the training path; a backward that overflows into NaN where the gradient is finite. The oracle
must catch each on its own property: "inputs unchanged", "no-grad output", "finite gradients".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sdpa_scales_the_query_in_place(query, key, value, attn_mask=None, dropout_p=0.0,
                                   is_causal=False, scale=None, enable_gqa=False):
    """Folds the scale into the query in place when the query takes no gradient (an inference
    kernel saving a copy): the caller's query is changed."""
    s = query.shape[-1] ** -0.5 if scale is None else scale
    if not query.requires_grad:
        query = query.mul_(s)
    else:
        query = query * s
    return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask,
                                          is_causal=is_causal, scale=1.0, enable_gqa=enable_gqa)


def ce_log_softmax_into_the_logits(input, target, weight=None, ignore_index=-100,
                                   reduction="mean", label_smoothing=0.0):
    """Writes log_softmax into the caller's logits to save memory, when they take no gradient
    (the loss is right: log_softmax is idempotent; the caller's logits are gone)."""
    if not input.requires_grad:
        dim = 0 if input.dim() == 1 else 1
        input = input.copy_(torch.log_softmax(input, dim=dim))
    return F.cross_entropy(input, target, weight=weight, ignore_index=ignore_index,
                           reduction=reduction, label_smoothing=label_smoothing)


def ce_inference_path_drops_label_smoothing(input, target, weight=None, ignore_index=-100,
                                            reduction="mean", label_smoothing=0.0):
    """The training path is PyTorch's; the inference path (nothing requires grad) forgets the
    smoothing, as a fast evaluation kernel without that option would."""
    if not torch.is_grad_enabled() or not input.requires_grad:
        label_smoothing = 0.0
    return F.cross_entropy(input, target, weight=weight, ignore_index=ignore_index,
                           reduction=reduction, label_smoothing=label_smoothing)


def softmax_inference_path_without_the_shift(input, dim):
    """Under no_grad a "fast" softmax without the max shift: exp overflows past about 88."""
    if input.requires_grad:
        return torch.softmax(input, dim)
    e = input.exp()
    return e / e.sum(dim, keepdim=True)


class _SoftmaxBackwardUnshifted(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim):
        ctx.dim = dim
        ctx.save_for_backward(x)
        return torch.softmax(x, dim)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        e = x.exp()  # recomputes p without the max shift: inf / inf = NaN for large logits
        p = e / e.sum(ctx.dim, keepdim=True)
        return p * (g - (g * p).sum(ctx.dim, keepdim=True)), None


def softmax_backward_recomputed_without_the_shift(input, dim):
    """The forward is PyTorch's; the backward recomputes the probabilities without the max
    shift, so the gradient is NaN where the logits are large though the reference's is finite."""
    return _SoftmaxBackwardUnshifted.apply(input, dim)
