"""Token-weighted gradient accumulation: the step's gradient from its micro-batches' gradients.

A step's loss is the mean over its N non-ignored tokens, L = (1/N) sum_i l_i. Split into
micro-batches m = 1..k (over every process, under data parallelism) holding n_m tokens each
(N = sum_m n_m), its gradient is

    grad L = (1/N) sum_m G_m            G_m = grad sum_{i in m} l_i      (each micro-batch's sum)
           = sum_m (n_m / N) g_m        g_m = G_m / n_m                  (each micro-batch's mean)

which is what `refllm.train.objective.accumulate_gradients` builds: each micro-batch's summed loss
times w / N before backward (`accumulation_scale`), the w processes' gradients then averaged by
DDP. The unweighted mean of the micro-batch means, (1/k) sum_m g_m, is a different quantity
whenever the n_m differ: it weights a token of a sparse micro-batch more. It is a common bug of
training loops, and not offered here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from refllm._validation import (
    describe,
    require_choice,
    require_float,
    require_int,
    require_same_device,
    require_same_dtype,
)

MICRO_BATCH_LOSSES = ("sum", "mean")
"""What each micro-batch's gradient is of: its summed loss G_m, or its mean loss g_m."""


def accumulation_scale(n_tokens: int, world_size: int = 1) -> float:
    """w / N: what each micro-batch's summed loss is multiplied by before backward, so that the
    gradients DDP averages over w processes add up to grad L.

    >>> accumulation_scale(512, world_size=4)
    0.0078125
    """
    n = require_int("n_tokens", n_tokens, low=1)
    return require_int("world_size", world_size, low=1) / n


def _check(grads: object, n_tokens: object, reduction: object) -> tuple[list[Tensor], list[int]]:
    if isinstance(grads, Tensor) or not isinstance(grads, Sequence) or not grads:
        raise TypeError(f"grads must be a non-empty sequence of tensors (one per micro-batch), "
                        f"got {describe(grads)}")
    gs = [require_float(f"grads[{m}]", g) for m, g in enumerate(grads)]
    for m, g in enumerate(gs):
        if g.shape != gs[0].shape:
            raise ValueError(f"grads[{m}] must have the shape of grads[0] {tuple(gs[0].shape)}, "
                             f"got {describe(g)}")
    names = [f"grads[{m}]" for m in range(len(gs))]
    require_same_dtype(names, gs)
    require_same_device(names, gs)
    if isinstance(n_tokens, (str, bytes)) or not isinstance(n_tokens, Sequence):
        raise TypeError(f"n_tokens must be a sequence of ints (one per micro-batch), got "
                        f"{describe(n_tokens)}")
    ns = [require_int(f"n_tokens[{m}]", n, low=0) for m, n in enumerate(n_tokens)]
    if len(ns) != len(gs):
        raise ValueError(f"n_tokens must hold one count per micro-batch: {len(gs)} grads, got "
                         f"{len(ns)} counts")
    if sum(ns) == 0:
        raise ValueError("n_tokens must not all be 0: a step with no tokens has no mean loss")
    require_choice("reduction", reduction, MICRO_BATCH_LOSSES)
    if reduction == "mean" and 0 in ns:
        m = ns.index(0)
        raise ValueError(f"n_tokens[{m}] is 0, so grads[{m}] cannot be the gradient of a mean "
                         f"(use reduction='sum', with which an empty micro-batch adds 0)")
    return gs, ns


def accumulate_token_weighted_naive(grads: Sequence[Float[Tensor, "*shape"]],
                                    n_tokens: Sequence[int], *,
                                    reduction: str = "sum") -> Tensor:
    """grad L element by element with ``math.fsum`` over the micro-batches.

    >>> accumulate_token_weighted_naive([torch.tensor([2.0]), torch.tensor([4.0])], [1, 3],
    ...                                 reduction="mean")  # (1 * 2 + 3 * 4) / 4
    tensor([3.5000])
    """
    gs, ns = _check(grads, n_tokens, reduction)
    total = sum(ns)
    weights = [1.0 / total if reduction == "sum" else n / total for n in ns]
    columns = [g.detach().double().reshape(-1).tolist() for g in gs]
    out = [math.fsum(w * v for w, v in zip(weights, values)) for values in zip(*columns)]
    return torch.tensor(out, dtype=torch.float64).reshape(gs[0].shape).to(gs[0].dtype)


def accumulate_token_weighted(grads: Sequence[Float[Tensor, "*shape"]], n_tokens: Sequence[int],
                              *, reduction: str = "sum") -> Tensor:
    """grad L, vectorised: (1/N) sum_m G_m, or sum_m (n_m / N) g_m.

    >>> accumulate_token_weighted([torch.tensor([2.0]), torch.tensor([12.0])], [1, 3])  # (2+12)/4
    tensor([3.5000])
    """
    gs, ns = _check(grads, n_tokens, reduction)
    total = sum(ns)
    stacked = torch.stack(gs)  # (k, *shape)
    if reduction == "sum":
        return stacked.sum(0) / total
    w = torch.tensor(ns, dtype=stacked.dtype, device=stacked.device) / total
    return torch.tensordot(w, stacked, dims=1)


__all__ = ["MICRO_BATCH_LOSSES", "accumulate_token_weighted", "accumulate_token_weighted_naive",
           "accumulation_scale"]
