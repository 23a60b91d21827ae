"""Cross-entropy's a-priori error bounds: a correct `logsumexp(x) - x[y]` formulation, whose
rounding at logits near 1e4 is far above PyTorch's, is not a disagreement; the bounds hold for
PyTorch and for that formulation on drawn cases, and stay far below the bugs of the corpus."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings

from refllm.testing import check_cross_entropy
from refllm.testing.cross_entropy.error_bounds import cross_entropy_error_bounds
from refllm.testing.cross_entropy.strategy import cross_entropy_cases

FEATURES = ["index_targets", "extreme_logits", "weights", "label_smoothing", "k_dims"]


def lse_minus_target(input, target, weight=None, ignore_index=-100, reduction="mean",
                     label_smoothing=0.0):
    """A correct cross-entropy written as logsumexp(x) - x[y] (optax's formulation), for index
    targets; nothing ignored."""
    dim = 0 if input.dim() == 1 else 1
    lse = torch.logsumexp(input, dim=dim, keepdim=True)
    nll = (lse - input).gather(dim, target.unsqueeze(dim)).squeeze(dim)
    w = weight[target] if weight is not None else torch.ones_like(nll)
    shape = [1] * input.dim()
    shape[dim] = -1
    wc = weight.view(shape) if weight is not None else 1.0
    smooth = ((lse - input) * wc).sum(dim) / input.shape[dim]
    row = (1 - label_smoothing) * w * nll + label_smoothing * smooth
    if reduction == "none":
        return row
    return row.sum() if reduction == "sum" else row.sum() / w.sum()


@pytest.mark.parametrize("seed", range(3))
def test_the_log_sum_exp_formulation_is_no_disagreement(seed):
    report = check_cross_entropy(lse_minus_target, features=FEATURES, seed=seed, examples=60)
    assert report.passed, str(report)


def test_without_the_bounds_that_formulation_was_a_false_alarm():
    """At logits near -1e4 its loss log 2 is formed as (-1e4 + log 2) + 1e4 in float32: an error
    of about u * 1e4, seven times what "2 x the plain float32 computation" allows."""
    x = torch.tensor([[-1e4, -1e4], [1e4, -2934.0]], dtype=torch.float32)
    y = torch.tensor([0, 0])
    err = (lse_minus_target(x, y) - F.cross_entropy(x.double(), y)).abs().item()
    plain = (F.cross_entropy(x, y) - F.cross_entropy(x.double(), y)).abs().item()
    assert err > 2 * plain + 1e-5
    from refllm.testing.engine.case import Case

    bound = cross_entropy_error_bounds(Case((x, y), {}), None, torch.float32)
    assert err <= bound["forward output"].item()


@settings(max_examples=60, deadline=None)
@given(cross_entropy_cases(write_defaults=False, extreme_logits=True, ignore_index=True,
                           prob_targets=True, weights=True, label_smoothing=True, k_dims=True))
def test_the_bounds_hold_for_pytorch_in_float32(case):
    ref = case.call(F.cross_entropy).double()
    low = case.to(torch.float32)
    got = low.call(F.cross_entropy).double()
    bounds = cross_entropy_error_bounds(low, None, torch.float32)
    if not bounds or not bool(ref.isfinite().all()):
        return
    err = (got - low.to(torch.float64).call(F.cross_entropy)).abs()
    assert bool((err <= bounds["forward output"] + 1e-12).all())


def test_the_bounds_are_far_below_a_real_bug():
    """The mean of 3 rows losing one ignored row's divisor is off by a third; the bound is
    ulps."""
    from refllm.testing.engine.case import Case

    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    bound = cross_entropy_error_bounds(Case((x, torch.tensor([0, 1, 2])), {}), None,
                                       torch.float32)
    assert bound["forward output"].item() < 1e-5
