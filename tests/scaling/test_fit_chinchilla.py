"""Chinchilla's Approach 3, its compute-optimal allocation, and Approach 2 (IsoFLOP)."""

import numpy as np
import pytest
from scipy.optimize import minimize, minimize_scalar

from refllm.scaling.fit import compute_optimal, fit_chinchilla, isoflop_fit
from refllm.scaling.fit.chinchilla import huber_objective
from refllm.scaling.fit.laws import chinchilla_loss

# Hoffmann et al. 2022's published fit (§D.2): E 1.69, A 406.4, B 410.7, alpha 0.34, beta 0.28
TRUTH = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
N = np.repeat(np.geomspace(1e7, 1e9, 5), 4)
D = np.tile(np.geomspace(1e9, 1e11, 4), 5)
L = chinchilla_loss(N, D, **TRUTH)


def test_noise_free_data_recovers_the_parameters_to_1e_6():
    fit = fit_chinchilla(N, D, L, bootstrap=0)  # measured: ~3e-11 relative
    assert fit.converged
    for k, v in TRUTH.items():
        assert fit.params[k] == pytest.approx(v, rel=1e-6), k


def test_a_mean_huber_with_scipys_default_tolerances_stops_at_its_start_and_refllm_does_not():
    # the trap of Besiroglu et al. 2024: from a point of Hoffmann's grid, a MEAN-reduced Huber
    # objective under L-BFGS-B's defaults (gtol 1e-5, ftol 2.2e-9) halts after a few steps
    x0 = np.zeros(5)  # e = a = b = alpha = beta = 0 is a point of Hoffmann's grid
    trap = minimize(huber_objective, x0, args=(np.log(N), np.log(D), np.log(L), None, 1e-3,
                                               "mean"), jac=True, method="L-BFGS-B")
    assert np.max(np.abs(trap.x - x0)) < 0.05  # it barely moved
    assert abs(trap.x[3] - TRUTH["alpha"]) > 0.3  # and misses the truth
    fit = fit_chinchilla(N, D, L, bootstrap=0)
    assert fit.params["alpha"] == pytest.approx(TRUTH["alpha"], rel=1e-6)


def test_noisy_data_gives_intervals_that_hold_the_truth():
    rng = np.random.default_rng(0)
    fit = fit_chinchilla(N, D, L * np.exp(0.01 * rng.standard_normal(len(L))), bootstrap=200)
    for k, v in TRUTH.items():
        assert fit.cis[k][0] <= v <= fit.cis[k][1], k
    assert fit.diagnostics["replicates_converged"] > 0.95


def test_compute_optimal_matches_a_direct_minimisation_along_the_isoflop():
    fit = fit_chinchilla(N, D, L, bootstrap=0)
    c = 5.76e23  # Chinchilla's (Gopher's) budget
    alloc = compute_optimal(fit, c)
    best = minimize_scalar(lambda ln: chinchilla_loss(np.exp(ln), c / (6 * np.exp(ln)), **TRUTH),
                           bounds=(15, 35), method="bounded", options={"xatol": 1e-10})
    assert alloc.N_opt[0] == pytest.approx(np.exp(best.x), rel=1e-5)
    assert alloc.N_opt[0] * alloc.D_opt[0] * 6 == pytest.approx(c, rel=1e-12)
    assert alloc.a == pytest.approx(0.28 / 0.62) and alloc.a + alloc.b == pytest.approx(1.0)


def test_isoflop_recovers_the_exponent_and_refuses_a_curve_without_an_interior_minimum():
    c = np.repeat([1e18, 1e19, 1e20, 1e21], 7)
    n = np.concatenate([np.geomspace(0.1, 10, 7) * 1e8 * (k / 1e18) ** 0.45
                        for k in (1e18, 1e19, 1e20, 1e21)])
    loss = chinchilla_loss(n, c / (6 * n), **TRUTH)
    iso = isoflop_fit(c, n, loss)
    assert iso.a == pytest.approx(0.28 / 0.62, abs=0.02)  # the parabola is an approximation
    n_far = n[:14] * np.repeat([1.0, 1000.0], 7)  # the second budget sampled far above N_opt
    with pytest.raises(ValueError, match="outside the sampled range"):
        isoflop_fit(c[:14], n_far, chinchilla_loss(n_far, c[:14] / (6 * n_far), **TRUTH))


@pytest.mark.parametrize("args, match", [
    ((N[:4], D[:4], L[:4]), "cannot determine the 5 parameters"),
    ((N, np.full(20, 1e9), L), "D must hold at least 2 distinct"),
    ((N, D, -L), "L must be finite and > 0"),
    ((N, D[:5], L), "must have the same length"),
])
def test_bad_data_gives_a_clear_error(args, match):
    with pytest.raises(ValueError, match=match):
        fit_chinchilla(*args, bootstrap=0)


def test_an_e_the_data_do_not_determine_is_reported_collapsed():
    """Runs with no floor in sight (a pure power law in N and D): E is fitted in log space, so it
    nears 0 without touching its bound; it is still reported as collapsed."""
    n, d = np.repeat(np.geomspace(1e6, 1e8, 5), 3), np.tile([1e8, 1e9, 1e10], 5)
    loss = 406.4 / n**0.34 + 410.7 / d**0.28
    fit = fit_chinchilla(n, d, loss, bootstrap=0)
    assert fit.params["E"] < 0.02 * loss.min() and fit.collapsed == ("E",)
    assert "collapsed: undetermined by these data" in fit.table()
    assert fit.to_dict()["collapsed"] == ["E"]
    healthy = fit_chinchilla(n, d, 1.69 + loss, bootstrap=0)
    assert healthy.collapsed == () and "collapsed" not in healthy.table()


def test_refllm_fit_warns_when_e_collapsed(tmp_path, capsys):
    from refllm.cli import main

    n = np.geomspace(1e4, 1e6, 6)
    csv = tmp_path / "runs.csv"
    csv.write_text("N,loss\n" + "".join(f"{a},{40 * a**-0.3}\n" for a in n))
    assert main(["fit", str(csv), "--bootstrap", "0"]) == 0
    assert "warning: E collapsed" in capsys.readouterr().out
