"""The 1-D law, L(N) = E + A N^-alpha (``saturating=False``: L = A N^-alpha).

It minimises the sum of squared log residuals, log L_pred - log L_obs, by variable projection
(refllm.scaling.fit.varpro); the pure power law is ordinary least squares of log L on log N.
Intervals: a case bootstrap, clustered by size when sizes repeat (refllm.scaling.fit.bootstrap).
The variable may be N, D or C: only its name changes (``variable=``).

>>> import numpy as np
>>> n = np.geomspace(1e4, 1e6, 6)
>>> fit = fit_power_law(n, 1.5 + 40.0 * n**-0.3, bootstrap=0)
>>> {k: round(v, 6) for k, v in fit.params.items()}
{'E': 1.5, 'A': 40.0, 'alpha': 0.3}
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from refllm.scaling.fit import varpro
from refllm.scaling.fit._data import (
    cluster_ids,
    positive_finite,
    require_distinct,
    require_varying_loss,
    same_length,
)
from refllm.scaling.fit.bootstrap import bootstrap_weights, percentile_ci
from refllm.scaling.fit.result import (
    PARAMS,
    FitResult,
    check_options,
    collapsed_params,
    log_model,
    r2_log,
)

__all__ = ["fit_power_law"]

def _solve_power(u: np.ndarray, y: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Weighted OLS of y on (1, -u) for each weight row: rows (log A_ref, alpha)."""
    s0, su = c.sum(-1), (c * u).sum(-1)
    ubar, ybar = su / s0, (c * y).sum(-1) / s0
    alpha = -((c * (u - ubar[..., None]) * (y - ybar[..., None])).sum(-1)
              / (c * (u - ubar[..., None]) ** 2).sum(-1))
    return np.stack([ybar + alpha * ubar, alpha], axis=-1)


def _solve_saturating(u: np.ndarray, y: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Rows (E, A_ref, alpha) for each weight row c (R, n): grid, then golden section."""
    lo, hi = varpro.bracket(varpro.profile_grid(u, y, c))
    alpha = varpro.golden_section(u, y, c, lo, hi)
    e, a, _, _ = varpro.inner_solve(alpha, u, y, c)
    return np.stack([e, a, alpha], axis=-1)


def _to_params(law: str, rows: np.ndarray, log_ref: float) -> np.ndarray:
    """Internal rows (centred sizes) -> parameters in the user's units, PARAMS order."""
    if law == "power":
        return np.stack([np.exp(rows[..., 0] + rows[..., 1] * log_ref), rows[..., 1]], axis=-1)
    return np.stack([rows[..., 0], rows[..., 1] * np.exp(rows[..., 2] * log_ref), rows[..., 2]],
                    axis=-1)


def fit_power_law(N: ArrayLike, L: ArrayLike, *, saturating: bool = True,
                  seeds: ArrayLike | None = None, bootstrap: int = 1000, level: float = 0.9,
                  rng: int | np.random.Generator = 0, variable: str = "N") -> FitResult:
    """Fit ``L = E + A N^-alpha`` (or ``A N^-alpha``) by least squares on log residuals.

    ``seeds``: one id per point; with it (or when a size repeats) the bootstrap resamples sizes
    as clusters. ``bootstrap``: replicates (0: no intervals). ``variable``: "N", "D" or "C".
    """
    x, big = positive_finite(variable, N), positive_finite("L", L)
    n = same_length(**{variable: x, "L": big})
    gen = check_options(bootstrap, level, rng)
    law = "saturating" if saturating else "power"
    p = len(PARAMS[law])
    if n < p:
        raise ValueError(f"L: {n} points cannot determine the {p} parameters of {law} law")
    require_distinct(variable, x, p + (bootstrap > 0), f"the {law} law")
    require_varying_loss(big)
    clusters = cluster_ids(seeds, x[:, None], n)
    log_ref = float(np.mean(np.log(x)))
    u, y = np.log(x) - log_ref, np.log(big)
    one = np.ones(n)
    if saturating:
        lo, hi = varpro.bracket(varpro.profile_grid(u, y, one))
        alpha, brent_ok = varpro.brent(u, y, float(lo), float(hi))
        e, a, _, gn_ok = varpro.inner_solve(np.array(alpha), u, y, one)
        rows, converged = np.array([e, a, alpha], dtype=float), bool(brent_ok and gn_ok)
    else:
        rows, converged = _solve_power(u, y, one), True
    theta = _to_params(law, rows, log_ref)
    params = dict(zip(PARAMS[law], map(float, theta)))
    residuals = log_model(law, theta, x) - y
    on_bound = {k: False for k in params}
    if saturating:
        on_bound.update(E=params["E"] == 0.0, A=params["A"] == 0.0, alpha=bool(
            np.isclose(params["alpha"], varpro.ALPHA_BOUNDS, rtol=1e-6).any()))
    replicates, cis = None, {}
    if bootstrap:
        _, size_ids = np.unique(x, return_inverse=True)
        w = bootstrap_weights(size_ids.reshape(-1), clusters, bootstrap, gen, p)
        solve = _solve_saturating if saturating else _solve_power
        replicates = _to_params(law, solve(u, y, w.astype(float)), log_ref)
        lo_ci, hi_ci = percentile_ci(replicates, level)
        cis = {k: (float(lo_ci[i]), float(hi_ci[i])) for i, k in enumerate(params)}
    method = ("log-residual least squares, variable projection (grid + bounded Brent)"
              if saturating else "log-residual least squares (OLS in log-log)")
    return FitResult(law=law, variable=variable, params=params, cis=cis, level=level,
                     n_points=n, residuals=residuals, r2_log=r2_log(residuals, y),
                     on_bound=on_bound, converged=converged, method=method,
                     replicates=replicates, collapsed=collapsed_params(params, on_bound, big),
                     diagnostics={"clustered_bootstrap": clusters is not None,
                                  "bootstrap": bootstrap})
