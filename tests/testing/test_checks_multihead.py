"""check_multihead_attention: PyTorch's module passes; planted bugs are caught and reproduced."""

import warnings

import pytest
import torch

from refllm.testing import Contract, check_multihead_attention
from refllm.testing.checks import DEFAULT_MULTIHEAD_FEATURES, MULTIHEAD_FEATURES

SMALL = Contract(long_axes=False)  # these tests are about features, not sizes


class IgnoresKeyPadding(torch.nn.MultiheadAttention):
    """A planted bug: key_padding_mask is dropped."""

    def forward(self, query, key, value, key_padding_mask=None, **kwargs):
        return super().forward(query, key, value, **kwargs)


class DetachedOutputBias(torch.nn.MultiheadAttention):
    """A planted bug: no gradient reaches out_proj.bias (values are right)."""

    def forward(self, query, key, value, **kwargs):
        out, weights = super().forward(query, key, value, **kwargs)
        if self.out_proj.bias is not None:
            out = out - self.out_proj.bias + self.out_proj.bias.detach()
        return out, weights


class UnscaledLogits(torch.nn.MultiheadAttention):
    """A planted bug: the logits are not divided by sqrt(head_dim) (the query is multiplied by
    it, which without projection biases scales q W_q^T and so the logits)."""

    def forward(self, query, key, value, **kwargs):
        return super().forward(query * self.head_dim**0.5, key, value, **kwargs)


def _quiet_check(cls, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return check_multihead_attention(cls, raise_on_failure=False, max_size=4, **kwargs)


def test_a_module_that_drops_the_key_padding_mask_is_caught_and_reproduced(capsys):
    report = _quiet_check(IgnoresKeyPadding, examples=100, seed=0, contract=SMALL)
    assert not report.passed and "forward output" in report.failed_properties
    assert "key_padding_mask" in report.case.forward.kwargs
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(report.snippet, namespace)  # noqa: S102 - running the repro is the point
    assert namespace["max_abs_error"]["forward output"] > 1e-3


def test_a_parameter_that_gets_no_gradient_fails_its_own_property():
    report = _quiet_check(DetachedOutputBias, examples=60, seed=0, features=["bias"])
    assert report.failed_properties == ["grad wrt parameter 'out_proj.bias'"]


def test_unscaled_logits_are_caught():
    report = _quiet_check(UnscaledLogits, examples=60, seed=0, features=["need_weights"])
    assert "forward output" in report.failed_properties


def test_fully_masked_rows_are_a_feature_off_by_default_where_torch_gives_nan():
    assert "fully_masked_rows" in MULTIHEAD_FEATURES
    assert "fully_masked_rows" not in DEFAULT_MULTIHEAD_FEATURES
    report = _quiet_check(torch.nn.MultiheadAttention, examples=100, seed=0, contract=SMALL,
                          features=["attn_mask", "need_weights", "fully_masked_rows"])
    assert not report.passed and "finite output" in report.failed_properties
    assert bool(report.case.fully_masked_rows().any())


def test_the_report_lists_every_parameter_gradient():
    report = _quiet_check(torch.nn.MultiheadAttention, examples=30, seed=1)
    assert report.passed
    names = {p.name for p in report.properties}
    assert {"grad wrt parameter 'out_proj.weight'", "eval-mode output",
            "attention weights"} <= names


def test_an_unknown_feature_is_a_value_error():
    with pytest.raises(ValueError, match="unknown multihead features"):
        check_multihead_attention(torch.nn.MultiheadAttention, features=["rotary"])
