"""PyTorch's own ops agree with refllm under every check (few examples here; more when slow)."""

import pytest
import torch
import torch.nn.functional as F

from refllm.testing import check_cross_entropy, check_mse, check_optimizer, check_sdpa

DTYPES = [torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_torch_sdpa_agrees_with_refllm(dtype):
    check_sdpa(F.scaled_dot_product_attention, dtype=dtype, examples=20, seed=0)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_torch_cross_entropy_agrees_with_refllm(dtype):
    check_cross_entropy(F.cross_entropy, dtype=dtype, examples=20, seed=0)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_torch_mse_agrees_with_refllm(dtype):
    check_mse(F.mse_loss, dtype=dtype, examples=20, seed=0)


@pytest.mark.parametrize("like,cls", [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam),
                                      ("sgd", torch.optim.SGD)])
def test_torch_optimizers_agree_with_refllm(like, cls):
    check_optimizer(cls, like=like, examples=10, seed=0)


def test_adam_with_coupled_weight_decay_is_not_adamw():
    report = check_optimizer(torch.optim.Adam, like="adamw", examples=100, seed=0,
                             steps=(1, 4), raise_on_failure=False)
    assert not report.passed
    namespace: dict = {}
    exec(report.snippet, namespace)  # noqa: S102 - running the repro is the point
    assert max(namespace["max_abs_error"].values()) > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_torch_ops_agree_with_refllm_on_many_examples(dtype):
    check_sdpa(F.scaled_dot_product_attention, dtype=dtype, examples=300, seed=1)
    check_cross_entropy(F.cross_entropy, dtype=dtype, examples=300, seed=1)
    check_mse(F.mse_loss, dtype=dtype, examples=300, seed=1)
