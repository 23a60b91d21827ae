"""`check_clip_grad_norm`: PyTorch's clipping passes in every dtype, the planted bugs fail (the
corpus: tests/testing/mutants/clip_mutants.py), and the check is reached from the CLI, the plugin
and `judge` through its record alone."""

from __future__ import annotations

import collections

import pytest
import torch
from hypothesis import given, settings

from refllm.cli import main
from refllm.testing import check_clip_grad_norm, judge
from refllm.testing.clip_grad_norm.strategy import ClipProblem, clip_problems
from tests.testing.mutants import clip_mutants as G


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("seed", [0, 1])
def test_pytorch_passes(dtype, seed):
    report = check_clip_grad_norm(torch.nn.utils.clip_grad_norm_, dtype=dtype, seed=seed)
    assert report.passed and report.op == "clip-grad-norm", str(report)


def test_refllm_passes_with_its_naive_twin_cross_checked():
    from refllm.ops.clip_grad import clip_grad_norm_

    assert check_clip_grad_norm(clip_grad_norm_, seed=0, naive=True).passed


def test_the_inf_norm_bug_is_named_on_the_norm():
    report = check_clip_grad_norm(G.clip_inf_norm_is_one, seed=0, raise_on_failure=False,
                                  features=["norm_types"])
    assert "total norm" in report.failed_properties, str(report)
    assert "norm_type" in str(report.case.kwargs)


def test_judge_takes_one_problem():
    g = torch.tensor([3.0, 4.0], dtype=torch.float64)
    problem = ClipProblem([g, None], 1.0, {"norm_type": float("inf")})
    assert judge("clip-grad-norm", torch.nn.utils.clip_grad_norm_, problem).passed
    assert not judge("clip-grad-norm", G.clip_inf_norm_is_one, problem,
                     raise_on_failure=False).passed


def test_the_cli_checks_clipping(capsys):
    assert main(["check", "clip-grad-norm", "torch.nn.utils:clip_grad_norm_", "--examples",
                 "10", "--seed", "0"]) == 0
    assert main(["check", "clip-grad-norm", "tests.testing.mutants.clip_mutants:"
                 "clip_coefficient_not_capped", "--examples", "10", "--seed", "0"]) == 1


def test_the_strategy_draws_every_feature_and_the_default_call_in_a_share():
    seen: collections.Counter = collections.Counter()

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @given(clip_problems())
    def draw(problem):
        seen["examples"] += 1
        seen[problem.how] += 1
        seen["none grads"] += any(g is None for g in problem.grads)
        seen["inf"] += problem.kwargs.get("norm_type") == float("inf")
        seen["nonfinite"] += bool(problem.kwargs.get("error_if_nonfinite"))
        seen["foreach"] += "foreach" in problem.kwargs
        seen["default"] += not problem.kwargs and problem.how == "list"
        seen["long"] += any(g is not None and g.numel() >= 15 for g in problem.grads)

    draw()
    n = seen["examples"]
    # measured over 300 draws (docs/oracle.md): each feature in at least 3% of them
    for key in ("tensor", "generator", "none grads", "inf", "nonfinite", "foreach", "default",
                "long"):
        assert seen[key] >= 0.03 * n, (key, dict(seen))
