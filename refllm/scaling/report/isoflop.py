"""The report of an IsoFLOP ladder, rebuilt from its records: two approaches, a frontier, a verdict.

From the "run" records of an IsoFLOP preset (`refllm.scaling.sweep.presets`; each run carries its
``budget`` C, its non-embedding N, the tokens D it saw and its final validation loss):

- **Approach 2** (Hoffmann et al. 2022, §3.2; `refllm.scaling.fit.isoflop_fit`): a parabola in
  log N per budget, its minimum N_opt(C), then N_opt = k C^a and D_opt ~ C^b by least squares
  across budgets, with residual-bootstrap intervals.
- **Approach 3** (§3.3; `refllm.scaling.fit.fit_chinchilla`): L(N, D) = E + A/N^alpha + B/D^beta
  fitted to every ladder run (Huber loss on log L), and the allocation it implies,
  a = beta / (alpha + beta), b = alpha / (alpha + beta), with intervals from its bootstrap.
- **The frontier** L_opt(C) = A C^-gamma through the parabola minima (a power law in C, two
  parameters): the loss at the compute-optimal size, as a function of compute.

The verdict's rules, evaluated in order, thresholds fixed here and in the preset before any run:

1. every run is finite and not diverged;
2. every budget's curve is convex in log N with its minimum strictly inside the sampled sizes;
3. the two approaches agree: their CI_LEVEL intervals of a overlap;
4. the Chinchilla fit's irreducible loss E is determined (not collapsed onto its bound);
5. the held-out run, trained after the fit at the preset's ``holdout_budget`` and the width
   whose N is nearest Approach 2's N_opt there, lands within the preset's pre-registered
   ``holdout_tolerance`` (relative) of the prediction the preset names in ``holdout_predictor``:
   ``"frontier"`` (L_opt at that budget) or ``"approach3"`` (L(N, D) at the run's N and D) ...
6. ... and inside the PREDICTION_LEVEL prediction interval of Approach 3's L(N, D) at its N and D.

Both point predictions are reported; the preset states before its runs which one is judged. Why
two: a pure power law in C cannot bend toward an irreducible loss, so close to E (as on
Chinchilla-like data) the frontier extrapolates too low, while on refllm's CPU ladder, far above
its floor, the Chinchilla form fits the runs to only 2.6% rms (short runs whose schedule length
follows D) and its point prediction missed a held-out run by 9.7% where the frontier's missed by
0.6% (docs/scaling.md, "IsoFLOP ladders").

Every file is written atomically (`refllm._io`): summary.json and four plots
(`refllm.scaling.report.isoflop_plots`).
"""

from __future__ import annotations

import json
import math
import pathlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from refllm._io import write_bytes_atomically
from refllm.scaling.report.verdict import Rule, Verdict

CI_LEVEL = 0.90
PREDICTION_LEVEL = 0.95
BOOTSTRAP_A2 = 1000          # Approach 2's residual bootstrap (cheap: parabolas)
BOOTSTRAP_A3 = 200           # Approach 3's (each replicate is a multi-start L-BFGS fit)
SUMMARY = "summary.json"
PLOTS = ("isoflop_curves.png", "allocation.png", "loss_contours.png", "frontier.png")
CLAIMS = ("the IsoFLOP ladder is consistent and predicts its held-out run",
          "NOT shown: the IsoFLOP ladder fails a rule")


def ladder_runs(runs: list[dict]) -> tuple[list[dict], list[dict]]:
    """(ladder runs, held-out runs) of an IsoFLOP ladder's run records."""
    missing = [r.get("run_id", i) for i, r in enumerate(runs) if "budget" not in r]
    if missing:
        raise ValueError(f"run records {missing[:3]} lack 'budget': they are not from an "
                         f"IsoFLOP preset")
    return ([r for r in runs if r.get("role", "ladder") == "ladder"],
            [r for r in runs if r.get("role") == "holdout"])


def _arrays(runs: list[dict]) -> dict[str, np.ndarray]:
    return {"C": np.array([float(r["budget"]) for r in runs]),
            "N": np.array([float(r["n_params_non_embedding"]) for r in runs]),
            "D": np.array([float(r["tokens"]) for r in runs]),
            "L": np.array([float(r["final_val_loss"]) for r in runs]),
            "seed": np.array([int(r["seed"]) for r in runs])}


@dataclass
class Analysis:
    """The fits of an IsoFLOP ladder; a fit that could not be made holds its error instead."""

    points: dict[str, np.ndarray]
    approach2: Any = None            # IsoFLOPResult
    approach3: Any = None            # FitResult of fit_chinchilla
    allocation3: dict[str, Any] = field(default_factory=dict)  # a, b and their intervals
    frontier: Any = None             # FitResult: L_opt(C) = A C^-gamma
    errors: dict[str, str] = field(default_factory=dict)

    def n_opt(self, budget: float) -> float:
        """Approach 2's N_opt at ``budget``."""
        if self.approach2 is None:
            raise ValueError(f"no N_opt: {self.errors.get('approach 2', 'no Approach 2 fit')}")
        return float(self.approach2.predict_n_opt(budget)[0])


def analyse(runs: list[dict], *, rng: int = 0, bootstrap2: int = BOOTSTRAP_A2,
            bootstrap3: int = BOOTSTRAP_A3) -> Analysis:
    """Approach 2, Approach 3 and the frontier of the ladder runs (no held-out run)."""
    from refllm.scaling.fit import fit_chinchilla, fit_power_law, isoflop_fit

    p = _arrays(runs)
    out = Analysis(points=p)
    try:
        out.approach2 = isoflop_fit(p["C"], p["N"], p["L"], p["D"], bootstrap=bootstrap2,
                                    level=CI_LEVEL, rng=rng)
    except ValueError as exc:
        out.errors["approach 2"] = str(exc)
    try:
        fit = fit_chinchilla(p["N"], p["D"], p["L"], seeds=p["seed"], bootstrap=bootstrap3,
                             level=CI_LEVEL, rng=rng)
        out.approach3 = fit
        q = fit.params
        s = q["alpha"] + q["beta"]
        out.allocation3 = {"a": q["beta"] / s, "b": q["alpha"] / s}
        if fit.replicates is not None:
            al, be = fit.replicates[:, 3], fit.replicates[:, 4]
            with np.errstate(all="ignore"):
                a_r, b_r = be / (al + be), al / (al + be)
            lev = [(1 - CI_LEVEL) / 2, (1 + CI_LEVEL) / 2]
            out.allocation3["a_ci"] = tuple(float(v) for v in np.nanquantile(a_r, lev))
            out.allocation3["b_ci"] = tuple(float(v) for v in np.nanquantile(b_r, lev))
    except ValueError as exc:
        out.errors["approach 3"] = str(exc)
    if out.approach2 is not None:
        a2 = out.approach2
        try:
            out.frontier = fit_power_law(a2.budgets, a2.L_opt, saturating=False, bootstrap=0,
                                         variable="C")
        except ValueError as exc:
            out.errors["frontier"] = str(exc)
    return out


def holdout_run(preset: Any, ladder: list[dict]) -> Any:
    """The held-out run of an IsoFLOP ``preset`` (a `refllm.scaling.sweep.runs.Run`): at
    ``holdout_budget``, the first seed, and the width of ``preset.widths`` whose N is nearest (in
    log N) Approach 2's N_opt there, fitted to the finished ``ladder`` run records.
    ValueError when Approach 2 has no answer (a curve without an interior minimum)."""
    from refllm.model import GPTConfig, parameter_count
    from refllm.scaling.fit import isoflop_fit
    from refllm.scaling.sweep.runs import make_run

    p = _arrays(ladder)
    fit = isoflop_fit(p["C"], p["N"], p["L"], p["D"])
    target = math.log(float(fit.predict_n_opt(preset.holdout_budget)[0]))

    def distance(d: int) -> float:
        model = preset.train_config(d, 0, preset.holdout_budget).model_dict(256)
        return abs(math.log(parameter_count(GPTConfig.from_dict(model), non_embedding=True))
                   - target)

    width = min(preset.widths, key=distance)
    return make_run(preset, width, preset.seeds[0], preset.holdout_budget, role="holdout")


def _interval(ci: Any) -> str:
    return "-" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def isoflop_verdict(analysis: Analysis, holdout: dict | None, preset: Any,
                    *, bad: int = 0, rng: int = 0) -> Verdict:
    """The rules of the module docstring; ``bad``: ladder runs that diverged or are not finite."""
    tol = preset.holdout_tolerance
    p = analysis.points
    wants = [("interior minima", "every budget"), ("a agrees (A2 vs A3)",
                                                   f"{CI_LEVEL:.0%} CIs overlap"),
             ("E determined", "not collapsed"),
             ("held-out error", f"<= {tol:.1%} of {preset.holdout_predictor}"),
             ("held-out in PI", f"{PREDICTION_LEVEL:.0%} PI of approach3")]
    n_runs = len(p["L"]) + (holdout is not None)
    rules = [Rule("runs finite", bad == 0, f"{bad} of {n_runs} bad", "0 bad")]
    if bad:
        return Verdict(preset.name, rules + [Rule(n, False, "not evaluated", w) for n, w in wants],
                       claims=CLAIMS)
    a2, a3, alloc = analysis.approach2, analysis.approach3, analysis.allocation3
    n_budgets = len(np.unique(p["C"]))
    rules.append(Rule(wants[0][0], a2 is not None,
                      f"{n_budgets} of {n_budgets}" if a2 is not None else
                      analysis.errors.get("approach 2", "no fit")[:60], wants[0][1]))
    ci2, ci3 = (a2.a_ci if a2 is not None else None), alloc.get("a_ci")
    overlap = ci2 is not None and ci3 is not None and ci2[0] <= ci3[1] and ci3[0] <= ci2[1]
    rules.append(Rule(wants[1][0], overlap, f"{_interval(ci2)} vs {_interval(ci3)}",
                      wants[1][1]))
    e_ok = a3 is not None and "E" not in a3.collapsed
    rules.append(Rule(wants[2][0], e_ok, "no fit" if a3 is None else
                      f"E {a3.params['E']:.4g}" + (" (collapsed)" if not e_ok else ""),
                      wants[2][1]))
    details: dict[str, Any] = {}
    if holdout is None or a3 is None or analysis.frontier is None:
        why = "no held-out run" if holdout is None else "no fit"
        rules += [Rule(n, False, why, w) for n, w in wants[3:]]
        return Verdict(preset.name, rules, a3, details, claims=CLAIMS)
    n_h, d_h = float(holdout["n_params_non_embedding"]), float(holdout["tokens"])
    loss, budget = float(holdout["final_val_loss"]), float(holdout["budget"])
    frontier = float(analysis.frontier.predict(budget)[0])
    pred = float(a3.predict(n_h, d_h)[0])
    judged = frontier if preset.holdout_predictor == "frontier" else pred
    err = judged / loss - 1.0
    rules.append(Rule(wants[3][0], abs(err) <= tol, f"{err:+.2%}", wants[3][1]))
    lo = hi = math.nan
    if a3.replicates is None:
        rules.append(Rule(wants[4][0], False, "no bootstrap", wants[4][1]))
    else:
        lo, hi = (float(v[0]) for v in a3.prediction_interval(n_h, PREDICTION_LEVEL, d=d_h,
                                                               rng=rng))
        rules.append(Rule(wants[4][0], lo <= loss <= hi, f"{loss:.4g} in [{lo:.4g}, {hi:.4g}]",
                          wants[4][1]))
    details = {"held_out": {"budget": budget, "N": n_h, "D": d_h,
                            "d_model": holdout.get("d_model"), "loss": loss,
                            "frontier_predicted": frontier, "frontier_error": frontier / loss - 1,
                            "predictor": preset.holdout_predictor, "error": err,
                            "approach3_predicted": pred, "approach3_error": pred / loss - 1.0,
                            "approach3_prediction_interval": [lo, hi],
                            "N_opt_approach2": None if analysis.approach2 is None else
                            analysis.n_opt(float(holdout["budget"]))}}
    return Verdict(preset.name, rules, a3, details, claims=CLAIMS)


@dataclass
class IsoFLOPReport:
    analysis: Analysis
    holdout: dict | None
    verdict: Verdict
    summary: dict[str, Any]
    files: list[pathlib.Path] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    def text(self) -> str:
        a = self.analysis
        p = a.points
        lines = [f"  {'C':>9} {'d_model':>7} {'N (non-emb)':>12} {'D tokens':>11} {'D/N':>6} "
                 f"{'loss':>8}"]
        order = np.lexsort((p["N"], p["C"]))
        for i in order:
            lines.append(f"  {p['C'][i]:>9.3g} {'':>7} {int(p['N'][i]):>12,} {int(p['D'][i]):>11,}"
                         f" {p['D'][i] / p['N'][i]:>6.1f} {p['L'][i]:>8.4f}")
        if self.holdout is not None:
            h = self.holdout
            lines.append(f"  {float(h['budget']):>9.3g} {'':>7} {h['n_params_non_embedding']:>12,}"
                         f" {h['tokens']:>11,} {h['tokens'] / h['n_params_non_embedding']:>6.1f}"
                         f" {h['final_val_loss']:>8.4f}  * held out")
        parts = ["\n".join(lines)]
        if a.approach2 is not None:
            parts.append("Approach 2 (IsoFLOP parabolas):\n" + a.approach2.table())
        if a.approach3 is not None:
            al = a.allocation3
            parts.append("Approach 3 (L(N, D) fit of every ladder run):\n" + a.approach3.table()
                         + f"\n  allocation: a = {al['a']:.4f} {_interval(al.get('a_ci'))}, "
                         f"b = {al['b']:.4f} {_interval(al.get('b_ci'))}")
        if a.frontier is not None:
            f = a.frontier.params
            parts.append(f"frontier: L_opt(C) = {f['A']:.4g} * C^-{f['alpha']:.4f}")
        held = self.verdict.details.get("held_out")
        if held:
            h = held
            parts.append(f"held-out run at C={h['budget']:.3g} (N {h['N']:,.0f}, D {h['D']:,.0f}):"
                         f" loss {h['loss']:.4f}; the frontier predicted "
                         f"{h['frontier_predicted']:.4f} ({h['frontier_error']:+.2%}), "
                         f"Approach 3's L(N, D) {h['approach3_predicted']:.4f} "
                         f"({h['approach3_error']:+.2%})")
        parts += [f"({k}: {v})" for k, v in a.errors.items()]
        parts.append(self.verdict.table())
        return "\n\n".join(parts)


def build_isoflop_report(runs: list[dict], preset: Any, *, rng: int = 0,
                         sweeps: list[dict] | None = None, bootstrap2: int | None = None,
                         bootstrap3: int | None = None) -> IsoFLOPReport:
    """Analysis, verdict and JSON summary from an IsoFLOP ladder's run records (no files);
    the bootstraps default to BOOTSTRAP_A2 and BOOTSTRAP_A3."""
    bootstrap2 = BOOTSTRAP_A2 if bootstrap2 is None else bootstrap2
    bootstrap3 = BOOTSTRAP_A3 if bootstrap3 is None else bootstrap3
    ladder, held = ladder_runs(runs)
    if not ladder:
        raise ValueError("no ladder run records to report on")
    ok = [r for r in ladder if r.get("status", "ok") == "ok"
          and math.isfinite(float(r["final_val_loss"])) and float(r["final_val_loss"]) > 0]
    holdout = next((r for r in held if float(r["budget"]) == preset.holdout_budget), None)
    bad = len(ladder) - len(ok) + (holdout is not None and holdout.get("status", "ok") != "ok")
    analysis = analyse(ok, rng=rng, bootstrap2=bootstrap2, bootstrap3=bootstrap3)
    verdict = isoflop_verdict(analysis, holdout, preset, bad=bad, rng=rng)
    summary = _jsonable({
        "preset": preset.name, "verdict": verdict.to_dict(), "n_runs": len(runs),
        "flop_count": "3 x refllm.model.counting.flops_per_token(method='exact') per token",
        "approach2": None if analysis.approach2 is None else {
            "a": analysis.approach2.a, "a_ci": analysis.approach2.a_ci,
            "b": analysis.approach2.b, "b_ci": analysis.approach2.b_ci,
            "k": analysis.approach2.k, "budgets": analysis.approach2.budgets,
            "N_opt": analysis.approach2.N_opt, "D_opt": analysis.approach2.D_opt,
            "L_opt": analysis.approach2.L_opt,
            "replicates_ok": analysis.approach2.replicates_ok},
        "approach3": None if analysis.approach3 is None else {
            "fit": analysis.approach3.to_dict(), **analysis.allocation3},
        "frontier": None if analysis.frontier is None else analysis.frontier.params,
        "errors": analysis.errors,
        "runs": [{k: r.get(k) for k in ("run_id", "budget", "role", "d_model", "seed",
                                        "n_params_non_embedding", "tokens", "train_flops",
                                        "final_val_loss", "time_s")} for r in runs],
        "sweeps": [{k: v for k, v in s.items() if k != "preset_config"} for s in sweeps or []],
    })
    return IsoFLOPReport(analysis, holdout, verdict, summary)


def _jsonable(x: Any) -> Any:
    def default(v: Any) -> Any:
        return v.tolist() if isinstance(v, np.ndarray) else float(v)

    return json.loads(json.dumps(x, default=default, allow_nan=True))


def write_isoflop_report(report: IsoFLOPReport, out: str | pathlib.Path) -> list[pathlib.Path]:
    """summary.json and the plots that the fits allow; returns the paths written."""
    from refllm.scaling.report import isoflop_plots as plots

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report.summary, indent=2, allow_nan=True) + "\n"
    write_bytes_atomically(out / SUMMARY, text.encode())
    files = [out / SUMMARY]
    a = report.analysis
    makers = {"isoflop_curves.png": plots.curves, "allocation.png": plots.allocation,
              "loss_contours.png": plots.contours, "frontier.png": plots.frontier}
    needs = {"isoflop_curves.png": a.approach2, "allocation.png": a.approach2,
             "loss_contours.png": a.approach3, "frontier.png": a.frontier}
    for name in PLOTS:
        if needs[name] is not None:
            write_bytes_atomically(out / name, makers[name](a, report.holdout))
            files.append(out / name)
    report.files = files
    return files
