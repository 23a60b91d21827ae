"""The fitter on public scaling data no one here produced: the Cerebras-GPT family (111M to 13B,
20 tokens per parameter; tests/scaling/public/README.md has the source and licence)."""

from __future__ import annotations

import csv
import pathlib

import numpy as np
import pytest

from refllm.cli import main
from refllm.scaling.fit import compute_optimal, fit_chinchilla, fit_power_law

CSV = pathlib.Path(__file__).parent / "public" / "cerebras_gpt.csv"
FITTED = 5  # 111M .. 2.7B; 6.7B and 13B are held out


def _columns() -> dict[str, np.ndarray]:
    with CSV.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {k: np.array([float(r[k]) for r in rows]) for k in ("N", "D", "C", "loss")}


@pytest.mark.parametrize("x", ["N", "C"])
def test_the_five_smaller_models_predict_the_two_larger_ones_within_two_percent(x):
    cols = _columns()
    size, loss = cols[x], cols["loss"]
    fit = fit_power_law(size[:FITTED], loss[:FITTED], saturating=False, bootstrap=1000,
                        variable=x, rng=0)
    predicted = fit.predict(size[FITTED:])
    low, high = fit.prediction_interval(size[FITTED:])
    reported = loss[FITTED:]
    # measured: N: -1.3% (6.7B) and -0.1% (13B); C: -1.4% and -0.4%
    assert np.all(np.abs(predicted / reported - 1) < 0.02), (predicted, reported)
    assert np.all((low <= reported) & (reported <= high)), (low, reported, high)
    assert fit.warnings() == []


def test_a_saturating_fit_of_five_sizes_says_that_they_leave_e_undetermined():
    cols = _columns()
    fit = fit_power_law(cols["N"][:FITTED], cols["loss"][:FITTED], bootstrap=0)
    assert fit.collapsed == ("E",)
    assert "E collapsed" in fit.warnings()[0] and "collapsed" in fit.table()


def test_the_chinchilla_law_on_a_fixed_tokens_per_parameter_ladder_says_n_and_d_are_confounded():
    cols = _columns()
    fit = fit_chinchilla(cols["N"], cols["D"], cols["loss"], bootstrap=0, starts=4)
    assert fit.confounded and 0.99 < fit.confounded["slope"] < 1.01
    assert any("N and D move together" in w for w in fit.warnings())
    assert fit.table().count("confounded: N and D move together") == 4  # A, B, alpha, beta
    assert fit.to_dict()["confounded"] == fit.confounded
    with pytest.raises(ValueError, match="allocation, is undetermined"):
        compute_optimal(fit, 1e23)


def test_a_ladder_that_varies_d_at_fixed_n_is_not_confounded():
    n = np.repeat([1e7, 3e7, 1e8], 3)
    d = np.tile([1e8, 3e8, 1e9], 3)
    loss = 1.7 + 400 / n**0.34 + 410 / d**0.28
    fit = fit_chinchilla(n, d, loss, bootstrap=0, starts=4)
    assert fit.confounded == {} and "confounded" not in fit.table()


def test_refllm_fit_reads_the_public_csv_and_predicts_the_largest_model(capsys):
    assert main(["fit", str(CSV), "--pure", "--predict", "N=13e9"]) == 0
    out = capsys.readouterr().out
    assert "7 runs" in out and "predicted loss at N=1.3e+10" in out
