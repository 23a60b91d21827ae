"""The verdict's rules, each shown to pass on a clean law and to fail where it should."""

import numpy as np
import pytest

from refllm.scaling.report import verdict as v
from refllm.scaling.report.verdict import power_law_verdict

N = np.repeat(np.geomspace(6.6e3, 2.24e5, 6), 2)
SEEDS = np.tile([0, 1], 6)
U = np.log(N) - np.log(N).mean()


def _noise(seed=5, sigma=0.01):
    return np.exp(sigma * np.random.default_rng(seed).standard_normal(len(N)))


def test_the_thresholds_are_the_issues():
    assert v.R2_MIN == {"cpu": 0.98, "gpu": 0.995}
    assert v.HOLDOUT_ERROR == {"cpu": 0.04, "gpu": 0.015}
    assert v.ALPHA_CI_BOUNDS == (0.02, 1.5) and v.ALPHA_CI_LEVEL == 0.9


def test_a_clean_power_law_with_1_percent_noise_passes_every_rule():
    verdict = power_law_verdict(N, (1.2 + 30 * N**-0.3) * _noise(), SEEDS)
    assert verdict.passed, verdict.table()
    assert "loss follows a power law" in str(verdict)


def test_a_visibly_bent_curve_fails_the_curvature_rule():
    bent = np.exp(1.0 - 0.15 * U - 0.04 * U**2) * _noise()
    verdict = power_law_verdict(N, bent, SEEDS, bootstrap=200)
    assert not verdict.rule("no curvature").passed and not verdict.passed


def test_the_curvature_test_rarely_fires_on_clean_data():
    from refllm.scaling.fit import fit_power_law

    n = np.repeat(np.geomspace(6.6e3, 2.24e5, 5), 2)
    gen, fired = np.random.default_rng(0), 0
    for _ in range(60):
        fit = fit_power_law(n, (1.2 + 30 * n**-0.3) * np.exp(0.01 * gen.standard_normal(10)),
                            bootstrap=0)
        fired += v.curvature_test(fit, n)[1] < v.CURVATURE_P_MIN
    assert fired <= 3  # expected 0.6 at p < 0.01 (measured 0.3% over 300 data sets)


def test_a_diverged_run_fails_and_leaves_the_other_rules_unevaluated():
    loss = (1.2 + 30 * N**-0.3) * _noise()
    verdict = power_law_verdict(N, loss, SEEDS, diverged=[False] * 11 + [True])
    assert not verdict.passed and verdict.rules[1].value == "not evaluated"
    loss[3] = np.nan
    assert not power_law_verdict(N, loss, SEEDS).rule("runs finite").passed


def test_a_loss_that_rises_with_n_fails():
    loss = 1.2 + 30 * N**-0.3
    loss[N == N.max()] = loss.max() * 1.01
    verdict = power_law_verdict(N, loss, SEEDS, bootstrap=200)
    assert not verdict.rule("loss falls with N").passed
    assert not verdict.rule("held-out error").passed


def test_the_gpu_preset_is_stricter_on_the_held_out_error():
    loss = (1.2 + 30 * N**-0.3) * _noise(seed=1, sigma=0.003)
    loss[N == N.max()] *= 1.025  # 2.5% off: inside 4%, outside 1.5%
    cpu = power_law_verdict(N, loss, SEEDS, bootstrap=200)
    gpu = power_law_verdict(N, loss, SEEDS, bootstrap=200, preset="gpu")
    assert cpu.rule("held-out error").passed and not gpu.rule("held-out error").passed


def test_a_flat_loss_fails_the_alpha_interval():
    loss = (2.0 + 0.05 * N**-0.01) * _noise(sigma=0.001)  # alpha ~ 0.01, below 0.02
    verdict = power_law_verdict(N, np.sort(loss)[::-1], SEEDS, bootstrap=200)
    assert not verdict.passed


@pytest.mark.parametrize("kwargs, match", [
    (dict(preset="tpu"), "preset must be one of"), (dict(holdout="smallest"), "holdout must be"),
])
def test_bad_options_give_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        power_law_verdict(N, 1.2 + 30 * N**-0.3, SEEDS, **kwargs)


def test_too_few_sizes_give_a_clear_error():
    with pytest.raises(ValueError, match="needs >= 5 distinct sizes"):
        power_law_verdict(N[:8], (1.2 + 30 * N**-0.3)[:8], SEEDS[:8])
