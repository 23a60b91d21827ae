"""Batches of next-token windows: random windows for training, a fixed slice for validation.

A training batch of step t is a function of (seed, t) alone: b window starts drawn uniformly from
``[0, n - seq_len - 1]`` by a NumPy generator seeded with the pair ``(seed, t)``; window i gives the
inputs ``tokens[s_i : s_i + seq_len]`` and the targets one position later,
``tokens[s_i + 1 : s_i + seq_len + 1]``. Because the data position is the step, a resumed run draws
the same batches as an uninterrupted one with no cursor to save, and under DDP every process draws
the same global batch and keeps its own rows (rank r of w takes rows ``[r b/w, (r+1) b/w)``).

The validation slice is the first ``n_windows = eval_tokens // seq_len`` non-overlapping windows of
the validation split (at least one): the same tokens at every evaluation of every run with that
``seq_len`` and ``eval_tokens``, so validation losses are comparable across steps and runs.

>>> import numpy as np
>>> idx, targets = train_batch(np.arange(100), seed=0, step=3, batch_size=2, seq_len=4)
>>> (targets - idx).unique().tolist(), tuple(idx.shape)
([1], (2, 4))
"""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange


def check_fits(n_train: int, n_val: int, *, batch_size: int, seq_len: int) -> None:
    """A clear ValueError when the corpus cannot fill one batch or one validation window."""
    if n_train < seq_len + 1 or batch_size * seq_len > n_train - 1:
        raise ValueError(
            f"the batch (batch_size={batch_size} x seq_len={seq_len} = {batch_size * seq_len} "
            f"tokens) is larger than the training split ({n_train} tokens); use a bigger corpus "
            f"(max_bytes, data) or a smaller batch_size/seq_len")
    if n_val < seq_len + 1:
        raise ValueError(f"the validation split has {n_val} tokens, fewer than one window of "
                         f"seq_len + 1 = {seq_len + 1}; raise val_fraction or lower seq_len")


def window_starts(n_tokens: int, *, seed: int, step: int, batch_size: int,
                  seq_len: int) -> np.ndarray:
    """The b window starts of step ``step``: uniform on [0, n - seq_len - 1], seed (seed, step)."""
    rng = np.random.default_rng([seed, step])
    return rng.integers(0, n_tokens - seq_len, size=batch_size)


def train_batch(tokens: np.ndarray, *, seed: int, step: int, batch_size: int,
                seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets, int64 (b, t), of the global batch of step ``step``."""
    starts = window_starts(len(tokens), seed=seed, step=step, batch_size=batch_size,
                           seq_len=seq_len)
    rows = starts[:, None] + np.arange(seq_len + 1)          # (b, t + 1) positions
    windows = torch.from_numpy(np.asarray(tokens[rows], dtype=np.int64))
    return windows[:, :-1], windows[:, 1:]


def val_windows(tokens: np.ndarray, *, seq_len: int,
                eval_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed validation slice: inputs and targets, int64 (n_windows, t)."""
    n_windows = max(1, min(eval_tokens // seq_len, (len(tokens) - 1) // seq_len))
    flat = np.asarray(tokens[: n_windows * seq_len + 1], dtype=np.int64)
    idx = rearrange(torch.from_numpy(flat[:-1].copy()), "(b t) -> b t", t=seq_len)
    targets = rearrange(torch.from_numpy(flat[1:].copy()), "(b t) -> b t", t=seq_len)
    return idx, targets


def shard(x: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rows ``[r b/w, (r+1) b/w)`` of a global batch: this process's share."""
    per = x.shape[0] // world_size
    return x[rank * per:(rank + 1) * per]
