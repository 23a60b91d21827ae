"""Case bootstrap (Efron & Tibshirani 1993, §9.5 "bootstrapping pairs"), clustered by size.

A replicate is a data set drawn with replacement from the n points; when a size was run with
several seeds the *sizes* are drawn instead, each carrying all of its seeds (a cluster, or
"block", bootstrap: the seeds of one size share that size's deviation from the law, so treating
them as independent points would make the intervals too narrow). A replicate is stored as integer
case weights w (R, n): w_i = how often point i was drawn, so a weighted refit on the original
arrays equals the refit on the resampled data set. A replicate with fewer distinct sizes than the
law has parameters cannot be fitted and is drawn again.

Percentile intervals: the (1 - level)/2 and (1 + level)/2 quantiles of the refitted parameters.

Prediction interval for a new run at x* (documented in docs/scaling.md): on each replicate r,
log L*_r = log f(x*; theta_r) + mean of n_runs residuals drawn from the main fit's log residuals,
centred and scaled by sqrt(n / (n - p)) (the usual correction for the shrinkage of fitted
residuals; Davison & Hinkley 1997, §6.3.3, Eq. 6.9); the interval is the percentile interval of
exp(log L*_r). The first term is the uncertainty of the law, the second the run-to-run scatter.
"""

from __future__ import annotations

import numpy as np

MAX_REDRAWS = 100


def bootstrap_weights(size_ids: np.ndarray, clusters: np.ndarray | None, replicates: int,
                      rng: np.random.Generator, need: int) -> np.ndarray:
    """Case weights (replicates, n); every replicate holds >= ``need`` distinct sizes."""
    n = len(size_ids)
    n_sizes = int(size_ids.max()) + 1

    def draw(r: int) -> np.ndarray:
        if clusters is None:
            return rng.multinomial(n, np.full(n, 1.0 / n), size=r)
        k = int(clusters.max()) + 1
        return rng.multinomial(k, np.full(k, 1.0 / k), size=r)[:, clusters]

    def distinct(w: np.ndarray) -> np.ndarray:
        per_size = np.zeros((len(w), n_sizes))
        np.add.at(per_size.T, size_ids, w.T)
        return (per_size > 0).sum(axis=1)

    w = draw(replicates)
    for _ in range(MAX_REDRAWS):
        bad = distinct(w) < need
        if not bad.any():
            return w
        w[bad] = draw(int(bad.sum()))
    raise ValueError(f"bootstrap: could not draw replicates holding {need} distinct sizes "
                     f"from {n_sizes} sizes; give more sizes")


def percentile_ci(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval of ``samples`` (replicates, ...) at ``level`` along axis 0."""
    lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lo, hi


def prediction_interval(log_pred: np.ndarray, residuals: np.ndarray, n_params: int, level: float,
                        n_runs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Percentile prediction interval of ``exp(log_pred + residual noise)``.

    ``log_pred`` (replicates, m): the law's log prediction on each replicate; ``residuals`` (n,)
    the main fit's log residuals; ``n_runs``: the new value is the mean loss of this many runs.
    """
    n = len(residuals)
    pool = residuals - residuals.mean()
    if n > n_params:
        pool = pool * np.sqrt(n / (n - n_params))
    draws = rng.choice(pool, size=(*log_pred.shape, n_runs), replace=True)
    # the mean of n_runs losses (not of their logs): the value a seed mean is compared with
    sims = np.log(np.exp(log_pred[..., None] + draws).mean(axis=-1))
    lo, hi = percentile_ci(sims, level)
    return np.exp(lo), np.exp(hi)
