"""The two plots of a sweep report, as PNG bytes (matplotlib, Agg backend: no display needed).

``loss_vs_params``: final validation loss against non-embedding N on log-log axes: every run (small
dots), the seed means with the seeds' range as error bars, the fitted law L = E + A N^-alpha (fitted
WITHOUT the largest size) with the 90% band of the bootstrap replicates' curves, and the held-out
largest size in red with its 95% prediction interval.

``residuals``: 100 (L_fit / L_obs - 1) per run against N: the fitted sizes should scatter around 0
without a trend or a bend; the held-out size shows how far the law extrapolates.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _plain_log_y(ax: Any) -> None:
    from matplotlib.ticker import ScalarFormatter

    for axis in (ax.yaxis,):
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(ScalarFormatter())


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def _curve_band(fit: Any, grid: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray] | None:
    if fit.replicates is None:
        return None
    from refllm.scaling.fit.result import log_model

    curves = np.exp(log_model(fit.law, fit.replicates, grid))
    lo, hi = np.nanquantile(curves, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lo, hi


def loss_vs_params(rows: list[dict], runs: list[dict], verdict: Any) -> bytes:
    """The log-log plot (see the module docstring) as PNG bytes."""
    plt = _pyplot()
    fit = verdict.fit
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    n_runs = np.array([r["n_params_non_embedding"] for r in runs], dtype=float)
    ax.scatter(n_runs, [r["final_val_loss"] for r in runs], s=10, color="0.55", zorder=2,
               label="runs (each seed)")
    fitted, held = rows[:-1], rows[-1]
    n = np.array([r["N"] for r in fitted], dtype=float)
    mean = np.array([r["mean"] for r in fitted])
    err = np.array([[r["mean"] - min(r["losses"]), max(r["losses"]) - r["mean"]] for r in fitted]).T
    ax.errorbar(n, mean, yerr=err, fmt="o", color="C0", capsize=3, zorder=3,
                label="seed mean (range of seeds), fitted")
    grid = np.geomspace(n_runs.min() / 1.25, n_runs.max() * 1.25, 200)
    band = _curve_band(fit, grid, fit.level)
    if band is not None:
        ax.fill_between(grid, *band, color="C1", alpha=0.25, lw=0,
                        label=f"{fit.level:.0%} bootstrap band of the law")
    p = fit.params
    ax.plot(grid, fit.predict(grid), color="C1", zorder=2,
            label=f"L = {p['E']:.3g} + {p['A']:.3g} N^-{p['alpha']:.3f}")
    pi = verdict.details.get("prediction_interval")
    if pi is not None:  # the held-out mean may lie outside it: draw the interval on its own
        ax.plot([held["N"]] * 2, pi, color="C3", lw=1.5, marker="_", ms=10, zorder=4,
                label="95% prediction interval at the held-out size")
    ax.scatter([held["N"]], [held["mean"]], marker="D", color="C3", s=30, zorder=5,
               label="held out (largest size): seed mean")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_y(ax)
    ax.set_xlabel("non-embedding parameters N")
    ax.set_ylabel("final validation loss (nats/token)")
    state = "follows a power law" if verdict.passed else "NOT shown to follow a power law"
    ax.set_title(f"{verdict.preset} preset: loss {state} (R² log {fit.r2_log:.4f})", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def residuals(rows: list[dict], runs: list[dict], verdict: Any) -> bytes:
    """The residual plot (see the module docstring) as PNG bytes."""
    plt = _pyplot()
    fit = verdict.fit
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    n = np.array([r["n_params_non_embedding"] for r in runs], dtype=float)
    loss = np.array([r["final_val_loss"] for r in runs], dtype=float)
    res = 100 * (fit.predict(n) / loss - 1)
    held = n == rows[-1]["N"]
    ax.scatter(n[~held], res[~held], color="C0", s=18, label="runs of the fitted sizes")
    ax.scatter(n[held], res[held], color="C3", marker="D", s=22, label="held-out size")
    means = np.array([r["mean"] for r in rows])
    sizes = np.array([r["N"] for r in rows], dtype=float)
    ax.plot(sizes, 100 * (fit.predict(sizes) / means - 1), color="0.3", lw=1,
            label="seed means")
    ax.axhline(0.0, color="0.5", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("non-embedding parameters N")
    ax.set_ylabel("fit / observed - 1 (%)")
    ax.set_title("residuals of L = E + A N^-alpha (fitted without the largest size)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)
