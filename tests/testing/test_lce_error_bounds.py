"""Fused linear cross-entropy's a-priori error bounds: they hold for correct implementations
(PyTorch's ``F.linear_cross_entropy``, the plain ``F.linear`` then ``F.cross_entropy``, refllm's
fused op) in float32, bfloat16 and float16 over drawn cases, the planted bugs of the corpus exceed
them, and with them ``F.linear_cross_entropy`` passes the check in bfloat16 and float16."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from refllm.ops.linear_cross_entropy import linear_cross_entropy
from refllm.testing import check_linear_cross_entropy
from refllm.testing.engine.case import Case
from refllm.testing.engine.function import _upstream
from refllm.testing.engine.tolerances import ERROR_BOUND_FACTOR, IMPL
from refllm.testing.linear_cross_entropy.check import reference
from refllm.testing.linear_cross_entropy.error_bounds import linear_cross_entropy_error_bounds
from refllm.testing.linear_cross_entropy.strategy import linear_cross_entropy_cases
from tests.testing.mutants import linear_ce_mutants as C

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
PROPERTIES = ("forward output", "grad wrt input", "grad wrt linear_weight", "grad wrt linear_bias")


def unfused(input, linear_weight, target, *, linear_bias=None, **kwargs):
    """The logits in the input's dtype, then PyTorch's cross-entropy in that dtype."""
    return F.cross_entropy(F.linear(input, linear_weight, linear_bias), target, **kwargs)


CORRECT = {"F.linear_cross_entropy": F.linear_cross_entropy, "F.linear then F.cross_entropy":
           unfused, "refllm linear_cross_entropy": linear_cross_entropy}


def _run(fn, case: Case, g: torch.Tensor) -> list[torch.Tensor]:
    """The loss and the gradients wrt input, linear_weight (and linear_bias) of ``fn``."""
    args = [a.detach().clone().requires_grad_() if a.is_floating_point() else a
            for a in case.args]
    kwargs = {k: (v.detach().clone().requires_grad_() if k == "linear_bias" else v)
              for k, v in case.kwargs.items()}
    out = fn(*args, **kwargs)
    leaves = args[:2] + ([kwargs["linear_bias"]] if "linear_bias" in kwargs else [])
    return [out, *torch.autograd.grad(out, leaves, g.to(out.dtype))]


def errors_over_bounds(fn, case: Case, dtype: torch.dtype, seed: int) -> dict[str, float]:
    """max |error| / bound per property of ``fn`` on ``case`` rounded to ``dtype``; {} where
    the reference or the result is not finite (a loss beyond float16's range) or the model
    gives no bound."""
    low = case.to(dtype)
    loss = low.to(torch.float64).call(reference)
    if not bool(loss.isfinite().all()):
        return {}
    g = _upstream(loss, seed, dtype)
    expected = _run(reference, low.to(torch.float64), g)
    actual = _run(fn, low, g)
    bounds = linear_cross_entropy_error_bounds(low, g, dtype)
    if not bounds or not all(bool(a.isfinite().all()) for a in actual):
        return {}
    return {name: float(((a.detach().double() - e.detach()).abs() / bounds[name]).max())
            for name, a, e in zip(PROPERTIES, actual, expected)}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@settings(max_examples=40, deadline=None)
@given(case=linear_cross_entropy_cases(), seed=st.integers(0, 2**31 - 1))
def test_the_bounds_hold_for_correct_implementations(dtype, case, seed):
    for name, fn in CORRECT.items():
        ratios = errors_over_bounds(fn, case, dtype, seed)
        assert all(r <= 1.0 for r in ratios.values()), (name, ratios, case.note)


def _beyond(actual: list[torch.Tensor], expected: list[torch.Tensor],
            bounds: dict[str, torch.Tensor], dtype: torch.dtype) -> list[str]:
    """The properties where ``actual`` exceeds the policy's elementwise allowance with the bound,
    ``atol + rtol |ref| + ERROR_BOUND_FACTOR * bound``."""
    tol = IMPL[dtype]
    out = []
    for name, a, e in zip(PROPERTIES, actual, expected):
        allowed = tol.atol + tol.rtol * e.detach().abs() + ERROR_BOUND_FACTOR * bounds[name]
        if bool(((a.detach().double() - e.detach()).abs() > allowed).any()):
            out.append(name)
    return out


def _bug_case(v: int = 300, scale: float = 1.0, **kwargs) -> Case:
    """70 rows of width 16 over ``v`` classes, hidden states of ``scale``; every third target
    ``ignore_index`` when the keyword is given."""
    gen = torch.Generator().manual_seed(5)
    n, d = 70, 16
    h = torch.randn(n, d, generator=gen, dtype=torch.float64) * scale
    w = torch.randn(v, d, generator=gen, dtype=torch.float64) / d ** 0.5 * 2
    y = torch.randint(0, v, (n,), generator=gen)
    if kwargs.get("ignore_index") is not None:
        y[::3] = kwargs["ignore_index"]
    return Case((h, w, y), kwargs)


BUGS = [(C.lce_padded_vocab_slots_in_the_lse, {"v": 130, "scale": 0.3}),  # 126 slots added
        (C.lce_mean_counts_ignored_targets, {"ignore_index": -100}),
        (C.lce_chunks_of_256_not_rescaled, {}),
        (C.lce_none_ignores_the_per_row_upstream_grad, {"reduction": "none"})]


@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16), ids=str)
@pytest.mark.parametrize("bug,kwargs", BUGS, ids=lambda b: getattr(b, "__name__", ""))
def test_the_planted_bugs_exceed_the_bounds(bug, kwargs, dtype):
    low = _bug_case(**kwargs).to(dtype)
    g = _upstream(low.to(torch.float64).call(reference), 1, dtype)
    expected = _run(reference, low.to(torch.float64), g)
    bounds = linear_cross_entropy_error_bounds(low, g, dtype)
    assert _beyond(_run(bug, low, g), expected, bounds, dtype)
    assert not _beyond(_run(F.linear_cross_entropy, low, g), expected, bounds, dtype)


@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float16), ids=str)
@pytest.mark.parametrize("seed", (3, 4))
def test_pytorch_passes_the_check_with_the_bounds(seed, dtype):
    report = check_linear_cross_entropy(F.linear_cross_entropy, dtype=dtype, seed=seed,
                                        raise_on_failure=False)
    assert report.passed, str(report)


def test_a_bfloat16_failure_reports_both_bounds():
    report = check_linear_cross_entropy(C.lce_chunks_of_256_not_rescaled, dtype=torch.bfloat16,
                                        seed=0, examples=20, raise_on_failure=False)
    assert not report.passed
    text = str(report)
    assert "error of the plain torch.bfloat16 computation" in text
    assert "beyond the a-priori bound too" in text
