"""The one table of tolerances; no test or check writes a tolerance literal of its own.

Two kinds of comparison:

* ``"exact"`` — two float64 computations of the same formula (fast against naive): they differ only
  by rounding, so the bound is a few hundred ulps of float64 (rtol = atol = 1e-12).
* ``"impl"`` — an implementation in some dtype against refllm's float64 reference. For float64 and
  float32 the bounds are fixed (those of ``torch.testing.assert_close`` for the dtype, which PyTorch's
  own test-suite uses for SDPA and optimizers). For bfloat16 and float16 a fixed bound is either
  too loose or cries wolf, so the oracle applies the rule of FlashAttention's and PyTorch's SDPA
  tests instead (see :mod:`refllm.testing`): error(impl) <= k * error(same-dtype naive) + floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float


EXACT = Tolerance(rtol=1e-12, atol=1e-12)

IMPL: dict[torch.dtype, Tolerance] = {
    torch.float64: Tolerance(rtol=1e-7, atol=1e-7),
    torch.float32: Tolerance(rtol=1.3e-6, atol=1e-5),
    torch.bfloat16: Tolerance(rtol=1.6e-2, atol=1e-5),
    torch.float16: Tolerance(rtol=1e-3, atol=1e-5),
}

# bf16/fp16 rule (FlashAttention's tests use k = 2, PyTorch's SDPA tests a per-op fudge factor).
LOW_PRECISION_FACTOR = 2.0


def tolerance(dtype: torch.dtype, kind: str = "impl") -> Tolerance:
    """The tolerance for comparing a ``dtype`` result against the float64 reference."""
    if kind == "exact":
        return EXACT
    if kind != "impl":
        raise ValueError(f"kind must be 'exact' or 'impl', got {kind!r}")
    if dtype not in IMPL:
        raise TypeError(f"no tolerance for dtype {dtype}; expected one of {list(IMPL)}")
    return IMPL[dtype]
