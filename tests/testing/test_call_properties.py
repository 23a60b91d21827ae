"""The properties of every function check about the call itself: the caller's inputs stay as
they were, the no-grad path agrees, and a non-finite gradient is its own failure."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from refllm.testing import check_cross_entropy, check_sdpa, check_softmax
from refllm.testing.engine.function import _first_change
from tests.testing.mutants import call_mutants as C


def _failed(report, prop):
    return next(d for d in report.discrepancies if d.property == prop)


def test_a_target_that_scales_its_query_in_place_is_named():
    report = check_sdpa(C.sdpa_scales_the_query_in_place, examples=10, seed=0,
                        raise_on_failure=False)
    assert report.failed_properties == ["inputs unchanged"], str(report)
    message = _failed(report, "inputs unchanged").message
    assert message.startswith("the target changed its input query: element (")
    assert "after the call" in message


def test_a_target_that_writes_into_the_logits_is_named():
    report = check_cross_entropy(C.ce_log_softmax_into_the_logits, examples=10, seed=0,
                                 raise_on_failure=False)
    assert report.failed_properties == ["inputs unchanged"], str(report)
    assert "changed its input input" in _failed(report, "inputs unchanged").message


def test_the_inference_path_is_judged_on_its_own():
    report = check_softmax(C.softmax_inference_path_without_the_shift, examples=30, seed=0,
                           raise_on_failure=False)
    assert report.failed_properties == ["no-grad output"], str(report)
    assert "under torch.no_grad()" in _failed(report, "no-grad output").message


def test_a_nan_gradient_names_the_input():
    report = check_softmax(C.softmax_backward_recomputed_without_the_shift, examples=30, seed=0,
                           raise_on_failure=False)
    assert report.failed_properties == ["finite gradients"], str(report)
    message = _failed(report, "finite gradients").message
    assert message.startswith("NaN in the gradient of input at (")


@pytest.mark.parametrize("fn", [F.scaled_dot_product_attention])
def test_pytorch_keeps_its_inputs_and_its_no_grad_path_agrees(fn):
    report = check_sdpa(fn, examples=20, seed=1)
    rows = {p.name: p for p in report.properties}
    assert rows["inputs unchanged"].examples > 0 and rows["no-grad output"].examples > 0


def test_a_change_is_found_bit_for_bit():
    x = torch.tensor([0.0, 1.0, float("nan")])
    assert _first_change(x, x.clone()) == ""  # NaN equals itself bit for bit
    assert "element (0,)" in _first_change(x, torch.tensor([-0.0, 1.0, float("nan")]))
    assert "became" in _first_change(x, x[:2].clone())


def test_a_failing_default_call_says_every_seed_repeats_it():
    def loss_times_1_5(input, target, reduction="mean"):
        return F.mse_loss(input, target, reduction=reduction) * 1.5

    from refllm.testing import check_mse

    report = check_mse(loss_times_1_5, examples=10, seed=0, raise_on_failure=False)
    assert report.case.note.startswith("default call")
    assert "every seed repeats this failure" in report.note and "note:" in str(report)


def test_a_broken_nan_convention_is_not_reported_as_raising():
    from refllm.testing.contract import Contract

    report = check_sdpa(F.scaled_dot_product_attention, examples=40, seed=0,
                        contract=Contract(fully_masked_rows="nan"), raise_on_failure=False)
    assert report.failed_properties == ["forward output"], str(report)
    assert "is not NaN" in report.discrepancies[0].message


def test_the_features_line_lists_only_what_the_contract_leaves():
    from refllm.testing.contract import Contract

    report = check_sdpa(F.scaled_dot_product_attention, examples=5, seed=0,
                        contract=Contract(masks="none", gqa=False, fully_masked_rows="avoid"))
    assert not {"masks", "gqa", "fully_masked_rows"} & set(report.features)
    assert {"causal", "scale"} <= set(report.features)
