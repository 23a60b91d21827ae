"""Checks of the data handed to the fitters: every error names the argument and what was seen."""

from __future__ import annotations

import numpy as np


def positive_finite(name: str, x: object) -> np.ndarray:
    """``x`` as a 1-D float64 array; ValueError unless every entry is finite and > 0."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a sequence of real numbers, got {x!r:.200}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} must be finite and > 0; entry {i} is {arr[i]!r} "
                         f"({int(bad.sum())} bad of {arr.size})")
    return arr


def same_length(**arrays: np.ndarray | None) -> int:
    """The common length of the given arrays (None entries are skipped); ValueError otherwise."""
    lengths = {k: len(v) for k, v in arrays.items() if v is not None}
    if len(set(lengths.values())) > 1:
        seen = ", ".join(f"{k}: {n}" for k, n in lengths.items())
        raise ValueError(f"{', '.join(lengths)} must have the same length, got {seen}")
    return next(iter(lengths.values()))


def cluster_ids(seeds: object, keys: np.ndarray, n: int) -> np.ndarray | None:
    """Cluster index per point for the bootstrap, or None (resample single points).

    ``keys`` (n, k) identify a size (N, or (N, D)). Points are clustered by size when ``seeds`` is
    given or when a size repeats; a repeated (size, seed) pair is an error (a duplicated record).
    """
    _, cluster = np.unique(keys, axis=0, return_inverse=True)
    cluster = cluster.reshape(-1)
    if seeds is not None:
        s = np.asarray(seeds)
        if s.ndim != 1 or len(s) != n:
            raise ValueError(f"seeds must be one id per point ({n}), got shape {s.shape}")
        pairs = {(int(c), str(v)) for c, v in zip(cluster, s)}
        if len(pairs) != n:
            raise ValueError("seeds: a (size, seed) pair occurs twice; each run must appear once")
        return cluster
    return cluster if cluster.max() + 1 < n else None


def require_varying_loss(loss: np.ndarray) -> None:
    """ValueError when every loss is the same: no law is determined by them (R^2 is 0/0)."""
    if loss.size and np.all(loss == loss[0]):
        raise ValueError(f"L: every loss is {loss[0]!r}, so the law is undetermined (no exponent "
                         f"fits a flat line better than another); fit runs whose losses differ")


def require_distinct(name: str, keys: np.ndarray, need: int, what: str) -> None:
    """ValueError unless ``keys`` holds at least ``need`` distinct rows."""
    k = len(np.unique(keys, axis=0))
    if k < need:
        raise ValueError(f"{name} must hold at least {need} distinct values to fit {what}, "
                         f"got {k}")
