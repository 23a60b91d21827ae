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
from refllm.scaling.fit.result import FitResult, check_options


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
    """Approach 2: per-budget minima and the fitted N_opt = k C^a (and D_opt ~ C^b)."""

    budgets: np.ndarray  # (m,) compute budgets
    N_opt: np.ndarray  # (m,) parabola minima
    L_opt: np.ndarray  # (m,) loss at the minima
    a: float
    k: float
    D_opt: np.ndarray | None = None  # (m,) tokens at the minima, when the runs' D were given
    b_fit: float | None = None       # the fitted exponent of D_opt ~ C^b (with D)
    level: float = 0.9
    a_ci: tuple[float, float] | None = None  # bootstrap percentile intervals
    b_ci: tuple[float, float] | None = None
    replicates: np.ndarray | None = None  # (r, 2): a and b of the replicates that kept minima
    replicates_ok: float = 1.0            # the share of replicates whose every curve had one

    @property
    def b(self) -> float:
        """D_opt ~ C^b: fitted when D was given, else 1 - a (C = 6 N D)."""
        return 1.0 - self.a if self.b_fit is None else self.b_fit

    def predict_n_opt(self, C: ArrayLike) -> np.ndarray:
        return self.k * positive_finite("C", np.atleast_1d(C)) ** self.a

    def table(self) -> str:
        def ci(v: float, c: tuple[float, float] | None) -> str:
            return f"{v:.4f}" + ("" if c is None else f" [{c[0]:.4f}, {c[1]:.4f}]")

        rows = [f"N_opt = {self.k:.4g} * C^a, a = {ci(self.a, self.a_ci)};  D_opt ~ C^b, "
                f"b = {ci(self.b, self.b_ci)}"
                + ("" if self.a_ci is None else f"   ({100 * self.level:g}% bootstrap CIs)"),
                f"  {'C':>10} {'N_opt':>12} {'D_opt':>12} {'L_opt':>10}"]
        d_opt = self.D_opt if self.D_opt is not None else self.budgets / (6 * self.N_opt)
        rows += [f"  {c:>10.3g} {n:>12.4g} {d:>12.4g} {lo:>10.5g}"
                 for c, n, d, lo in zip(self.budgets, self.N_opt, d_opt, self.L_opt)]
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


def budget_groups(C: np.ndarray) -> np.ndarray:
    """Index of each run's budget (0 = the smallest); runs within a relative 1e-6 share one."""
    order = np.argsort(C)
    gaps = np.diff(np.log(C[order])) > 1e-6
    group = np.empty(len(C), dtype=int)
    group[order] = np.concatenate([[0], np.cumsum(gaps)])
    return group


def _minima(groups: list[tuple[float, np.ndarray, np.ndarray | None, np.ndarray]],
            loss: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """log N_opt, L_opt and log D_opt of each budget's curve."""
    x_opt, l_opt, d_opt = [], [], []
    for (budget, log_n, log_d, _), y in zip(groups, loss):
        x, lo = parabola_minimum(log_n, y, budget)
        x_opt.append(x)
        l_opt.append(lo)
        if log_d is not None:  # log D is linear in log N between sampled sizes
            order = np.argsort(log_n)
            d_opt.append(float(np.interp(x, log_n[order], log_d[order])))
    return np.array(x_opt), np.array(l_opt), (np.array(d_opt) if d_opt else None)


def isoflop_fit(C: ArrayLike, N: ArrayLike, L: ArrayLike, D: ArrayLike | None = None, *,
                bootstrap: int = 0, level: float = 0.9,
                rng: int | np.random.Generator = 0) -> IsoFLOPResult:
    """Hoffmann et al.'s Approach 2 from runs (C, N, L): see the module docstring.

    ``D``: the runs' tokens. Then D_opt at each budget is read off the runs (log D interpolated in
    log N at the minimum) and b fitted, instead of assuming C = 6 N D (b = 1 - a).
    ``bootstrap``: replicates of a residual bootstrap within each curve (each parabola's
    residuals, scaled by sqrt(n / (n - 3)), resampled onto its fitted values), giving ``a_ci`` and
    ``b_ci``; a replicate in which some curve loses its interior minimum is dropped, and the share
    kept is ``replicates_ok``.
    """

    c, n, loss = positive_finite("C", C), positive_finite("N", N), positive_finite("L", L)
    d = None if D is None else positive_finite("D", D)
    same_length(C=c, N=n, L=loss, D=d)
    gen = check_options(bootstrap, level, rng)
    group = budget_groups(c)
    if group.max() + 1 < 2:
        raise ValueError(f"C: N_opt ~ C^a needs >= 2 compute budgets, got {group.max() + 1}")
    groups = [(float(np.exp(np.mean(np.log(c[group == g])))), np.log(n[group == g]),
               None if d is None else np.log(d[group == g]), loss[group == g])
              for g in range(group.max() + 1)]
    ys = [g[3] for g in groups]
    x_opt, l_opt, d_opt = _minima(groups, ys)
    log_c = np.log([g[0] for g in groups])
    a, log_k = np.polyfit(log_c, x_opt, 1)
    b = None if d_opt is None else float(np.polyfit(log_c, d_opt, 1)[0])
    out = IsoFLOPResult(budgets=np.exp(log_c), N_opt=np.exp(x_opt), L_opt=l_opt, a=float(a),
                        k=float(np.exp(log_k)), D_opt=None if d_opt is None else np.exp(d_opt),
                        b_fit=b, level=level)
    if bootstrap:
        fitted, resid = [], []
        for _, log_n, _, y in groups:
            coef = np.polyfit(log_n, y, 2)
            fitted.append(np.polyval(coef, log_n))
            r = y - fitted[-1]
            resid.append(r * np.sqrt(len(y) / max(len(y) - 3, 1)))
        reps = []
        for _ in range(bootstrap):
            ys_r = [f + gen.choice(r, size=len(r)) for f, r in zip(fitted, resid)]
            try:
                x_r, _, d_r = _minima(groups, ys_r)
            except ValueError:
                continue
            reps.append((np.polyfit(log_c, x_r, 1)[0],
                         np.nan if d_r is None else np.polyfit(log_c, d_r, 1)[0]))
        out.replicates_ok = len(reps) / bootstrap
        if reps:
            out.replicates = np.array(reps)
            q = [(1 - level) / 2, (1 + level) / 2]
            lo, hi = np.quantile(out.replicates[:, 0], q)
            out.a_ci = (float(lo), float(hi))
            if d_opt is not None:
                lo, hi = np.quantile(out.replicates[:, 1], q)
                out.b_ci = (float(lo), float(hi))
    return out
