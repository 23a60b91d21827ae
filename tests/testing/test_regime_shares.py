"""Every strategy draws its inputs over decades and with common offsets, in a measured share,
and SDPA's rarer kernel-sized regimes come up (tests/testing/regime_shares.py measures them;
docs/oracle.md holds the table over 2,000 draws).

Floor: each regime in at least 1% of 600 draws (three runs of 200; the design gives 2% to 12%;
the lowest measured here is 1.3%, SDPA's d > 128). The notes the shares are read from say what
the tensors hold.
"""

from __future__ import annotations

import re

import pytest
import torch

from tests.testing.regime_shares import STRATEGIES, regime_shares
from tests.testing.test_size_tier import draw_many

DRAWS = 600
FLOOR = 0.01


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_each_regime_is_drawn_in_a_measured_share(name):
    # three runs of 200: Hypothesis repeats a run's drawn keys, so one run is clumpy
    runs = [regime_shares(name, DRAWS // 3, seed) for seed in (0, 1, 2)]
    shares = {label: sum(r[label] for r in runs) / len(runs) for label in runs[0]}
    low = {label: share for label, share in shares.items() if share < FLOOR}
    assert not low, (name, low)
    assert sum(shares.values()) < 1.5, (name, shares)  # unit scale stays the common case


def _scale_and_offset(note: str, what: str) -> tuple[float, float]:
    """(factor, offset) that ``note`` gives ``what`` ("values " for SDPA, "" for MSE)."""
    found = re.search(rf"{what}(scale|offset) ([-+.\de]+)", note)
    if found is None:
        return 1.0, 0.0
    value = float(found.group(2))
    return (value, 0.0) if found.group(1) == "scale" else (1.0, value)


def _checked(cases, arg: int, what: str) -> int:
    """How many of ``cases`` (with 64 elements or more in ``args[arg]``) were held against the
    scale and offset their notes give ``what``."""
    checked = 0
    for case in cases:
        x = case.args[arg].to(torch.float64)
        factor, offset = _scale_and_offset(case.note, what)
        if x.numel() < 64:
            continue
        checked += 1
        assert factor / 2 < float(x.std()) < factor * 2, (case.note, float(x.std()))
        assert abs(float(x.mean()) - offset) < 0.5 * factor + 1, (case.note, float(x.mean()))
    return checked


def test_the_notes_the_shares_read_say_what_the_tensors_hold():
    sdpa = draw_many(STRATEGIES["sdpa_cases"][0](), 300, at=5)  # the values, args[2]
    mse = draw_many(STRATEGIES["mse_cases"][0](), 300, at=5)  # the input, args[0]
    assert _checked(sdpa, 2, "values ") + _checked(mse, 0, "") >= 50


def test_an_unknown_regime_kind_is_a_clear_error():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from refllm.testing.engine.scales import regime

    @settings(max_examples=1, database=None)
    @given(st.data())
    def draw_one(data):
        data.draw(st.composite(lambda draw: regime(draw, ("bias",)))())

    with pytest.raises(ValueError, match="regime kinds are 'decade' and 'offset', got 'bias'"):
        draw_one()
