"""Attention masks: the conventions PyTorch uses and the conversions between them, written once.

Three ways to say which keys a query sees, all PyTorch's:

* SDPA's boolean ``attn_mask``: True = the key takes part ("allowed");
* an additive float mask M: added to the scores, 0 where the key takes part, -inf where it does not
  (any other value shifts the score);
* nn.MultiheadAttention's boolean ``key_padding_mask`` and ``attn_mask``: True = *ignore* the key
  (the opposite of SDPA's), a float mask being additive as above.

And ``is_causal``: query i sees key j iff ``j <= i + offset`` (offset 0: top-left, PyTorch's;
``s - t``: bottom-right, as a KV cache needs; `refllm.ops._attention_args.causal_offset`).

    allowed_ij = (j <= i + offset)                       causal
    M_ij       = 0 if allowed_ij else -inf                boolean -> additive
    scores'    = scores.masked_fill(~allowed, -inf)       or  scores + M

>>> causal_allowed(2, 3).int().tolist()
[[1, 0, 0], [1, 1, 0]]
>>> additive(torch.tensor([True, False]), torch.float32).tolist()
[0.0, -inf]
"""

from __future__ import annotations

import torch
from torch import Tensor

NEG_INF = float("-inf")


def is_boolean(mask: Tensor | None) -> bool:
    return mask is not None and mask.dtype == torch.bool


def causal_allowed(t: int, s: int, offset: int = 0, *, i0: int = 0, j0: int = 0,
                   device: torch.device | str | None = None) -> Tensor:
    """(t, s) bool: query ``i0 + i`` sees key ``j0 + j`` iff ``j0 + j <= i0 + i + offset``.

    ``i0``, ``j0`` place the block within the whole (t_total, s_total) matrix (a tile of a tiled
    kernel, the new queries of a cached decoding step).
    """
    i = torch.arange(i0, i0 + t, device=device)[:, None]
    j = torch.arange(j0, j0 + s, device=device)[None, :]
    return j <= i + offset


def additive(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """An SDPA mask as additive: boolean (True = allowed) -> 0 / -inf in ``dtype``; a float mask
    is returned as it is."""
    if not is_boolean(mask):
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, NEG_INF)


def allowed(mask: Tensor) -> Tensor:
    """An SDPA mask as boolean, True where the key takes part: a float mask's -inf is False."""
    return mask if is_boolean(mask) else mask != NEG_INF


def from_ignore(mask: Tensor) -> Tensor:
    """nn.MultiheadAttention's mask (boolean True = ignore, or additive) in SDPA's convention."""
    return ~mask if is_boolean(mask) else mask


def combine(masks: list[Tensor], dtype: torch.dtype) -> Tensor | None:
    """Several SDPA masks as one (broadcast): all boolean -> their AND (a key takes part only
    where every mask allows it), else the sum of their additive forms. None for no mask."""
    if not masks:
        return None
    if all(is_boolean(m) for m in masks):
        out = masks[0]
        for m in masks[1:]:
            out = out & m
        return out
    total = additive(masks[0], dtype)
    for m in masks[1:]:
        total = total + additive(m, dtype)
    return total


def apply(scores: Tensor, mask: Tensor | None, *, inplace: bool = False) -> Tensor:
    """``scores`` under an SDPA mask: -inf where a boolean mask is False, plus an additive one."""
    if mask is None:
        return scores
    if is_boolean(mask):
        return scores.masked_fill_(~mask, NEG_INF) if inplace else scores.masked_fill(~mask,
                                                                                       NEG_INF)
    return scores.add_(mask) if inplace else scores + mask


__all__ = ["NEG_INF", "additive", "allowed", "apply", "causal_allowed", "combine", "from_ignore",
           "is_boolean"]
