"""The one table of tolerances; no test or check writes a tolerance literal of its own.

Two kinds of comparison:

* ``"exact"`` — two float64 computations of the same formula (fast against naive): they differ only
  by rounding, so the bound is a few hundred ulps of float64 (rtol = atol = 1e-12).
* ``"impl"`` — an implementation in some dtype against refllm's float64 reference. For float64 and
  float32 the fixed bounds below are those of ``torch.testing.assert_close`` for the dtype (which
  PyTorch's own test-suite uses for SDPA and optimizers); where an op has an error model (attention,
  :mod:`refllm.testing.sdpa.error_bounds`; optimizers,
  :mod:`refllm.testing.optimizer.error_bounds`) the oracle adds ``ERROR_BOUND_FACTOR`` times its
  elementwise a-priori rounding-error bound, else it falls back, beyond the fixed bound, to the
  error of the same-dtype plain computation. For bfloat16 and float16 a fixed bound is either too
  loose or cries wolf, so the oracle applies the rule of FlashAttention's and PyTorch's SDPA tests
  (see :mod:`refllm.testing.engine.policy`): error(impl) <= k * error(same-dtype plain) + floor.
"""

from __future__ import annotations

import math
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
# The oracle's rule (refllm.testing.engine.policy), for a result `out` in bfloat16/float16,
# the float64 reference `ref` and the same-dtype plain reference `plain` (refllm's fast op run
# in that dtype):
#     max|out - ref| <= LOW_PRECISION_FACTOR * max|plain - ref| + floor,
#     floor = LOW_PRECISION_NOISE_FACTOR * eps(dtype) * max|ref| + IMPL[dtype].atol
# (eps(dtype) * max|ref|: one unit in the last place at the reference's largest magnitude).
# Sources: Dao-AILab/flash-attention tests/test_flash_attn.py asserts
#   max|out - out_ref| <= 2 * max|out_pt - out_ref| + 1e-5  (out_pt: the same-dtype PyTorch math),
#   for the output and for dq, dk, dv alike (older versions: 4x for a packed dqkv);
# its hopper/cute tests add a floor measured from the reference itself,
#   fwd_atol = 2 * max|(out_ref + 0.3 - 0.3) - out_ref|  (rounding noise at the reference's scale);
# pytorch/pytorch test/test_transformers.py `get_tolerances(ref, lp_ref, fudge_factor)` takes
#   atol = fudge * max(max|lp_ref - ref|, default_atol[dtype]) with per-tensor fudge factors
#   (e.g. out 4, grad_value 8, grad_key 25, grad_query 160 in its memory-efficient attention test).
# We keep FlashAttention's k = 2 for values; for gradients k = 4 (FlashAttention's older packed dqkv
# bound; PyTorch's fudge factors for gradients are larger still): a gradient sums over more terms
# (over queries for dk and dv, over the grouped heads with GQA) in an order a kernel may change, and
# PyTorch's own float32 SDPA exceeded 2x refllm's plain float32 error on dk with large logits.
LOW_PRECISION_FACTOR = 2.0
LOW_PRECISION_GRAD_FACTOR = 4.0
LOW_PRECISION_NOISE_FACTOR = 2.0

# float32/float64 with an error model (checks.error_bounds: attention; checks.optim_error_bounds:
# optimizer trajectories): the oracle's rule is elementwise,
#     |out - ref| <= IMPL[dtype].atol + IMPL[dtype].rtol * |ref| + ERROR_BOUND_FACTOR * E,
# E the first-order a-priori rounding-error bound of that element for a computation in the dtype
# (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., §3.5: |fl(AB) - AB| <=
# gamma_n |A||B|, carried through softmax and the backward pass). E is a worst case over every
# summation order, so it does not depend on the kernel, the blocking or the thread count, and it
# grows with the conditioning of the element (large logits). The factor 2 covers the dropped
# second-order terms and the constants rounded in the derivation; it is not tuned to any kernel.
ERROR_BOUND_FACTOR = 2.0


# The absolute part of every "impl" bound grows with the output's magnitude M = max|ref| (its
# largest finite element): atol * clamp(M, 1, 1e3). torch.testing's fixed atol presumes values of
# order one; against outputs of 1e3 it flagged the rounding of elements that cancel to near zero
# (optax's correct cross-entropy at logits near 1e4: an error of 7.4e-5 against 1.04e-5). Scaled,
# a check's verdict is the same for a problem and for the problem scaled up by a power of two
# (tests/testing/test_checks_policy.py). It does not shrink below M = 1: a small output can be
# the difference of large terms (a loss near 1e-6 at logits of 13), whose rounding does not
# shrink with it (a correct chunked float32 linear cross-entropy erred 2.7e-7 on a loss of
# 1.5e-6); an op that knows its error there says so with an error model.
MAGNITUDE_RANGE = (1.0, 1e3)


def magnitude_scale(expected: torch.Tensor) -> float:
    """``clamp(max|expected|, *MAGNITUDE_RANGE)`` over its finite elements (1 when it has none).

    >>> magnitude_scale(torch.tensor([0.5, -2e-5]))
    1.0
    >>> magnitude_scale(torch.tensor([-20.0, 3.0]))
    20.0
    >>> magnitude_scale(torch.tensor([float("inf"), 3e5]))
    1000.0
    """
    e = expected.detach().abs()
    e = e[torch.isfinite(e)]
    m = float(e.max()) if e.numel() else 1.0
    lo, hi = MAGNITUDE_RANGE
    return min(max(m, lo), hi)


def tolerance(dtype: torch.dtype, kind: str = "impl") -> Tolerance:
    """The tolerance for comparing a ``dtype`` result against the float64 reference."""
    if kind == "exact":
        return EXACT
    if kind != "impl":
        raise ValueError(f"kind must be 'exact' or 'impl', got {kind!r}")
    if dtype not in IMPL:
        raise TypeError(f"no tolerance for dtype {dtype}; expected one of {list(IMPL)}")
    return IMPL[dtype]


def gamma(n: int, dtype: torch.dtype) -> float:
    """Higham's gamma_n = n u / (1 - n u) with u the unit roundoff of ``dtype``.

    >>> round(gamma(2, torch.float64) / torch.finfo(torch.float64).eps, 6)
    1.0
    """
    u = torch.finfo(dtype).eps / 2
    if n * u >= 1:  # no first-order bound: 256 terms in bfloat16, 2048 in float16
        raise ValueError(f"gamma_n has no value for n = {n} in {dtype} (n u = {n * u:g} >= 1); "
                         "callers must drop the bound (see "
                         "refllm.testing.sdpa.check.valid_bounds)")
    return n * u / (1 - n * u)


def tree_reduction_error(n: int, dtype: torch.dtype) -> float:
    """gamma_k for k = ceil(log2 n): the relative rounding-error bound, per unit of sum |term|, of
    a sum of ``n`` terms added as a tree (pairwise, or in blocks summed pairwise) in ``dtype``
    (Higham 2002, §4.2). Real kernels reduce that way; adding thousands of terms one by one into
    a bfloat16 accumulator can lose them all and is not excused."""
    return gamma(max(1, math.ceil(math.log2(max(n, 2)))), dtype)
