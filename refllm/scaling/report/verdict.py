"""The verdict "loss follows a power law in N" for a ladder of runs (its rules, fixed here).

Rules, evaluated in order (thresholds are module constants, fixed before any run):

1. every run is finite and not diverged (a non-finite or non-positive loss counts as diverged);
2. the seed-mean loss falls strictly with N;
3. the law L = E + A N^-alpha fitted WITHOUT the largest size has R^2 of log L >= R2_MIN[preset];
4. no systematic curvature: a score test for an extra term gamma (log N - mean)^2 in log L (the
   linearised extra-sum-of-squares F-test of Bates & Watts 1988, §3.5; here a t-test): q = the
   centred (log N)^2 with the span of the fit's log-space Jacobian projected out (the E column is
   left out when E sits on its bound 0, where the law cannot bend that way),
   gamma = q.r / q.q, s^2 = (r.r - (q.r)^2/q.q) / (n - p - 1), t = gamma / sqrt(s^2 / q.q);
   passes when the two-sided p-value >= CURVATURE_P_MIN;
5. the largest size's seed-mean loss is predicted within HOLDOUT_ERROR[preset] (relative) ...
6. ... and lies inside the PREDICTION_LEVEL prediction interval for the mean of its seeds;
7. the bootstrap ALPHA_CI_LEVEL interval of alpha lies inside ALPHA_CI_BOUNDS (open);
8. the irreducible loss E is determined: not collapsed onto its bound or below
   `refllm.scaling.fit.result.E_COLLAPSE_FRACTION` of the smallest loss (such a fit trades the
   floor for a steeper power, and its extrapolations are optimistic).

A rule that cannot be evaluated (the runs were not all finite) fails. Alpha is not compared with a
published value: the data and the regime differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from refllm._validation import require_choice
from refllm.scaling.fit._data import positive_finite, same_length
from refllm.scaling.fit.result import E_COLLAPSE_FRACTION, FitResult

R2_MIN = {"cpu": 0.98, "gpu": 0.995}
HOLDOUT_ERROR = {"cpu": 0.04, "gpu": 0.015}
ALPHA_CI_BOUNDS = (0.02, 1.5)
ALPHA_CI_LEVEL = 0.90
PREDICTION_LEVEL = 0.95
CURVATURE_P_MIN = 0.01
BOOTSTRAP = 1000


@dataclass
class Rule:
    name: str
    passed: bool
    value: str
    threshold: str


@dataclass
class Verdict:
    """Each rule's outcome; ``passed`` is True when every rule passed."""

    preset: str
    rules: list[Rule]
    fit: FitResult | None = None
    details: dict[str, Any] = field(default_factory=dict)
    claims: tuple[str, str] = ("loss follows a power law", "NOT shown to follow a power law")

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rules)

    def __bool__(self) -> bool:
        return self.passed

    def rule(self, name: str) -> Rule:
        return next(r for r in self.rules if r.name == name)

    def table(self) -> str:
        w = max(len(r.name) for r in self.rules)
        lines = [f"  {'rule':<{w}}  {'result':<6}  {'measured':<24}  required"]
        lines += [f"  {r.name:<{w}}  {'pass' if r.passed else 'FAIL':<6}  {r.value:<24}  "
                  f"{r.threshold}" for r in self.rules]
        head = self.claims[0] if self.passed else self.claims[1]
        return f"verdict ({self.preset} preset): {head}\n" + "\n".join(lines)

    __str__ = table

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "passed": self.passed, "details": self.details,
                "rules": [vars(r) for r in self.rules]}


def curvature_test(fit: FitResult, n: np.ndarray) -> tuple[float, float]:
    """(gamma, two-sided p-value) of the score test for gamma (log N - mean)^2 (rule 4)."""
    from scipy.stats import t as student_t

    u = np.log(n) - np.mean(np.log(n))
    p = fit.params
    x = np.exp(-p["alpha"] * u)
    pred = fit.predict(n)
    cols = [x / pred, x * u / pred] + ([] if p["E"] == 0.0 else [1.0 / pred])
    jac = np.column_stack(cols)
    q = (u - u.mean()) ** 2
    q = q - jac @ np.linalg.lstsq(jac, q, rcond=None)[0]
    r, dof = fit.residuals, len(n) - len(cols) - 1
    qq = float(q @ q)
    if dof < 1 or qq <= 1e-12 * float(np.sum(u**4)):
        raise ValueError(f"N: the curvature test needs more sizes than {len(cols) + 1}")
    gamma = float(q @ r) / qq
    s2 = max(float(r @ r) - gamma**2 * qq, 0.0) / dof
    if s2 == 0.0:
        return gamma, 1.0 if gamma == 0.0 else 0.0
    tval = gamma / np.sqrt(s2 / qq)
    return gamma, float(2 * student_t.sf(abs(tval), dof))


def _inputs(N: ArrayLike, L: ArrayLike, seeds: ArrayLike | None, diverged: ArrayLike | None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    n = positive_finite("N", N)
    loss = np.asarray(L, dtype=np.float64)
    bad = np.zeros(len(loss), dtype=bool) if diverged is None else np.asarray(diverged, bool)
    s = None if seeds is None else np.asarray(seeds)
    same_length(N=n, L=loss, seeds=s, diverged=bad)
    if len(np.unique(n)) < 5:
        raise ValueError(f"N: the verdict needs >= 5 distinct sizes (4 fitted, 1 held out), "
                         f"got {len(np.unique(n))}")
    return n, loss, s, bad | ~np.isfinite(loss) | ~(loss > 0)


def power_law_verdict(N: ArrayLike, L: ArrayLike, seeds: ArrayLike | None = None, *,
                      diverged: ArrayLike | None = None, preset: str = "cpu",
                      holdout: str = "largest", bootstrap: int = BOOTSTRAP,
                      rng: int | np.random.Generator = 0) -> Verdict:
    """Judge runs (one per point: size N, final loss L, seed id) by the rules above."""
    from refllm.scaling.fit import fit_power_law

    require_choice("preset", preset, sorted(R2_MIN))
    if holdout != "largest":
        raise ValueError(f"holdout must be 'largest', got {holdout!r}")
    n, loss, seeds_, bad = _inputs(N, L, seeds, diverged)
    r2_min, err_max = R2_MIN[preset], HOLDOUT_ERROR[preset]
    lo_a, hi_a = ALPHA_CI_BOUNDS
    wants = [("loss falls with N", "strictly, seed means"), ("R^2 of log L", f">= {r2_min}"),
             ("no curvature", f"p >= {CURVATURE_P_MIN}"), ("held-out error", f"<= {err_max:.1%}"),
             ("held-out in PI", f"{PREDICTION_LEVEL:.0%} PI"),
             ("alpha CI", f"{ALPHA_CI_LEVEL:.0%} CI in ({lo_a}, {hi_a})"),
             ("E determined", f">= {E_COLLAPSE_FRACTION:.0%} of the smallest loss")]
    rules = [Rule("runs finite", not bad.any(), f"{int(bad.sum())} of {len(n)} bad", "0 bad")]
    if bad.any():
        rules += [Rule(name, False, "not evaluated", want) for name, want in wants]
        return Verdict(preset, rules)
    sizes, inv = np.unique(n, return_inverse=True)
    means = np.bincount(inv, weights=loss) / np.bincount(inv)
    ratio = float(np.max(means[1:] / means[:-1]))
    rules.append(Rule(wants[0][0], ratio < 1.0, f"max ratio {ratio:.4f}", "ratio < 1"))
    keep = n < sizes[-1]
    fit = fit_power_law(n[keep], loss[keep], seeds=None if seeds_ is None else seeds_[keep],
                        bootstrap=bootstrap, level=ALPHA_CI_LEVEL, rng=rng)
    rules.append(Rule(wants[1][0], fit.r2_log >= r2_min, f"{fit.r2_log:.5f}", wants[1][1]))
    gamma, p_curv = curvature_test(fit, n[keep])
    rules.append(Rule(wants[2][0], p_curv >= CURVATURE_P_MIN,
                      f"gamma {gamma:+.3g}, p {p_curv:.3g}", wants[2][1]))
    held, m = float(means[-1]), int(np.sum(~keep))
    pred = float(fit.predict(sizes[-1])[0])
    err = pred / held - 1.0
    rules.append(Rule(wants[3][0], abs(err) <= err_max, f"{err:+.2%}", wants[3][1]))
    lo, hi = (float(v[0]) for v in fit.prediction_interval(sizes[-1], PREDICTION_LEVEL,
                                                           n_runs=m, rng=rng))
    rules.append(Rule(wants[4][0], lo <= held <= hi, f"{held:.4g} in [{lo:.4g}, {hi:.4g}]",
                      wants[4][1]))
    a_lo, a_hi = fit.cis["alpha"]
    rules.append(Rule(wants[5][0], lo_a < a_lo and a_hi < hi_a, f"[{a_lo:.3g}, {a_hi:.3g}]",
                      wants[5][1]))
    e_value = f"E {fit.params['E']:.4g}" + (" (collapsed)" if fit.collapsed else "")
    rules.append(Rule(wants[6][0], "E" not in fit.collapsed, e_value, wants[6][1]))
    details = {"held_out_N": float(sizes[-1]), "held_out_loss": held, "predicted": pred,
               "prediction_interval": [lo, hi], "curvature_gamma": gamma,
               "curvature_p": p_curv, "fit": fit.to_dict()}
    return Verdict(preset, rules, fit, details)
