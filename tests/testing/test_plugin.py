"""The pytest plugin and the conformance suite, run in a throw-away pytest (``pytester``)."""

import pytest
import torch
import torch._dynamo  # noqa: F401 - here, so that no in-process run below is its first import

from refllm.testing.registry import RECORDS

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
    result.assert_outcomes(passed=1, skipped=len(RECORDS) - 1)
    result.stdout.fnmatch_lines(["*no sdpa implementation named*--refllm-sdpa=module:name*"])


def test_the_conformance_suite_fails_a_buggy_function_and_prints_the_report(pytester):
    pytester.makepyfile(buggy_ce=BUGGY)
    pytester.syspathinsert()
    result = _run(pytester, "--refllm-cross-entropy=buggy_ce:cross_entropy",
                  "--refllm-examples", "60")
    result.assert_outcomes(failed=1, skipped=len(RECORDS) - 1)
    result.stdout.fnmatch_lines(["*OracleFailure*", "*forward output*FAILED*",
                                 "*from buggy_ce import cross_entropy as fn*"])
    # the report, not the frames of refllm's own search that led to it
    frames = [line for line in result.stdout.lines
              if "refllm/testing/" in line and not line.startswith("SKIPPED")]
    assert frames == [], frames


def test_the_conformance_suite_checks_a_multihead_attention_class(pytester):
    result = _run(pytester, "--refllm-multihead=torch.nn:MultiheadAttention",
                  "-W", "ignore::UserWarning")
    result.assert_outcomes(passed=1, skipped=len(RECORDS) - 1)


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


def test_the_command_line_choices_reach_the_checks(pytester):
    pytester.makepyfile(test_mine='''
import torch
import torch.nn.functional as F


def test_mse_draws_the_reductions_named(refllm_oracle):
    assert refllm_oracle.mse(F.mse_loss).features == ("sum",)


def test_the_optimizer_imitates_the_class_named(refllm_oracle):
    assert refllm_oracle.optimizer(torch.optim.SGD).features == ("sgd",)


def test_a_keyword_in_the_call_wins(refllm_oracle):
    assert refllm_oracle.check("mse", F.mse_loss, reductions=["none"]).features == ("none",)
''')
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--refllm-examples", "2",
                                          "--refllm-mse-reductions=sum",
                                          "--refllm-optimizer-like=sgd")
    result.assert_outcomes(passed=3)


def test_the_oracle_has_one_method_per_op_record_and_no_other(pytestconfig):
    from refllm.testing.plugin import Oracle

    oracle = Oracle(pytestconfig)
    assert all(callable(getattr(oracle, r.method)) for r in RECORDS.values())
    with pytest.raises(AttributeError, match="no check 'conv2d'.*'cross_entropy'"):
        oracle.conv2d  # noqa: B018


@pytest.mark.parametrize("option,message", [
    ("--refllm-dtype=int8", "--refllm-dtype: unknown dtype 'int8'"),
    ("--refllm-sdpa=no_such_package_xyz:attention", "cannot import module 'no_such_package_xyz'"),
    ("--refllm-sdpa-features=masks,warp_speed", "--refllm-sdpa-features: unknown sdpa "
                                                "features ['warp_speed']"),
    ("--refllm-mse-reductions=avg", "--refllm-mse-reductions: unknown mse reductions ['avg']"),
    ("--refllm-optimizer-like=lion", "--refllm-optimizer-like: unknown optimizer like ['lion']"),
    ("--refllm-optimizer-set=foo=1", "--refllm-optimizer-set: unknown hyper-parameter 'foo' "
                                     "of optimizer like adamw; the known ones: ['amsgrad', "),
    ("--refllm-optimizer-set=amsgrad=maybe", "--refllm-optimizer-set amsgrad: expected true "
                                             "or false, got 'maybe'"),
    ("--refllm-threads=0", "--refllm-threads: threads must be >= 1, got 0"),
    ("--refllm-device=gpu", "--refllm-device: device 'gpu' is not a torch device"),
    ("--refllm-mse-contract=tests.test_cli:HEAD_DIMS",
     "--refllm-mse-contract: Contract fields ['head_dims'] do not apply to mse"),
])
def test_a_bad_option_is_a_usage_error_not_a_failed_test(pytester, option, message):
    result = _run(pytester, option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str() and "collected" not in result.stdout.str()


def test_a_contract_named_on_the_command_line_reaches_the_check(pytester):
    pytester.makepyfile(test_mine='''
def test_causal_only(refllm_oracle):
    report = refllm_oracle.sdpa()
    assert report.passed and not report.unsupported
''')
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--refllm-examples", "2", "--refllm-seed", "0",
        "--refllm-sdpa=tests.test_cli:BUGGY.causal_only",
        "--refllm-sdpa-contract=tests.test_cli:CAUSAL_ONLY")
    result.assert_outcomes(passed=1)


def test_a_device_this_machine_lacks_is_a_usage_error(pytester, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = _run(pytester, "--refllm-mse=torch.nn.functional:mse_loss", "--refllm-device=cuda")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--refllm-device: device 'cuda' is not available on this machine" in (
        result.stderr.str())


def test_an_in_process_run_leaves_torch_dynamo_importable(pytester):
    """pytester's in-process runs drop the modules first imported inside them; torch._dynamo
    registers an operator library that cannot be registered twice, so re-importing it after such
    a run would fail every later test that imports it (torch.manual_seed does)."""
    pytester.makepyfile(test_dynamo='''
import torch._dynamo


def test_imports_dynamo():
    assert torch._dynamo is not None
''')
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    import importlib

    importlib.import_module("torch._dynamo")
    torch.manual_seed(0)


def test_set_holds_an_optimizers_hyper_parameters_fixed(pytester):
    # an Adam without maximize passes the conformance suite once maximize is held False
    args = ("--refllm-optimizer=tests.test_cli:BUGGY.adam_without_maximize",
            "--refllm-optimizer-like=adam")
    _run(pytester, *args).assert_outcomes(failed=1, skipped=len(RECORDS) - 1)
    _run(pytester, *args, "--refllm-optimizer-set=maximize=false").assert_outcomes(
        passed=1, skipped=len(RECORDS) - 1)


def test_set_is_validated_for_the_like_the_command_line_names(pytester):
    result = _run(pytester, "--refllm-optimizer-like=adam", "--refllm-optimizer-set=momentum=0.9")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--refllm-optimizer-set: unknown hyper-parameter 'momentum' of optimizer like adam" \
        in result.stderr.str()


def test_set_is_validated_for_the_like_a_test_chooses(pytester):
    # momentum is no AdamW hyper-parameter (the command line's default like), but SGD's: the
    # test's own like="sgd" decides, and the value reaches every param group
    pytester.makepyfile(test_mine='''
from tests.test_cli import BUGGY


def test_sgd_at_momentum_09(refllm_oracle):
    assert refllm_oracle.optimizer(BUGGY.sgd_at_momentum_09, like="sgd").passed
''')
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--refllm-examples", "3",
                                          "--refllm-seed", "0",
                                          "--refllm-optimizer-set=momentum=0.9")
    result.assert_outcomes(passed=1)
