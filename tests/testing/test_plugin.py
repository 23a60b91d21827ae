"""The pytest plugin and the conformance suite, run in a throw-away pytest (``pytester``)."""

import pytest

pytest_plugins = ["pytester"]

BUGGY = '''
import torch.nn.functional as F


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    return F.cross_entropy(input, target, ignore_index=ignore_index, reduction=reduction,
                           label_smoothing=label_smoothing)  # the weights are ignored
'''


def _run(pytester, *args):
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "--pyargs",
                                        "refllm.conformance", "--refllm-examples", "10",
                                        "--refllm-seed", "0", "-rs", *args)


def test_the_conformance_suite_passes_torch_cross_entropy_and_skips_the_ops_not_named(pytester):
    result = _run(pytester, "--refllm-cross-entropy=torch.nn.functional:cross_entropy")
    result.assert_outcomes(passed=1, skipped=4)
    result.stdout.fnmatch_lines(["*no sdpa implementation named*--refllm-sdpa=module:name*"])


def test_the_conformance_suite_fails_a_buggy_function_and_prints_the_report(pytester):
    pytester.makepyfile(buggy_ce=BUGGY)
    pytester.syspathinsert()
    result = _run(pytester, "--refllm-cross-entropy=buggy_ce:cross_entropy",
                  "--refllm-examples", "60")
    result.assert_outcomes(failed=1, skipped=4)
    result.stdout.fnmatch_lines(["*OracleFailure*", "*forward output*FAILED*",
                                 "*from buggy_ce import cross_entropy as fn*"])


def test_the_conformance_suite_checks_a_multihead_attention_class(pytester):
    result = _run(pytester, "--refllm-multihead=torch.nn:MultiheadAttention",
                  "-W", "ignore::UserWarning")
    result.assert_outcomes(passed=1, skipped=4)


def test_the_fixture_checks_a_function_given_in_the_test(pytester):
    pytester.makepyfile(test_mine='''
import torch
import torch.nn.functional as F


def test_mse(refllm_oracle):
    report = refllm_oracle.mse(F.mse_loss, dtype="float64")
    assert report.passed and report.dtype == torch.float64


def test_nothing_named_skips(refllm_oracle):
    refllm_oracle.sdpa()
''')
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--refllm-examples", "5")
    result.assert_outcomes(passed=1, skipped=1)


@pytest.mark.parametrize("name,expected", [("bf16", "bfloat16"), ("fp32", "float32"),
                                           ("torch.float16", "float16")])
def test_dtype_names_parse(name, expected):
    import torch

    from refllm.testing.plugin import parse_dtype

    assert parse_dtype(name) is getattr(torch, expected)
