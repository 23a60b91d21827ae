"""Compute-optimal allocation: from a Chinchilla fit (Approach 3) or IsoFLOP curves (Approach 2).

Approach 3 (Hoffmann et al. 2022, §3.3, Eq. (4)), from a fitted L(N, D) = E + A/N^alpha + B/D^beta::

    N_opt(C) = G (C/6)^a,  D_opt(C) = G^-1 (C/6)^b,  a = beta/(alpha+beta),  b = alpha/(alpha+beta),
    G = (alpha A / (beta B))^(1/(alpha+beta))

Approach 2 (Hoffmann et al. 2022, §3.2): for each compute budget C, runs of several sizes N (and
D = C / (6N)); fit a parabola to the loss as a function of log N,

    L ~ p2 (log N)^2 + p1 log N + p0,   log N_opt(C) = -p1 / (2 p2),

refusing a curve that is not convex (p2 <= 0) or whose minimum is not strictly inside the sampled
range of log N (the minimum would be an extrapolation); then fit log N_opt = log k + a log C by
least squares across budgets, and D_opt = C / (6 N_opt), so D_opt ~ C^(1 - a).
Runs belong to one budget when their C agree to a relative 1e-6.

>>> import numpy as np
>>> c = np.repeat([1e15, 1e16, 1e17], 5)
>>> n = np.concatenate([np.geomspace(0.1, 10, 5) * 1e5 * (k ** 0.5) for k in (1, 10, 100)])
>>> loss = 2 + 0.05 * (np.log(n) - np.log(1e5 * np.sqrt(c / 1e15))) ** 2
>>> round(isoflop_fit(c, n, loss).a, 6)
0.5
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from refllm.scaling.fit._data import positive_finite, same_length
from refllm.scaling.fit.laws import chinchilla_allocation
from refllm.scaling.fit.result import FitResult


@dataclass
class Allocation:
    """N_opt and D_opt at each compute C; the ``*_ci`` pairs are bootstrap percentile intervals."""

    C: np.ndarray
    N_opt: np.ndarray
    D_opt: np.ndarray
    a: float  # N_opt ~ C^a
    b: float  # D_opt ~ C^b
    G: float
    N_ci: tuple[np.ndarray, np.ndarray] | None = None
    D_ci: tuple[np.ndarray, np.ndarray] | None = None


def compute_optimal(fit: FitResult, C: ArrayLike) -> Allocation:
    """The compute-optimal (N, D) of a Chinchilla fit at compute ``C`` (FLOPs, C = 6 N D)."""
    if not isinstance(fit, FitResult) or fit.law != "chinchilla":
        raise ValueError(f"fit must be a FitResult of fit_chinchilla, got "
                         f"{getattr(fit, 'law', type(fit).__name__)!r}")
    if fit.confounded:
        raise ValueError("fit: its runs move N and D together (D ~ N^"
                         f"{fit.confounded['slope']:.3g}), so the split between A / N^alpha and "
                         "B / D^beta, and with it the compute-optimal allocation, is undetermined"
                         "; fit runs that vary D at fixed N (an IsoFLOP ladder)")
    c = positive_finite("C", np.atleast_1d(C))
    p = fit.params
    n_opt, d_opt = chinchilla_allocation(c, p["A"], p["B"], p["alpha"], p["beta"])
    s = p["alpha"] + p["beta"]
    g = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / s)
    out = Allocation(C=c, N_opt=n_opt, D_opt=d_opt, a=p["beta"] / s, b=p["alpha"] / s, G=g)
    if fit.replicates is not None:
        _, a, b, al, be = (fit.replicates[:, i, None] for i in range(5))
        with np.errstate(all="ignore"):  # a replicate with alpha = beta = 0 has no allocation
            n_r, d_r = chinchilla_allocation(c, a, b, al, be)  # type: ignore[arg-type]  # arrays
        q = [(1 - fit.level) / 2, (1 + fit.level) / 2]
        n_lo, n_hi = np.nanquantile(n_r, q, axis=0)
        d_lo, d_hi = np.nanquantile(d_r, q, axis=0)
        out.N_ci, out.D_ci = (n_lo, n_hi), (d_lo, d_hi)
    return out


@dataclass
class IsoFLOPResult:
    """Approach 2: per-budget minima and the fitted N_opt = k C^a."""

    budgets: np.ndarray  # (m,) compute budgets
    N_opt: np.ndarray  # (m,) parabola minima
    L_opt: np.ndarray  # (m,) loss at the minima
    a: float
    k: float

    @property
    def b(self) -> float:
        """D_opt = C / (6 N_opt) ~ C^(1 - a)."""
        return 1.0 - self.a

    def predict_n_opt(self, C: ArrayLike) -> np.ndarray:
        return self.k * positive_finite("C", np.atleast_1d(C)) ** self.a

    def table(self) -> str:
        rows = [f"N_opt = {self.k:.4g} * C^{self.a:.4f}   (D_opt ~ C^{self.b:.4f})",
                f"  {'C':>10} {'N_opt':>12} {'L_opt':>10}"]
        rows += [f"  {c:>10.3g} {n:>12.4g} {lo:>10.5g}"
                 for c, n, lo in zip(self.budgets, self.N_opt, self.L_opt)]
        return "\n".join(rows)


def parabola_minimum(log_n: np.ndarray, loss: np.ndarray, budget: float) -> tuple[float, float]:
    """(log N_opt, L_opt) of the parabola through one IsoFLOP curve; ValueError if not interior."""
    if len(np.unique(log_n)) < 3:
        raise ValueError(f"N: the IsoFLOP curve at C={budget:.4g} needs >= 3 distinct sizes, "
                         f"got {len(np.unique(log_n))}")
    p2, p1, p0 = np.polyfit(log_n, loss, 2)
    if not p2 > 0:
        raise ValueError(f"L: the IsoFLOP curve at C={budget:.4g} is not convex in log N "
                         f"(quadratic coefficient {p2:.3g}); it has no minimum")
    x = -p1 / (2 * p2)
    if not log_n.min() < x < log_n.max():
        raise ValueError(
            f"N: the IsoFLOP minimum at C={budget:.4g} lies at N={np.exp(x):.4g}, outside the "
            f"sampled range [{np.exp(log_n.min()):.4g}, {np.exp(log_n.max()):.4g}]; sample "
            f"sizes on both sides of the optimum")
    return float(x), float(p0 + p1 * x + p2 * x * x)


def isoflop_fit(C: ArrayLike, N: ArrayLike, L: ArrayLike) -> IsoFLOPResult:
    """Hoffmann et al.'s Approach 2 from runs (C, N, L): see the module docstring."""
    c, n, loss = positive_finite("C", C), positive_finite("N", N), positive_finite("L", L)
    same_length(C=c, N=n, L=loss)
    order = np.argsort(c)
    gaps = np.diff(np.log(c[order])) > 1e-6
    group = np.empty(len(c), dtype=int)
    group[order] = np.concatenate([[0], np.cumsum(gaps)])
    budgets, x_opt, l_opt = [], [], []
    for g in range(group.max() + 1):
        sel = group == g
        budget = float(np.exp(np.mean(np.log(c[sel]))))
        x, lo = parabola_minimum(np.log(n[sel]), loss[sel], budget)
        budgets.append(budget)
        x_opt.append(x)
        l_opt.append(lo)
    if len(budgets) < 2:
        raise ValueError(f"C: N_opt ~ C^a needs >= 2 compute budgets, got {len(budgets)}")
    a, log_k = np.polyfit(np.log(budgets), x_opt, 1)
    return IsoFLOPResult(budgets=np.array(budgets), N_opt=np.exp(x_opt), L_opt=np.array(l_opt),
                         a=float(a), k=float(np.exp(log_k)))
