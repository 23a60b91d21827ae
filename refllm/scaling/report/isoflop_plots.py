"""The four plots of an IsoFLOP report, as PNG bytes (matplotlib, Agg backend).

``curves``: loss against N at each budget (log N), the runs, each budget's fitted parabola and its
minimum; the held-out run in red. ``allocation``: N_opt and D_opt against C (log-log), the parabola
minima, Approach 2's fitted lines and Approach 3's allocation, extended to the held-out budget.
``contours``: Approach 3's L(N, D) in the (log N, log D) plane with the runs on it, the iso-FLOP
lines the budgets trace and the compute-optimal path. ``frontier``: the minima's loss against C with
L_opt(C) = A C^-gamma, and the held-out run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refllm.scaling.report.plots import _png, _pyplot


def _budget_colours(budgets: np.ndarray) -> dict[float, Any]:
    cmap = _pyplot().get_cmap("viridis")
    return {float(c): cmap(i / max(len(budgets) - 1, 1) * 0.85) for i, c in enumerate(budgets)}


def curves(analysis: Any, holdout: dict | None) -> bytes:
    plt = _pyplot()
    p, a2 = analysis.points, analysis.approach2
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colours = _budget_colours(a2.budgets)
    for c, colour in colours.items():
        sel = np.isclose(p["C"], c, rtol=1e-6)
        x, y = np.log(p["N"][sel]), p["L"][sel]
        grid = np.linspace(x.min(), x.max(), 100)
        ax.plot(np.exp(grid), np.polyval(np.polyfit(x, y, 2), grid), color=colour, lw=1.2)
        ax.scatter(p["N"][sel], y, color=colour, s=18, zorder=3, label=f"C = {c:.3g}")
    ax.scatter(a2.N_opt, a2.L_opt, marker="v", color="black", s=30, zorder=4,
               label="parabola minima")
    if holdout is not None:
        ax.scatter([holdout["n_params_non_embedding"]], [holdout["final_val_loss"]], marker="*",
                   color="red", s=90, zorder=5, label=f"held out, C = {holdout['budget']:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("non-embedding parameters N")
    ax.set_ylabel("final validation loss (nats/byte)")
    ax.set_title("IsoFLOP curves")
    ax.legend(fontsize=8)
    return _png(fig)


def allocation(analysis: Any, holdout: dict | None) -> bytes:
    plt = _pyplot()
    a2, al3 = analysis.approach2, analysis.allocation3
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 4.0))
    top = a2.budgets.max() * (3.0 if holdout is None else float(holdout["budget"]) /
                              a2.budgets.max()) * 1.2
    grid = np.geomspace(a2.budgets.min() / 1.5, top, 50)
    d_opt = a2.D_opt if a2.D_opt is not None else a2.budgets / (6 * a2.N_opt)
    for ax, y, exp2, key, label in ((axes[0], a2.N_opt, a2.a, "a", "N_opt"),
                                    (axes[1], d_opt, a2.b, "b", "D_opt")):
        ax.scatter(a2.budgets, y, color="black", zorder=3, label="parabola minima")
        centre_c, centre_y = np.exp(np.mean(np.log(a2.budgets))), np.exp(np.mean(np.log(y)))
        ax.plot(grid, centre_y * (grid / centre_c) ** exp2, color="C0",
                label=f"Approach 2: C^{exp2:.3f}")
        if key in al3:  # Approach 3's exponent through the same centre: the slopes are compared
            ax.plot(grid, centre_y * (grid / centre_c) ** al3[key], color="C1", ls="--",
                    label=f"Approach 3: C^{al3[key]:.3f}")
        if holdout is not None:
            value = holdout["n_params_non_embedding"] if key == "a" else holdout["tokens"]
            ax.scatter([holdout["budget"]], [value], marker="*", color="red", s=90, zorder=4,
                       label="held-out run")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("compute C (FLOPs)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    fig.suptitle("compute-optimal allocation")
    return _png(fig)


def contours(analysis: Any, holdout: dict | None) -> bytes:
    plt = _pyplot()
    p, fit = analysis.points, analysis.approach3
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    n_all = np.concatenate([p["N"], [holdout["n_params_non_embedding"]] if holdout else []])
    d_all = np.concatenate([p["D"], [holdout["tokens"]] if holdout else []])
    ng = np.geomspace(n_all.min() / 1.5, n_all.max() * 1.5, 80)
    dg = np.geomspace(d_all.min() / 1.5, d_all.max() * 1.5, 80)
    nn, dd = np.meshgrid(ng, dg)
    loss = fit.predict(nn.ravel(), dd.ravel()).reshape(nn.shape)
    cs = ax.contour(nn, dd, loss, levels=12, cmap="viridis_r", linewidths=0.8)
    ax.clabel(cs, fontsize=7, fmt="%.2f")
    sc = ax.scatter(p["N"], p["D"], c=p["L"], cmap="viridis_r", s=22, edgecolor="black",
                    zorder=3, label="ladder runs")
    fig.colorbar(sc, ax=ax, label="final validation loss")
    for c in np.unique(p["C"]):  # the iso-FLOP line the budget's runs lie on
        sel = np.isclose(p["C"], c, rtol=1e-6)
        order = np.argsort(p["N"][sel])
        ax.plot(p["N"][sel][order], p["D"][sel][order], color="0.5", ls=":", lw=1)
    if analysis.approach2 is not None and analysis.approach2.D_opt is not None:
        ax.plot(analysis.approach2.N_opt, analysis.approach2.D_opt, color="black", marker="v",
                lw=1, label="IsoFLOP minima")
    if holdout is not None:
        ax.scatter([holdout["n_params_non_embedding"]], [holdout["tokens"]], marker="*",
                   color="red", s=90, zorder=4, label="held-out run")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("non-embedding parameters N")
    ax.set_ylabel("training tokens D")
    ax.set_title("Approach 3: L(N, D) = E + A/N^alpha + B/D^beta")
    ax.legend(fontsize=8, loc="upper right")
    return _png(fig)


def frontier(analysis: Any, holdout: dict | None) -> bytes:
    plt = _pyplot()
    a2, fit = analysis.approach2, analysis.frontier
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.scatter(a2.budgets, a2.L_opt, color="black", zorder=3, label="parabola minima")
    top = float(holdout["budget"]) * 1.3 if holdout else a2.budgets.max() * 3
    grid = np.geomspace(a2.budgets.min() / 1.5, top, 50)
    q = fit.params
    ax.plot(grid, fit.predict(grid), color="C0",
            label=f"L_opt = {q['A']:.3g} C^-{q['alpha']:.3f}")
    if holdout is not None:
        ax.scatter([holdout["budget"]], [holdout["final_val_loss"]], marker="*", color="red",
                   s=90, zorder=4, label="held-out run")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compute C (FLOPs)")
    ax.set_ylabel("loss at the optimum")
    ax.set_title("compute-optimal frontier")
    ax.legend(fontsize=8)
    return _png(fig)
