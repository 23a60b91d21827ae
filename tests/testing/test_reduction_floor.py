"""A loss's "mean"/"sum" in bfloat16 is judged with a tree reduction's rounding bound: PyTorch's
own cross-entropy passes, a sum that loses its terms in a bfloat16 accumulator does not."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from refllm.testing.engine.case import Case
from refllm.testing.engine.tolerances import tree_reduction_error
from refllm.testing.judging import judge


def tied_logits(rows: int) -> Case:
    """Equal logits over 3 classes: every row's loss is ln 3 (1.1016 in bfloat16)."""
    g = torch.Generator().manual_seed(0)
    return Case((torch.zeros(rows, 3, dtype=torch.float64), torch.randint(0, 3, (rows,),
                                                                           generator=g)))


def sequential_bf16_mean(input, target, **kwargs):
    """Row losses added one by one into a bfloat16 accumulator: past 512 a term of 1.1 is below
    half an ulp and is lost."""
    rows = F.cross_entropy(input, target, reduction="none")
    total = torch.zeros((), dtype=input.dtype)
    for loss in rows:
        total = total + loss
    return total / rows.numel()


def test_pytorch_cross_entropy_mean_in_bfloat16_passes():
    # 1.125 against 1.0986 (3.4 ulps) failed "2 x plain error + 2 ulps" before the floor
    for rows in (255, 1000):
        report = judge("cross-entropy", F.cross_entropy, tied_logits(rows), dtype=torch.bfloat16)
        assert report.passed


def test_a_bfloat16_accumulator_that_loses_terms_fails():
    report = judge("cross-entropy", sequential_bf16_mean, tied_logits(4097),
                   dtype=torch.bfloat16, grads=False, raise_on_failure=False)
    assert report.failed_properties == ["forward output"]


def test_the_tree_bound_grows_with_log_n():
    u = torch.finfo(torch.float32).eps / 2
    assert abs(tree_reduction_error(1024, torch.float32) - 10 * u / (1 - 10 * u)) < 1e-15
    assert tree_reduction_error(1025, torch.float32) > tree_reduction_error(1024, torch.float32)
