"""The masked row softmax of refllm's fast attention path, with one (t, s) matrix kept, not three.

    probs   = softmax(scores masked)                  forward: mask, shift, exp, divide, one copy
    dscores = probs ∘ (dprobs - rowsum(dprobs ∘ probs))   backward: from probs alone

Autograd through `refllm.ops.softmax` saves exp(x - m) and the sum beside the probabilities and
makes a fresh (t, s) tensor at each of mask, shift, exp and divide; this Function does the same
arithmetic in the same order (so the values are bit for bit those of `softmax`) on one copy, and
saves only the probabilities. Its backward is written in differentiable torch ops on the saved
output, so double backward works. Rows of all -inf give 0 and zero gradients, as `softmax`.
"""

from __future__ import annotations

import torch
from torch import Tensor

NEG_INF = float("-inf")


class _MaskedSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores: Tensor, allowed: Tensor | None) -> Tensor:
        probs = scores.clone() if allowed is None else scores.masked_fill(~allowed, NEG_INF)
        m = probs.amax(-1, keepdim=True)
        probs.sub_(torch.where(m == NEG_INF, torch.zeros_like(m), m)).exp_()
        total = probs.sum(-1, keepdim=True)
        probs.div_(torch.where(total > 0, total, torch.ones_like(total)))
        ctx.save_for_backward(probs)
        return probs

    @staticmethod
    def backward(ctx, grad_probs: Tensor) -> tuple[Tensor, None]:
        (probs,) = ctx.saved_tensors
        grad = probs * grad_probs
        return grad.addcmul_(probs, grad.sum(-1, keepdim=True), value=-1.0), None


def masked_softmax(scores: Tensor, allowed: Tensor | None = None) -> Tensor:
    """softmax(scores) along the last dim, -inf where ``allowed`` (bool, broadcast) is False."""
    return _MaskedSoftmax.apply(scores, allowed)
