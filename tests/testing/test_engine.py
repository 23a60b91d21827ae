"""The check engine finds planted bugs, shrinks them, and reports a repro that reproduces them."""

import pytest
import torch.nn.functional as F

from refllm.testing import OracleFailure, check_cross_entropy, check_sdpa
from refllm.testing.checks import Report
from refllm.testing.checks._engine import load, resolve


def sdpa_ignoring_scale(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                        scale=None, enable_gqa=False):
    """A planted bug: the explicit ``scale`` is ignored."""
    return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask,
                                          is_causal=is_causal, enable_gqa=enable_gqa)


def cross_entropy_ignoring_weights(input, target, weight=None, ignore_index=-100,
                                   reduction="mean", label_smoothing=0.0):
    """A planted bug: class weights are ignored."""
    return F.cross_entropy(input, target, ignore_index=ignore_index, reduction=reduction,
                           label_smoothing=label_smoothing)


def sdpa_that_raises(query, key, value, **kwargs):
    raise RuntimeError("kernel not implemented")


def test_a_planted_scale_bug_is_found_and_shrunk_to_a_tiny_case():
    report = check_sdpa(sdpa_ignoring_scale, examples=100, seed=0, raise_on_failure=False,
                        features=["scale"])
    assert not report.passed
    assert "forward output" in report.failed_properties
    q, k, v = report.case.args
    assert "scale" in report.case.kwargs
    assert q.numel() <= 4 and k.numel() <= 4  # shrunk: a query or two, a key or two
    worst = report.discrepancies[0].verdict
    assert worst.abs_error > worst.tolerance and worst.index is not None


def test_the_report_names_the_property_the_worst_element_and_a_snippet():
    report = check_sdpa(sdpa_ignoring_scale, examples=100, seed=0, raise_on_failure=False,
                        features=["scale"])
    text = str(report)
    assert "FAILED" in text and "forward output" in text and "worst element at index" in text
    assert "test_engine import sdpa_ignoring_scale as fn" in report.snippet
    assert report.property("forward output").status == "FAILED"
    assert report.property("raises on valid input").passed


def test_the_snippet_when_executed_reproduces_the_disagreement(capsys):
    report = check_sdpa(sdpa_ignoring_scale, examples=100, seed=0, raise_on_failure=False,
                        features=["scale"])
    namespace: dict = {}
    exec(report.snippet, namespace)  # noqa: S102 - running the repro is the point
    worst = report.discrepancies[0].verdict
    assert namespace["max_abs_error"]["forward output"] > worst.tolerance
    assert "forward output: max abs error" in capsys.readouterr().out


def test_a_cross_entropy_that_ignores_weights_is_caught_and_its_snippet_reproduces_it():
    report = check_cross_entropy(cross_entropy_ignoring_weights, examples=100, seed=1,
                                 raise_on_failure=False)
    assert not report.passed and "weight" in report.case.kwargs
    namespace: dict = {}
    exec(report.snippet, namespace)  # noqa: S102
    assert max(namespace["max_abs_error"].values()) > 1e-3


def test_raise_on_failure_raises_an_assertion_error_carrying_the_report():
    with pytest.raises(OracleFailure) as info:
        check_sdpa(sdpa_ignoring_scale, examples=50, seed=0, features=["scale"])
    assert isinstance(info.value, AssertionError)
    assert isinstance(info.value.report, Report) and not info.value.report.passed


def test_an_implementation_that_raises_fails_the_raises_property():
    report = check_sdpa(sdpa_that_raises, examples=5, raise_on_failure=False)
    assert report.failed_properties == ["raises on valid input"]
    assert "kernel not implemented" in report.discrepancies[0].message


def test_a_wrong_output_shape_is_its_own_property():
    report = check_sdpa(lambda q, k, v, **kw: q.sum(-1), examples=20, seed=0,
                        raise_on_failure=False)
    assert "output shape" in report.failed_properties
    assert "TODO" in report.snippet  # a lambda cannot be imported by name


def test_a_passing_check_counts_its_examples_per_property():
    report = check_sdpa(F.scaled_dot_product_attention, examples=10, seed=0,
                        raise_on_failure=False)
    assert report.passed and report.examples == 10 and report.snippet == ""
    assert report.property("grad wrt key").examples == 10


def test_targets_resolve_by_name_and_unimportable_ones_are_a_clear_value_error():
    fn, name = resolve("torch.nn.functional:cross_entropy")
    assert fn is F.cross_entropy and name == "torch.nn.functional:cross_entropy"
    assert resolve(F.cross_entropy)[1] == "torch.nn.functional:cross_entropy"
    with pytest.raises(ValueError, match="cannot import module"):
        load("no_such_module_xyz:fn")
    with pytest.raises(ValueError, match="has no attribute"):
        load("torch.nn.functional:no_such_fn")
    with pytest.raises(ValueError, match="module:name"):
        load("torch.nn.functional.cross_entropy")


def test_an_unknown_feature_is_a_value_error_and_dropout_says_why():
    with pytest.raises(ValueError, match="dropout cannot be compared"):
        check_sdpa(F.scaled_dot_product_attention, features=["dropout"])
