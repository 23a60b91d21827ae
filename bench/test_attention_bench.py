"""refllm's fast scaled dot-product attention against PyTorch's SDPA (float32 forward, CPU).

Baselines: PyTorch with the MATH backend (the same algorithm, unfused) and with the default CPU
backend (fused, flash-style). Target: refllm within 2x of the MATH backend. Each benchmark checks
its result against a float64 MATH-backend reference (``kind="impl"``) before timing it.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from benchutil import role
from torch.nn.attention import SDPBackend, sdpa_kernel

from refllm.ops.attention import scaled_dot_product_attention
from refllm.testing import assert_close

B, H, D = 8, 8, 64
LENGTHS = [128, 512, 1024]


def _qkv(t: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(t)
    return tuple(torch.randn(B, H, t, D, generator=g) for _ in range(3))


def _torch_math(q, k, v):
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v)


def _torch_default(q, k, v):
    return F.scaled_dot_product_attention(q, k, v)


# name -> (function, role): the MATH backend is the baseline; refllm must be within 2x of it, and
# PyTorch's default backend is listed as a candidate without a target so its ratio is shown too.
IMPLS = {
    "torch-math": (_torch_math, "baseline", None),
    "torch-default": (_torch_default, "candidate", None),
    "refllm-fast": (scaled_dot_product_attention, "candidate", 2.0),
}


@pytest.mark.parametrize("name", list(IMPLS))
@pytest.mark.parametrize("t", LENGTHS)
def test_sdpa_forward_float32(benchmark, t, name):
    fn, kind, target = IMPLS[name]
    q, k, v = _qkv(t)
    reference = _torch_math(q.double(), k.double(), v.double())
    with torch.no_grad():
        assert_close(fn(q, k, v), reference, kind="impl", dtype=torch.float32)
    role(benchmark, f"sdpa-fwd-f32-b{B}h{H}t{t}d{D}", name, baseline=kind == "baseline",
         target=target)
    rounds = 20 if t <= 128 else 5
    with torch.no_grad():
        benchmark.pedantic(fn, args=(q, k, v), rounds=rounds, iterations=1, warmup_rounds=1)
