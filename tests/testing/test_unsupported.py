"""Inputs a target refuses are "unsupported", not failures and never passes; eager fallbacks of a
compiled target are reported; a bad target or device is refused before any example runs."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from refllm.testing import OracleFailure, check_cross_entropy, check_sdpa
from refllm.testing.engine.search import OracleWarning


def refuses_masks(q, k, v, attn_mask=None, **kwargs):
    if attn_mask is not None:
        raise NotImplementedError("masks are not supported")
    return F.scaled_dot_product_attention(q, k, v, **kwargs)


def refuses_everything(q, k, v, **kwargs):
    raise NotImplementedError("this kernel is a stub")


def test_refused_inputs_are_counted_apart_and_the_search_goes_on():
    report = check_sdpa(refuses_masks, seed=0, examples=20, raise_on_failure=False)
    assert report.passed and report.verdict == "passed"
    assert report.examples >= 20  # the judged examples, the fixed default calls among them
    assert report.unsupported > 0
    assert "NotImplementedError: masks are not supported" in report.unsupported_example
    assert "attn_mask=float32" in report.unsupported_example  # the refused input, described
    assert f"{report.unsupported} unsupported" in str(report)


def test_a_target_that_refuses_everything_never_passes():
    report = check_sdpa(refuses_everything, seed=0, examples=5, raise_on_failure=False)
    assert report.verdict == "unsupported" and not report.passed
    assert report.examples == 0 and report.unsupported > 0
    assert str(report).startswith("refllm oracle: sdpa") and "UNSUPPORTED" in str(report)
    with pytest.raises(OracleFailure):
        check_sdpa(refuses_everything, seed=0, examples=5)


def test_a_wrong_answer_is_still_a_failure_next_to_refusals():
    def wrong_unmasked(q, k, v, attn_mask=None, **kwargs):
        if attn_mask is not None:
            raise NotImplementedError("masks are not supported")
        return F.scaled_dot_product_attention(q, k, v, **kwargs) * 1.01

    report = check_sdpa(wrong_unmasked, seed=0, examples=20, raise_on_failure=False)
    assert report.verdict == "failed"
    assert "forward output" in report.failed_properties


def test_other_errors_stay_failures():
    def raises_value_error(q, k, v, **kwargs):
        raise ValueError("boom")

    report = check_sdpa(raises_value_error, seed=0, examples=5, raise_on_failure=False)
    assert report.verdict == "failed" and report.unsupported == 0
    assert report.failed_properties == ["raises on valid input"]


def test_eager_fallback_of_a_compiled_target_is_reported():
    def ce(logits, target, **kwargs):
        return F.cross_entropy(logits, target, **kwargs)

    compiled = torch.compile(ce, backend="eager", dynamic=False)  # Dynamo only: no C++ build
    torch._dynamo.reset()
    with torch._dynamo.config.patch(recompile_limit=2, automatic_dynamic_shapes=False):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            report = check_cross_entropy(compiled, seed=0, examples=12, grads=False,
                                         raise_on_failure=False)
    torch._dynamo.reset()
    assert report.passed
    assert report.warnings and "fell back to eager" in report.warnings[0]
    assert "recompile_limit" in report.warnings[0]
    assert any(issubclass(w.category, OracleWarning) for w in seen)
    assert "warning: a compiled target fell back to eager" in str(report)


def test_a_fullgraph_target_at_the_recompile_limit_raised_and_did_not_fall_back():
    def ce(logits, target, **kwargs):
        return F.cross_entropy(logits, target, **kwargs)

    compiled = torch.compile(ce, backend="eager", dynamic=False, fullgraph=True)
    torch._dynamo.reset()
    with torch._dynamo.config.patch(recompile_limit=2, automatic_dynamic_shapes=False):
        report = check_cross_entropy(compiled, seed=0, examples=12, grads=False,
                                     raise_on_failure=False)
    torch._dynamo.reset()
    assert report.failed_properties == ["raises on valid input"]
    message = report.discrepancies[0].message
    assert "(fullgraph=True) hit Dynamo's recompile limit" in message
    assert "dynamic=True" in message
    assert not any("fell back to eager" in w for w in report.warnings)


def test_no_warning_without_a_fallback():
    report = check_cross_entropy(F.cross_entropy, seed=0, examples=5)
    assert report.warnings == []


@pytest.mark.parametrize("bad", [42, torch.zeros(2)])
def test_a_target_that_is_not_callable_is_a_type_error(bad):
    with pytest.raises(TypeError, match=r"fn\b.*must be a function or class"):
        check_sdpa(bad, examples=1)


def test_a_name_of_something_not_callable_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="target 'torch:pi' is a float, not a function or class"):
        check_sdpa("torch:pi", examples=1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_an_absent_device_is_a_value_error_before_any_example():
    with pytest.raises(ValueError, match="'cuda' is not available"):
        check_sdpa(F.scaled_dot_product_attention, device="cuda", examples=1)


def test_a_device_name_that_is_not_a_device_is_a_value_error():
    with pytest.raises(ValueError, match="is not a torch device"):
        check_sdpa(F.scaled_dot_product_attention, device="gpu0", examples=1)
