"""Filters that shape the next-token distribution before sampling; pure functions on logits.

Top-k (Fan et al. 2018, "Hierarchical Neural Story Generation", §5.4): keep the k most likely
tokens. Here: keep every token whose logit is >= the k-th largest logit (ties at the k-th value all
survive, so more than k may remain); k >= v keeps everything.

Top-p, nucleus sampling (Holtzman et al. 2019/2020, "The Curious Case of Neural Text
Degeneration", §3.1, Eq. 2): keep the smallest set of most likely tokens whose probability mass is
>= p. Here, with ties resolved inclusively so that the result does not depend on a sort order:
token i survives iff the mass of the tokens strictly more likely than i is < p,

    keep_i  <=>  sum_{j : p_j > p_i} p_j < p,           p = softmax(logits),  0 < p <= 1,

which, without ties, is exactly Holtzman's smallest set (the most likely token always survives).
Removed tokens get logit -inf. Both filters act on the last axis (v) of logits of any shape.

>>> import torch
>>> logits = torch.log(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))
>>> top_p_filter(logits, 0.7).isfinite().tolist(), top_k_filter(logits, 1).isfinite().tolist()
([True, True, False], [True, False, False])
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

NEG_INF = float("-inf")


def top_k_filter_naive(logits: Float[Tensor, "... v"], k: int) -> Float[Tensor, "... v"]:
    """Top-k by a sorted Python list per row."""
    rows = logits.reshape(-1, logits.shape[-1])
    out = rows.clone()
    for r in range(rows.shape[0]):
        values = sorted(rows[r].tolist(), reverse=True)
        kth = values[min(k, len(values)) - 1]
        for i in range(rows.shape[1]):
            if rows[r, i] < kth:
                out[r, i] = NEG_INF
    return out.reshape(logits.shape)


def top_k_filter(logits: Float[Tensor, "... v"], k: int) -> Float[Tensor, "... v"]:
    """Top-k, vectorised: the k-th largest logit is the threshold."""
    kth = logits.topk(min(k, logits.shape[-1]), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_p_filter_naive(logits: Float[Tensor, "... v"], p: float) -> Float[Tensor, "... v"]:
    """Top-p by the definition: for each token, the mass of the strictly more likely tokens."""
    rows = logits.reshape(-1, logits.shape[-1])
    probs = torch.softmax(rows, dim=-1)
    out = rows.clone()
    for r in range(rows.shape[0]):
        for i in range(rows.shape[1]):
            above = sum(float(q) for q in probs[r] if q > probs[r, i])
            if p < 1.0 and above >= p:
                out[r, i] = NEG_INF
    return out.reshape(logits.shape)


def top_p_filter(logits: Float[Tensor, "... v"], p: float) -> Float[Tensor, "... v"]:
    """Top-p, vectorised: sort, find the last token of the nucleus, keep all at least as likely."""
    if p >= 1.0:
        return logits.clone()
    probs = torch.softmax(logits, dim=-1)
    sorted_probs = probs.sort(dim=-1, descending=True).values
    before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of the tokens sorted before
    last = (before < p).sum(dim=-1, keepdim=True) - 1  # index of the last token in the nucleus
    threshold = sorted_probs.gather(-1, last)
    return logits.masked_fill(probs < threshold, NEG_INF)


__all__ = ["top_k_filter", "top_k_filter_naive", "top_p_filter", "top_p_filter_naive"]
