"""Every op the oracle checks has a record, so it reaches the registry, the CLI, the plugin, the
conformance suite and `judge` under one spelling: KV-cache decoding and softmax included."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from refllm.cli import main
from refllm.testing import OracleFailure, check_softmax, judge
from refllm.testing.checks import CHECKS
from refllm.testing.contract import OPS as CONTRACT_OPS
from refllm.testing.engine.case import Case
from refllm.testing.kv_cache.strategy import KVProblem
from refllm.testing.registry import OPS, RECORDS

pytest_plugins = ["pytester"]


def test_every_op_folder_has_one_record_and_one_spelling():
    assert [r.method for r in RECORDS.values()] == list(OPS)  # folder = record name, "-" as "_"
    assert {"kv-cache", "softmax"} <= set(CHECKS)
    for r in RECORDS.values():  # the check reports under the record's name
        assert r.name in CONTRACT_OPS or r.name == "kv-cache", r.name  # (kv-cache: no contract)


def test_the_cli_checks_a_kv_cache(capsys):
    assert main(["check", "kv-cache", "tests.testing.kv_targets:model", "--examples", "3",
                 "--seed", "0"]) == 0
    assert "refllm oracle: kv-cache of tests.testing.kv_targets:model" in capsys.readouterr().out
    assert main(["check", "kv-cache", "tests.testing.kv_targets:truncating", "--examples", "40",
                 "--seed", "0"]) == 1


def test_the_conformance_suite_runs_the_kv_cache_and_softmax(pytester):
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--pyargs", "refllm.conformance", "--refllm-examples", "3",
        "--refllm-seed", "0", "--refllm-kv-cache=tests.testing.kv_targets:model",
        "--refllm-softmax=torch:softmax", "--refllm-softmax-features=masked_entries")
    result.assert_outcomes(passed=2, skipped=len(RECORDS) - 2)


def test_judge_knows_the_kv_cache_and_softmax():
    from tests.testing import kv_targets

    problem = KVProblem(ids=torch.tensor([[1, 2, 3, 4], [0, 5, 6, 7]]),
                        mask=torch.tensor([[True] * 4, [False, True, True, True]]),
                        steps=(2, 1, 1))
    report = judge("kv-cache", kv_targets.model, problem, dtype=torch.float64)
    assert report.passed and report.op == "kv-cache" and report.examples == 1
    x = torch.randn(3, 5, dtype=torch.float64)
    assert judge("softmax", torch.softmax, Case((x,), {"dim": 0})).passed


@pytest.mark.parametrize("fn", [torch.softmax, F.softmax], ids=["torch.softmax", "F.softmax"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_pytorch_softmax_passes(fn, dtype):
    report = check_softmax(fn, dtype=dtype, examples=30, seed=0)
    assert report.passed and report.op == "softmax", str(report)


def _softmax_without_the_shift(input, dim):
    e = input.exp()  # overflows for logits beyond about 88 in float32
    return e / e.sum(dim, keepdim=True)


def _softmax_along_the_last_axis(input, dim):
    return torch.softmax(input, dim=-1)


@pytest.mark.parametrize("bug", [_softmax_without_the_shift, _softmax_along_the_last_axis])
def test_a_wrong_softmax_fails(bug):
    with pytest.raises(OracleFailure):
        check_softmax(bug, examples=40, seed=0)


def test_pytorch_gives_nan_on_a_fully_masked_row_so_that_feature_is_opt_in():
    report = check_softmax(torch.softmax, features=("masked_rows",), examples=40, seed=0,
                           raise_on_failure=False)
    assert not report.passed and report.features == ("masked_rows",)
