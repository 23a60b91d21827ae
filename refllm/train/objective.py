"""The next-token objective and token-weighted gradient accumulation.

Next-token cross-entropy (Radford et al. 2018/2019; Bengio et al. 2003 for the objective), over the
positions i of one optimizer step whose target y_i is not ``ignore_index``::

    L = (1 / N) · Σ_i −log p_θ(y_i | x_{≤i}),        N = #{i : y_i ≠ ignore_index}

in nats per token (bits per token = L / ln 2). With gradient accumulation the step's batch is
split into micro-batches m = 1..k (and, under DDP, over w processes). Token-weighted accumulation
keeps the equation above exact: each micro-batch contributes its *sum* of per-token losses divided
by the N of the whole step, so

    ∇L = Σ_m ∇( Σ_{i ∈ m} ℓ_i ) / N

equals the gradient of one k-times batch also when micro-batches hold different numbers of
non-ignored tokens. (Averaging per-micro-batch means, ``Σ_m mean_m / k``, is *not* the same: it
weights a token of a sparse micro-batch more.) DDP averages gradients over the w processes, so
each process scales its part by w; N counts the whole global batch, which every process knows
because each draws the same global batch (`refllm.train.batches`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange

from refllm.ops.cross_entropy import cross_entropy as refllm_cross_entropy

IGNORE_INDEX = -100


def loss_sum(logits: torch.Tensor, targets: torch.Tensor, impl: str = "torch") -> torch.Tensor:
    """Σ_i −log p(y_i) over the non-ignored targets; logits (b, t, v), targets (b, t).

    Half-precision logits (bf16 autocast) are summed in float32; float64 stays float64.
    """
    flat = rearrange(logits, "b t v -> (b t) v")
    if flat.dtype in (torch.bfloat16, torch.float16):
        flat = flat.float()
    y = rearrange(targets, "b t -> (b t)")
    if impl == "torch":
        return F.cross_entropy(flat, y, ignore_index=IGNORE_INDEX, reduction="sum")
    if impl == "refllm":
        return refllm_cross_entropy(flat, y, ignore_index=IGNORE_INDEX, reduction="sum")
    raise ValueError(f"loss_impl must be 'torch' or 'refllm', got {impl!r}")


def count_tokens(targets: torch.Tensor) -> int:
    """N: the number of non-ignored targets (call it on CPU tensors: no device sync)."""
    return int((targets != IGNORE_INDEX).sum())


def step_loss_naive(model: Callable[[torch.Tensor], torch.Tensor],
                    micro_batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Reference: the micro-batches concatenated into one batch, mean over non-ignored tokens."""
    idx = torch.cat([m[0] for m in micro_batches])
    targets = torch.cat([m[1] for m in micro_batches])
    logits = model(idx)
    return F.cross_entropy(rearrange(logits, "b t v -> (b t) v"),
                           rearrange(targets, "b t -> (b t)"), ignore_index=IGNORE_INDEX)


def accumulate_gradients(model: torch.nn.Module,
                         micro_batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
                         n_tokens: int, *, impl: str = "torch", world_size: int = 1,
                         autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
                         ) -> torch.Tensor:
    """Backpropagate Σ_m Σ_{i∈m} ℓ_i · w / N into ``.grad``; return Σ ℓ_i (detached).

    ``n_tokens`` is N of the whole step (all micro-batches, all processes). A DDP-wrapped model
    synchronises gradients only on the last micro-batch (``no_sync`` before).
    """
    total = None
    scale = world_size / n_tokens
    last = len(micro_batches) - 1
    for m, (idx, targets) in enumerate(micro_batches):
        no_sync = getattr(model, "no_sync", None)  # DDP's: skip the all-reduce until the last
        with contextlib.nullcontext() if m == last or no_sync is None else no_sync():
            with autocast() if autocast is not None else contextlib.nullcontext():
                logits = model(idx)
            part = loss_sum(logits, targets, impl)
            (part * scale).backward()
        part = part.detach()
        total = part if total is None else total + part
    assert total is not None, "accumulate_gradients needs at least one micro-batch"
    return total
