"""Least squares on log residuals for L(x) = E + A x^-alpha by variable projection.

Objective (case weights c_i; c = 1 for a plain fit, bootstrap counts for a replicate)::

    S(E, A, alpha) = sum_i c_i (log(E + A x_i^-alpha) - log L_i)^2,   E >= 0, A >= 0

Variable projection (Golub & Pereyra 1973; 2003 review, Inverse Problems 19 R1): for a fixed alpha
the model is linear in (E, A), so S is minimised over (E, A) by an inner solve and the outer search
runs over alpha alone, on the profile S*(alpha) = min_{E,A} S. The inner problem is linear in L
space but the residuals are in log space, so it is solved *exactly* (not by a weighted linear fit
whose optimum differs at second order in the noise): projected Gauss-Newton, started from the
relative-error fit min sum c ((E + A x - L)/L)^2. Linearising log p about p = E + A x, one step is
the weighted linear least-squares problem

    min_{E', A' >= 0} sum_i (c_i / p_i^2) (E' + A' x_i - t_i)^2,  t = p (1 - r),  r = log p - log L

solved in closed form (two variables, active set), with a half step where a full one does not lower
S. Residuals of a few per cent make each step gain about two digits. Sizes are centred
(x = N / N_ref, N_ref the geometric mean of N) so that x is O(1) in any units;
A = A_ref N_ref^alpha.

The outer search: a dense log-spaced grid over alpha in ALPHA_BOUNDS, then a bounded refinement in
the bracket around the best grid point -- scipy's bounded Brent (`minimize_scalar`, xatol 1e-12)
for one data set (the reference), and a golden-section search vectorised over all bootstrap
replicates at once (the fast version; tests check the two agree).
"""

from __future__ import annotations

import numpy as np

ALPHA_BOUNDS = (1e-3, 5.0)
GRID = np.geomspace(*ALPHA_BOUNDS, 97)  # steps of 9.3%
GN_STEPS = 50
GOLDEN_STEPS = 52  # 0.618^52 ~ 1.4e-11 of the bracket (~0.3 alpha): |d alpha| ~ 4e-12
XATOL = 1e-12


def wls_nonnegative(x: np.ndarray, t: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """argmin over E, A >= 0 of sum w (E + A x - t)^2 along the last axis (exact active set)."""
    s0, s1, s2 = w.sum(-1), (w * x).sum(-1), (w * x * x).sum(-1)
    t0, t1 = (w * t).sum(-1), (w * x * t).sum(-1)
    det = s0 * s2 - s1 * s1
    with np.errstate(divide="ignore", invalid="ignore"):
        e_free, a_free = (s2 * t0 - s1 * t1) / det, (s0 * t1 - s1 * t0) / det
        a_face, e_face = np.maximum(t1 / s2, 0.0), np.maximum(t0 / s0, 0.0)

    def cost(e: np.ndarray, a: np.ndarray) -> np.ndarray:
        return (w * (e[..., None] + a[..., None] * x - t) ** 2).sum(-1)

    free_ok = (e_free >= 0) & (a_free >= 0) & np.isfinite(e_free) & np.isfinite(a_free)
    zero = np.zeros_like(s0)
    take_a = cost(zero, a_face) <= cost(e_face, zero)  # convex QP: the optimum lies on a face
    e = np.where(free_ok, e_free, np.where(take_a, 0.0, e_face))
    a = np.where(free_ok, a_free, np.where(take_a, a_face, 0.0))
    return e, a


def _sse(e: np.ndarray, a: np.ndarray, x: np.ndarray, y: np.ndarray, c: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log(e[..., None] + a[..., None] * x) - y
    return np.where(np.isfinite(r), c * r * r, np.inf).sum(-1)


def inner_solve(alpha: np.ndarray, u: np.ndarray, y: np.ndarray, c: np.ndarray,
                steps: int = GN_STEPS) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(E, A, S, converged) at each alpha; alpha (...), u = log x, y = log L, c weights (..., n)."""
    x = np.exp(-alpha[..., None] * u)
    big = np.exp(y)
    e, a = wls_nonnegative(x, big + 0 * x, c / big**2 + 0 * x)
    f = _sse(e, a, x, y, c)
    done = np.zeros(f.shape, dtype=bool)
    for _ in range(steps):
        p = e[..., None] + a[..., None] * x
        with np.errstate(divide="ignore", invalid="ignore"):
            t = p * (1.0 - (np.log(p) - y))
        e1, a1 = wls_nonnegative(x, t, c / p**2)
        f1 = _sse(e1, a1, x, y, c)
        eh, ah = 0.5 * (e + e1), 0.5 * (a + a1)
        fh = _sse(eh, ah, x, y, c)
        full, half = f1 <= f, (f1 > f) & (fh <= f)
        e_new = np.where(full, e1, np.where(half, eh, e))
        a_new = np.where(full, a1, np.where(half, ah, a))
        scale = e_new + a_new
        done = (np.abs(e_new - e) + np.abs(a_new - a) <= 1e-13 * scale) | (f <= 1e-30) | (
            ~full & ~half)  # no step lowers S: converged to rounding
        e, a, f = e_new, a_new, np.minimum(f, np.minimum(f1, fh))
        if done.all():
            break
    return e, a, _sse(e, a, x, y, c), done


def bracket(f_grid: np.ndarray, width: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``width`` grid points either side of the best grid point of each row of ``f_grid``."""
    j = np.argmin(f_grid, axis=-1)
    return GRID[np.maximum(j - width, 0)], GRID[np.minimum(j + width, len(GRID) - 1)]


def profile_grid(u: np.ndarray, y: np.ndarray, c: np.ndarray) -> np.ndarray:
    """S*(alpha) on GRID for each weight row: c (..., n) -> (..., k), to locate the bracket.

    Two Gauss-Newton steps: the profile is then exact to far below the differences between
    grid points (the start is already within O(noise^2)); the bracket spans two grid points
    either side of the best one, so an error of one grid point still brackets the minimum."""
    return inner_solve(GRID, u, y, c[..., None, :], steps=2)[2]


def golden_section(u: np.ndarray, y: np.ndarray, c: np.ndarray, lo: np.ndarray,
                   hi: np.ndarray) -> np.ndarray:
    """The minimiser of S*(alpha) in [lo, hi] for every weight row c (R, n), all at once."""
    g = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = lo.copy(), hi.copy()
    x1, x2 = b - g * (b - a), a + g * (b - a)
    f1, f2 = inner_solve(x1, u, y, c)[2], inner_solve(x2, u, y, c)[2]
    for _ in range(GOLDEN_STEPS):
        left = f1 <= f2  # the minimum lies in [a, x2]
        a, b = np.where(left, a, x1), np.where(left, x2, b)
        x_new = np.where(left, b - g * (b - a), a + g * (b - a))
        f_new = inner_solve(x_new, u, y, c)[2]
        x1, x2, f1, f2 = (np.where(left, x_new, x2), np.where(left, x1, x_new),
                          np.where(left, f_new, f2), np.where(left, f1, f_new))
    return np.where(f1 <= f2, x1, x2)


def brent(u: np.ndarray, y: np.ndarray, lo: float, hi: float) -> tuple[float, bool]:
    """The reference refinement: scipy's bounded Brent on S*(alpha) in [lo, hi], one data set."""
    from scipy.optimize import minimize_scalar

    c = np.ones_like(y)
    res = minimize_scalar(lambda al: float(inner_solve(np.array(al), u, y, c)[2]),
                          bounds=(lo, hi), method="bounded",
                          options={"xatol": XATOL, "maxiter": 2000})
    return float(res.x), bool(res.success)
