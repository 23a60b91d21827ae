"""Adding an op is its ops module, its testing folder and one registry line: nothing else.

A toy op (a scaled tanh, ``y = c * tanh(x)``) is written to a temporary package at run time: its
"ops" module (reference and naive twin), and its testing folder (a record and the record's two
hooks). Registered, it is checked by the generic check, `judge`, ``refllm check``, the pytest
plugin's options and the conformance suite, with no edit anywhere in refllm (docs/oracle.md,
"Adding an op").
"""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from refllm.cli import main
from refllm.testing import OracleFailure, judge
from refllm.testing.contract import AXES, OPS, Contract
from refllm.testing.engine.case import Case
from refllm.testing.engine.check import check
from refllm.testing.registry import RECORDS, register

pytest_plugins = ["pytester"]

OPS_MODULE = '''
import math
import torch


def scaled_tanh(input, scale=1.0):
    """y = scale * tanh(x)."""
    return scale * torch.tanh(input)


def scaled_tanh_naive(input, scale=1.0):
    out = torch.empty_like(input)
    for i, x in enumerate(input.reshape(-1).tolist()):
        out.view(-1)[i] = scale * math.tanh(x)
    return out


def wrong_scale(input, scale=1.0):
    return torch.tanh(input)  # forgets the scale


def detached(input, scale=1.0):
    return scale * torch.tanh(input.detach())  # no gradient
'''

RECORD_MODULE = '''
from refllm.testing.engine.record import Choice, OpRecord

FEATURES = ("scale",)

RECORD = OpRecord(
    name="toy-tanh", signature="toyop.ops.scaled_tanh",
    check="toyop.testing.check:check_toy_tanh",
    reference="toyop.ops:scaled_tanh", naive="toyop.ops:scaled_tanh_naive",
    strategy="toyop.testing.check:cases", default_calls="toyop.testing.check:calls",
    grad_inputs=("input",), positional=("input",),
    choices=(Choice("features", "toyop.testing.record:FEATURES",
                    help="comma-separated features (default: all)"),),
    axes=("numel",), contract=("dtypes", "sizes", "unsupported"),
    cases="toyop.testing.check:cases", calls="toyop.testing.check:calls",
)
'''

CHECK_MODULE = '''
import torch
from hypothesis import strategies as st

from refllm.testing.engine.case import Case
from refllm.testing.engine.check import check
from toyop.testing.record import RECORD


def check_toy_tanh(fn, **options):
    return check(RECORD, fn, **options)


@st.composite
def _case(draw, ctx):
    lo, hi = ctx.ranges.get("numel", (1, ctx.max_size))
    n = draw(st.integers(lo, hi))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    x = torch.randn(n, generator=g, dtype=torch.float64) * 3
    kwargs = {"scale": draw(st.floats(0.5, 4.0))} if ctx.has("scale") else {}
    return Case((x,), kwargs, note=f"input ({n},)")


def cases(ctx):
    return _case(ctx)


def calls(ctx):
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)
    return [Case((x,), {}, note="default call")]
'''


@pytest.fixture
def toy_op(tmp_path, monkeypatch):
    """The toy op's package on sys.path and its record registered, both undone after."""
    package = tmp_path / "toyop"
    (package / "testing").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "ops.py").write_text(textwrap.dedent(OPS_MODULE))
    (package / "testing" / "__init__.py").write_text("")
    (package / "testing" / "record.py").write_text(textwrap.dedent(RECORD_MODULE))
    (package / "testing" / "check.py").write_text(textwrap.dedent(CHECK_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    from toyop.testing.record import RECORD

    before = dict(RECORDS)
    register(RECORD)
    yield RECORD
    RECORDS.clear()
    RECORDS.update(before)
    for name in [m for m in sys.modules if m == "toyop" or m.startswith("toyop.")]:
        del sys.modules[name]


def test_the_generic_check_and_judge_take_the_new_op(toy_op):
    from toyop import ops

    report = check(toy_op, ops.scaled_tanh, examples=20, seed=0, naive=True)
    assert report.passed and report.op == "toy-tanh", str(report)
    assert report.examples >= 20 and report.features == ("scale",)  # + the default call
    with pytest.raises(OracleFailure, match="forward output"):
        check(toy_op, ops.wrong_scale, examples=20, seed=0)
    failed = check(toy_op, ops.detached, examples=20, seed=0, raise_on_failure=False)
    assert [d.property for d in failed.discrepancies] == ["grad wrt input"]
    case = Case((torch.tensor([0.5, -1.0]),), {"scale": 2.0})
    assert judge("toy-tanh", ops.scaled_tanh, case).passed
    assert not judge("toy-tanh", ops.wrong_scale, case, raise_on_failure=False).passed


def test_a_contract_reads_the_new_ops_fields_and_axes(toy_op):
    from toyop import ops

    assert AXES["toy-tanh"] == ("numel",) and "sizes" in OPS["toy-tanh"]
    report = check(toy_op, ops.scaled_tanh, examples=10, seed=0,
                   contract=Contract(sizes={"numel": (50, 60)}))
    assert report.passed and report.case is None
    with pytest.raises(ValueError, match="do not apply to toy-tanh"):
        check(toy_op, ops.scaled_tanh, contract=Contract(masks="none"))


def test_the_cli_checks_the_new_op(toy_op, capsys):
    assert main(["check", "toy-tanh", "toyop.ops:scaled_tanh", "--examples", "10",
                 "--seed", "0"]) == 0
    assert "refllm oracle: toy-tanh of toyop.ops:scaled_tanh" in capsys.readouterr().out
    assert main(["check", "toy-tanh", "toyop.ops:wrong_scale", "--examples", "10",
                 "--seed", "0", "--features", "scale"]) == 1
    assert main(["check", "toy-tanh", "toyop.ops:scaled_tanh", "--features", "colour"]) == 2


def test_the_plugin_and_the_conformance_suite_run_the_new_op(toy_op, pytester):
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--pyargs", "refllm.conformance", "--refllm-examples", "5",
        "--refllm-seed", "0", "--refllm-toy-tanh=toyop.ops:scaled_tanh",
        "--refllm-toy-tanh-features=scale")
    result.assert_outcomes(passed=1, skipped=len(RECORDS) - 1)
    failing = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--pyargs", "refllm.conformance", "--refllm-examples", "5",
        "--refllm-seed", "0", "--refllm-toy-tanh=toyop.ops:wrong_scale")
    failing.assert_outcomes(failed=1, skipped=len(RECORDS) - 1)


def test_a_name_is_registered_once(toy_op):
    with pytest.raises(ValueError, match="already registered"):
        register(toy_op)
    with pytest.raises(TypeError, match="takes an OpRecord"):
        register("toy")  # type: ignore[arg-type]
