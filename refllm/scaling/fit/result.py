"""The result of a scaling-law fit: parameters, intervals, diagnostics, predictions.

>>> from refllm.scaling.fit import fit_power_law
>>> fit = fit_power_law([1e3, 1e4, 1e5, 1e6], [3.0, 2.0, 1.5, 1.25], bootstrap=0)
>>> round(fit.params["E"], 6), round(fit.params["alpha"], 6)
(1.0, 0.30103)
>>> [round(float(v), 6) for v in fit.predict([1e7])]
[1.125]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from refllm._validation import choice_error, require_int, require_real
from refllm.scaling.fit import bootstrap as _bootstrap
from refllm.scaling.fit._data import positive_finite, same_length
from refllm.scaling.fit.laws import chinchilla_log_loss

PARAMS = {"saturating": ("E", "A", "alpha"), "power": ("A", "alpha"),
          "chinchilla": ("E", "A", "B", "alpha", "beta")}
FORMULAS = {"saturating": "L({x}) = E + A * {x}^-alpha", "power": "L({x}) = A * {x}^-alpha",
            "chinchilla": "L(N, D) = E + A / N^alpha + B / D^beta"}


MIN_REPLICATES = 200  # a bootstrap of fewer replicates gives unstable 90% percentile intervals


def check_options(bootstrap: int, level: float, rng: int | np.random.Generator
                  ) -> np.random.Generator:
    """Validate the shared keyword arguments; return the numpy Generator."""
    require_int("bootstrap", bootstrap, low=0)
    if 0 < bootstrap < MIN_REPLICATES:
        raise ValueError(f"bootstrap must be 0 (no intervals) or >= {MIN_REPLICATES}, "
                         f"got {bootstrap}")
    require_real("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(require_int("rng", rng, low=0))


def r2_log(residuals: np.ndarray, y: np.ndarray) -> float:
    """R^2 of log L: 1 - SS_res / SS_tot (1.0 for a perfect fit of constant data)."""
    ss_res, ss_tot = float(np.sum(residuals**2)), float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0.0:
        return 1.0 if ss_res == 0.0 else 0.0
    return 1.0 - ss_res / ss_tot


E_COLLAPSE_FRACTION = 0.02
"""E below this fraction of the smallest observed loss is "collapsed": no loss of a language model
is that close to its floor, so the fit has traded the floor for a steeper power (the small sizes
leave E undetermined), and its extrapolations are optimistic."""


def collapsed_params(params: dict[str, float], on_bound: dict[str, bool],
                     loss: np.ndarray) -> tuple[str, ...]:
    """The irreducible loss E when the data leave it undetermined: on its bound, or below
    `E_COLLAPSE_FRACTION` of the smallest loss. (E is fitted in log space by the Chinchilla
    fitter, so it nears zero without ever touching its bound.)"""
    if "E" not in params:
        return ()
    if on_bound.get("E") or params["E"] < E_COLLAPSE_FRACTION * float(np.min(loss)):
        return ("E",)
    return ()


CONFOUNDED_FRACTION = 1e-3
"""log D is "confounded" with log N when a straight line in log N explains all but this fraction of
its variance (1 - r^2): runs at a fixed tokens-per-parameter ratio (Cerebras-GPT's 20, say) move N
and D together, so the Chinchilla law can put the loss's fall on A / N^alpha or on B / D^beta
alike: only their sum along that line is determined, not the split, the exponents or the allocation
``compute_optimal`` derives from them."""

CONFOUNDED = ("A", "B", "alpha", "beta")


def confounded_sizes(n: np.ndarray, d: np.ndarray) -> dict[str, float]:
    """{} when N and D vary independently enough; else the fitted D ~ N^slope and 1 - r^2."""
    u, v = np.log(n), np.log(d)
    r = float(np.corrcoef(u, v)[0, 1])
    if not 1.0 - r * r < CONFOUNDED_FRACTION:
        return {}
    return {"slope": float(np.polyfit(u, v, 1)[0]), "one_minus_r2": 1.0 - r * r}


def log_model(law: str, theta: np.ndarray, x: np.ndarray, d: np.ndarray | None = None
              ) -> np.ndarray:
    """log L for parameter rows ``theta`` (..., p) in PARAMS order at sizes x (m,) -> (..., m)."""
    theta = np.asarray(theta, dtype=np.float64)
    col = [theta[..., i, None] for i in range(theta.shape[-1])]
    lx = np.log(x)
    with np.errstate(divide="ignore"):  # log 0 = -inf for a parameter on its bound 0
        if law == "power":
            return np.log(col[0]) - col[1] * lx
        if law == "saturating":
            return np.logaddexp(np.log(col[0]), np.log(col[1]) - col[2] * lx)
        if law == "chinchilla":
            if d is None:
                raise ValueError("d: the chinchilla law needs the data sizes D, got None")
            return chinchilla_log_loss(lx, np.log(d), np.log(col[0]), np.log(col[1]),
                                       np.log(col[2]), col[3], col[4])
    raise choice_error("law", law, sorted(PARAMS))


@dataclass
class FitResult:
    """A fitted law. ``residuals`` are log L_pred - log L_obs per point; ``cis`` are percentile
    bootstrap intervals at ``level`` (empty without bootstrap); ``replicates`` (R, p) are the
    refitted parameters of every bootstrap replicate, in ``params`` order."""

    law: str  # "saturating" | "power" | "chinchilla"
    variable: str  # "N", "D", "C" (1-D laws) or "N,D"
    params: dict[str, float]
    cis: dict[str, tuple[float, float]]
    level: float
    n_points: int
    residuals: np.ndarray
    r2_log: float
    on_bound: dict[str, bool]
    converged: bool
    method: str
    replicates: np.ndarray | None = field(default=None, repr=False)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    collapsed: tuple[str, ...] = ()  # parameters the data leave undetermined (`collapsed_params`)
    confounded: dict[str, float] = field(default_factory=dict)  # `confounded_sizes`, Chinchilla

    def warnings(self) -> list[str]:
        """What makes this fit untrustworthy, one sentence each (empty when nothing does)."""
        out = []
        if self.collapsed:
            out.append(f"{', '.join(self.collapsed)} collapsed ({self.params['E']:.4g}, below "
                       f"{E_COLLAPSE_FRACTION:.0%} of the smallest loss or on its bound): these "
                       f"runs do not determine it, and predictions beyond them are optimistic; "
                       f"add runs where the loss flattens, or fit with --pure and say so")
        if self.confounded:
            out.append(f"N and D move together in these runs (D ~ N^"
                       f"{self.confounded['slope']:.3g}, 1 - r^2 = "
                       f"{self.confounded['one_minus_r2']:.1e} of log D on log N): the fit "
                       f"cannot tell A / N^alpha from B / D^beta, so {', '.join(CONFOUNDED)} and "
                       f"any compute-optimal allocation are undetermined; only the loss along "
                       f"that line is. Vary D at fixed N (an IsoFLOP ladder), or fit L(N) or L(C)")
        return out

    @property
    def theta(self) -> np.ndarray:
        return np.array([self.params[k] for k in PARAMS[self.law]])

    def _sizes(self, x: ArrayLike, d: ArrayLike | None) -> tuple[np.ndarray, np.ndarray | None]:
        x = positive_finite(self.variable.split(",")[0], np.atleast_1d(x))
        if self.law != "chinchilla":
            if d is not None:
                raise ValueError(f"D must be None for the 1-D law in {self.variable}")
            return x, None
        if d is None:
            raise ValueError("D is needed to predict with the Chinchilla law L(N, D)")
        d = positive_finite("D", np.atleast_1d(d))
        same_length(N=x, D=d)
        return x, d

    def predict(self, x: ArrayLike, d: ArrayLike | None = None) -> np.ndarray:
        """The fitted loss at sizes ``x`` (N, D or C; with ``d`` = D for the Chinchilla law)."""
        x, d = self._sizes(x, d)
        return np.exp(log_model(self.law, self.theta, x, d))

    def prediction_interval(self, x: ArrayLike, level: float | None = None,
                            d: ArrayLike | None = None, *, n_runs: int = 1,
                            rng: int | np.random.Generator = 0) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) for the mean loss of ``n_runs`` new runs at ``x`` (see bootstrap.py)."""
        if self.replicates is None:
            raise ValueError("prediction_interval needs a fit with bootstrap > 0")
        x, d = self._sizes(x, d)
        level = self.level if level is None else level
        if not 0 < level < 1:
            raise ValueError(f"level must lie in (0, 1), got {level!r}")
        if n_runs < 1:
            raise ValueError(f"n_runs must be >= 1, got {n_runs!r}")
        log_pred = log_model(self.law, self.replicates, x, d)
        return _bootstrap.prediction_interval(log_pred, self.residuals, len(self.params), level,
                                              n_runs, np.random.default_rng(rng))

    def table(self) -> str:
        """A plain-text table: formula, parameters with CIs, diagnostics."""
        formula = FORMULAS[self.law].format(x=self.variable)
        pct = f"{100 * self.level:g}% CI"
        lines = [f"{formula}   ({self.method})", f"  {'param':<6} {'value':>12}  {pct:>27}"]
        for k, v in self.params.items():
            lo, hi = self.cis.get(k, (float("nan"), float("nan")))
            ci = f"[{lo:.5g}, {hi:.5g}]" if k in self.cis else "-"
            flag = "  (on bound)" if self.on_bound.get(k) else ""
            for why in (["collapsed: undetermined by these data)"] if k in self.collapsed else []
                        ) + (["confounded: N and D move together)"] if self.confounded
                             and k in CONFOUNDED else []):
                flag = (flag[:-1] + "; " if flag else "  (") + why
            lines.append(f"  {k:<6} {v:>12.6g}  {ci:>27}{flag}")
        rms = float(np.sqrt(np.mean(self.residuals**2)))
        lines.append(f"  points {self.n_points}, R^2(log L) {self.r2_log:.5f}, rms log residual "
                     f"{rms:.4g}, converged {self.converged}")
        return "\n".join(lines)

    summary = table

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (no replicates)."""
        return json.loads(json.dumps({
            "law": self.law, "variable": self.variable, "formula":
            FORMULAS[self.law].format(x=self.variable), "params": self.params,
            "cis": {k: list(v) for k, v in self.cis.items()}, "level": self.level,
            "n_points": self.n_points, "residuals": self.residuals.tolist(),
            "r2_log": self.r2_log, "on_bound": self.on_bound, "converged": self.converged,
            "collapsed": list(self.collapsed), "confounded": self.confounded,
            "warnings": self.warnings(),
            "method": self.method, "bootstrap": 0 if self.replicates is None
            else len(self.replicates), "diagnostics": self.diagnostics}, default=float))
