"""Validation loss on the fixed slice: (1/N) Σ_i −log p(y_i | x_≤i) over every slice token, nats.

The slice (`refllm.train.batches.val_windows`) is split over the processes (rank r of w takes
windows r, r + w, ...); the sums of losses and of token counts are then added over processes, so
the result does not depend on w. Runs in eval mode (dropout off) without gradients and leaves the
model in training mode.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from refllm.train.distributed import Dist, all_reduce_sum
from refllm.train.objective import IGNORE_INDEX, loss_sum


@torch.no_grad()
def evaluate(model: torch.nn.Module, idx: torch.Tensor, targets: torch.Tensor, *,
             batch_size: int, impl: str = "torch", dist: Dist | None = None,
             autocast: Callable[[], contextlib.AbstractContextManager] | None = None) -> float:
    """Mean next-token loss (nats/token) of ``model`` on windows ``idx``/``targets`` (n, t)."""
    dist = dist or Dist()
    model.eval()
    mine_idx, mine_targets = idx[dist.rank::dist.world_size], targets[dist.rank::dist.world_size]
    total = torch.zeros(2, dtype=torch.float64, device=idx.device)   # Σ loss, N
    for start in range(0, mine_idx.shape[0], batch_size):
        x, y = mine_idx[start:start + batch_size], mine_targets[start:start + batch_size]
        with autocast() if autocast is not None else contextlib.nullcontext():
            logits = model(x)
        total[0] += loss_sum(logits, y, impl).double()
        total[1] += (y != IGNORE_INDEX).sum()
    model.train()
    all_reduce_sum(total, dist)
    return float(total[0] / total[1])
