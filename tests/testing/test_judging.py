"""`refllm.testing.judging.judge` gives a user's own @given test the checks' verdict and report."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings

from refllm.testing import OracleFailure, check_sdpa
from refllm.testing.cross_entropy.strategy import cross_entropy_cases
from refllm.testing.engine.case import Case
from refllm.testing.judging import judge
from refllm.testing.optimizer.strategy import optimizer_problems
from refllm.testing.sdpa.strategy import sdpa_cases


def scaled_wrong(query, key, value, **kwargs):
    return F.scaled_dot_product_attention(query, key, value, **kwargs) * 1.001


@settings(max_examples=15, deadline=None, database=None)
@given(sdpa_cases())
def test_pytorch_sdpa_passes_on_the_public_strategy(case):
    report = judge("sdpa", F.scaled_dot_product_attention, case)
    assert report.passed and report.examples == 1


@settings(max_examples=10, deadline=None, database=None)
@given(cross_entropy_cases())
def test_pytorch_cross_entropy_passes_in_bfloat16(case):
    assert judge("cross-entropy", F.cross_entropy, case, dtype=torch.bfloat16).passed


@settings(max_examples=5, deadline=None, database=None)
@given(optimizer_problems(like="adamw"))
def test_pytorch_adamw_passes(problem):
    assert judge("optimizer", torch.optim.AdamW, problem, like="adamw").passed


def test_a_wrong_kernel_gets_the_checks_report():
    q, k, v = (torch.randn(2, 3, 5, 4, dtype=torch.float64) for _ in range(3))
    case = Case((q, k, v), {"is_causal": True})
    with pytest.raises(OracleFailure) as failure:
        judge("sdpa", scaled_wrong, case)
    report = failure.value.report
    assert report.failed_properties[0] == "forward output"
    assert "reproduce it with" in str(report) and report.case is not None
    # the check, given the same example through its search, says the same
    searched = check_sdpa(scaled_wrong, seed=0, examples=5, raise_on_failure=False)
    assert searched.failed_properties[0] == report.failed_properties[0]


def test_a_users_given_test_fails_with_the_report_and_shrinks():
    @settings(max_examples=20, deadline=None, database=None)
    @given(sdpa_cases(masks=False, causal=False, gqa=False))
    def users_test(case):
        judge("sdpa", scaled_wrong, case)

    with pytest.raises(OracleFailure, match="FAILED"):
        users_test()


def test_refusals_are_unsupported_not_passes():
    def refuses(query, key, value, **kwargs):
        raise NotImplementedError("not this shape")

    case = Case(tuple(torch.randn(3, 4, dtype=torch.float64) for _ in range(3)))
    report = judge("sdpa", refuses, case, raise_on_failure=False)
    assert report.verdict == "unsupported" and not report.passed
    assert "not this shape" in report.unsupported_example


def test_bad_arguments():
    case = Case(tuple(torch.randn(3, 4, dtype=torch.float64) for _ in range(3)))
    with pytest.raises(ValueError, match="op must be one of"):
        judge("attention", F.scaled_dot_product_attention, case)
    with pytest.raises(ValueError, match="grad_seed"):
        judge("sdpa", F.scaled_dot_product_attention, case, grad_seed=-1)
