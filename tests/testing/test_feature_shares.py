"""Every strategy draws the default call, each feature alone and every pair of features on/off.

Measured on 900 draws per strategy (three runs of 300) (the full table, over 2,000 draws, is in
docs/testing.md; ``python -m tests.testing.feature_shares`` regenerates it). Floors:

* the default call (no optional keyword; torch's default hyper-parameters): at least one case in
  eight, so the all-defaults call is tried often;
* each feature alone (every other one off): at least 0.25% (2 of 900 draws; about 20% / number
  of features is designed, 0.6% the lowest measured over 1,000 draws);
* each pair of features, every on/off combination (both off, either alone, both on): at least 1%
  (2.5% the lowest measured over 1,000 draws).

Hypothesis repeats and mutates earlier draws (400 draws held 116 distinct values of a 32-bit
integer), so shares over a few hundred draws are noisy (at 500 draws one feature alone came up
0 times): the floors sit well under the design.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.testing.feature_shares import STRATEGIES, draw_features, shares

DRAWS = 900
DEFAULT_FLOOR = 1 / 8
ALONE_FLOOR = 0.0025
PAIR_FLOOR = 0.01


@pytest.fixture(scope="module", params=list(STRATEGIES))
def measured(request):
    # three runs (seeds 0, 1, 2): Hypothesis repeats a run's drawn keys, so one run is clumpy
    name = request.param
    seen = sum((draw_features(name, DRAWS // 3, seed) for seed in (0, 1, 2)), Counter())
    return name, shares(seen, STRATEGIES[name][2])


def test_the_default_call_is_drawn_at_least_one_case_in_eight(measured):
    name, r = measured
    assert r["default"] >= DEFAULT_FLOOR, f"{name}: default call in {r['default']:.1%} of draws"


def test_each_feature_is_drawn_alone(measured):
    name, r = measured
    low = {f: s for f, s in r["alone"].items() if s < ALONE_FLOOR}
    assert not low, f"{name}: features alone under {ALONE_FLOOR:.2%}: {low}"


def test_every_pair_of_features_reaches_each_on_off_combination(measured):
    name, r = measured
    low = {k: s for k, s in r["coverage"].items() if s < PAIR_FLOOR}
    assert not low, f"{name}: (feature, on, feature, on) combinations under {PAIR_FLOOR:.0%}: {low}"


def test_the_language_model_loss_call_is_drawn():
    from hypothesis import HealthCheck, Phase, given, settings

    from refllm.testing.engine.search import hermetic_generation
    from refllm.testing.strategies import cross_entropy_cases

    seen: Counter[bool] = Counter()

    @settings(max_examples=200, database=None, derandomize=True, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(cross_entropy_cases(write_defaults=False))
    def collect(case):
        logits, target = case.args
        seen[not case.kwargs and logits.dim() == 2 and logits.shape[0] > 1
             and not target.is_floating_point()] += 1

    with hermetic_generation():
        collect()
    assert seen[True] / 200 >= DEFAULT_FLOOR, f"F.cross_entropy(logits, targets): {seen}"
