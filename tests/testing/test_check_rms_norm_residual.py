"""RMSNorm's fused residual add (``check_rms_norm(fn, residual="fused")``): no false alarm on
refllm's op nor on the plain PyTorch ``x + r`` then ``F.rms_norm``, in float32 and bfloat16; the
two outputs and three gradients judged apart; a failure's snippet reproduces it.

The planted bugs (old residual returned, the input normalised instead of the sum, the sum in
bfloat16, the caller's residual overwritten, the residual's gradient dropped) are in the mutant
corpus (tests/testing/mutants/norm_mutants.py).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from refllm.cli import main
from refllm.ops.norms import rms_norm
from refllm.testing.checks import check_rms_norm
from refllm.testing.rms_norm.adapters import fused_add_rms_norm
from tests.testing.mutants import norm_mutants as N

DTYPES = (torch.float32, torch.bfloat16)
PROPERTIES = ("forward output", "new residual", "grad wrt input", "grad wrt weight",
              "grad wrt residual", "inputs unchanged")


def torch_add_then_rms_norm(input, normalized_shape, weight=None, eps=None, *, residual):
    """The unfused block: the residual add in the input's dtype, then PyTorch's RMSNorm."""
    h = input + residual
    return F.rms_norm(h, normalized_shape, weight, eps), h


def returns_the_norm_alone(input, normalized_shape, weight=None, eps=None, *, residual):
    return F.rms_norm(input + residual, normalized_shape, weight, eps)


def vllm_style_kernel(x, residual, weight, eps):
    """A ``fused_add_rms_norm(x, residual, weight, eps)`` kernel, functional (not in place)."""
    h = x + residual
    return F.rms_norm(h, (h.shape[-1],), weight, eps), h


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("seed", (0, 1, 2))
@pytest.mark.parametrize("fn", [rms_norm, torch_add_then_rms_norm], ids=lambda f: f.__name__)
def test_no_false_alarm_on_refllm_and_on_the_plain_torch_block(fn, seed, dtype):
    report = check_rms_norm(fn, residual="fused", dtype=dtype, seed=seed, raise_on_failure=False)
    assert report.passed, str(report)
    for name in PROPERTIES:
        assert report.property(name).examples > 0, name


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_normalising_the_float32_sum_is_a_convention_not_a_bug(dtype):
    """The sum kept in float32 for the norm (rounded only for the returned residual) is more
    accurate than the plain same-dtype computation, which rounds it once first: it passes."""
    report = check_rms_norm(N.fused_add_rms_norm_float32_sum, residual="fused", dtype=dtype,
                            seed=3, features=["eps", "small_variance", "large_offset"],
                            raise_on_failure=False)
    assert report.passed, str(report)


def test_residual_true_reads_as_fused_and_false_as_none():
    assert check_rms_norm(rms_norm, residual=True, seed=0, examples=5).passed
    assert check_rms_norm(F.rms_norm, residual=False, seed=0, examples=5).passed


def test_a_target_returning_one_tensor_fails_on_the_output_shape():
    report = check_rms_norm(returns_the_norm_alone, residual="fused", seed=0, examples=5,
                            raise_on_failure=False)
    assert not report.passed
    assert "output shape" in report.failed_properties
    assert "a pair of tensors" in str(report)


def test_the_unfused_op_checked_as_fused_fails():
    """``F.rms_norm`` takes no ``residual=``: it raises on every case."""
    report = check_rms_norm(F.rms_norm, residual="fused", seed=0, examples=5,
                            raise_on_failure=False)
    assert report.failed_properties == ["raises on valid input"]


def test_the_snippet_of_a_dropped_residual_gradient_reproduces_it(capsys):
    report = check_rms_norm(N.rms_residual_backward_drops_the_residual_grad, residual="fused",
                            seed=0, examples=10, raise_on_failure=False)
    assert "grad wrt residual" in report.failed_properties
    namespace: dict = {}
    exec(report.snippet, namespace)  # noqa: S102 - running the repro is the point
    errors = namespace["max_abs_error"]
    assert errors["forward output"] < 1e-5 and errors["new residual"] < 1e-5
    assert errors["grad wrt residual"] > 1e-2 and errors["grad wrt input"] > 1e-2
    assert "grad wrt residual: max abs error" in capsys.readouterr().out


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_the_adapter_checks_a_vllm_style_kernel(dtype):
    report = check_rms_norm(fused_add_rms_norm(vllm_style_kernel), residual="fused",
                            features=["eps", "small_variance", "large_offset"], dtype=dtype,
                            seed=0, raise_on_failure=False)
    assert report.passed, str(report)


def test_the_command_line_takes_residual_fused():
    target = "tests.testing.test_check_rms_norm_residual:torch_add_then_rms_norm"
    assert main(["check", "rms-norm", target, "--residual", "fused", "--examples", "10",
                 "--seed", "0"]) == 0
    assert main(["check", "rms-norm", target, "--examples", "5", "--seed", "0"]) == 1
