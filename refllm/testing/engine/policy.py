"""The oracle's tolerance policy: when does a result in some dtype agree with the float64 reference?

Every check compares an implementation's result ``out`` (values or gradients, in the checked
dtype) with refllm's float64 reference ``ref`` computed on the *same* inputs upcast to float64, so
that rounding the inputs to the checked dtype is never counted as the implementation's error.

* float64 and float32, op with an error model (attention, optimizer trajectories): elementwise,
  every element,

      |out - ref| <= atol + rtol * |ref| + ERROR_BOUND_FACTOR * E

  with the ``"impl"`` bounds of :mod:`refllm.testing.engine.tolerances` (those of
  ``torch.testing.assert_close``) and E the element's a-priori rounding-error bound for a
  computation in the dtype, from first-order forward error analysis (Higham, *Accuracy and
  Stability of Numerical Algorithms*, 2nd ed., §3.5: ``|fl(AB) - AB| <= gamma_n |A||B|``, carried
  through the softmax and the backward pass; :mod:`refllm.testing.sdpa.error_bounds`). E is a
  worst case over all summation orders, so the verdict does not depend on the kernel's blocking or
  on the thread count, and it grows exactly where the element is ill-conditioned (large logits);
  on well-conditioned elements it is far below the fixed bound, which then decides alone. For
  optimizers E comes from running error analysis of the whole trajectory
  (:mod:`refllm.testing.optimizer.error_bounds`).
  Here and below ``atol`` is the dtype's atol times the output's magnitude, ``max|ref|``
  clamped to [1, 1e3] (`refllm.testing.engine.tolerances.magnitude_scale`): the same bound,
  relative to the output as a whole, for a problem and the problem scaled up by a power of two.
* float64, other ops: the fixed elementwise bound ``|out - ref| <= atol + rtol * |ref|``.
* float32, other ops: the same fixed bound; where it is exceeded, the result still passes when its
  worst error is within what the plain same-dtype computation itself makes on this input (the rule
  below). This is PyTorch's own rule (``get_tolerances`` in pytorch/pytorch
  test/test_transformers.py takes ``max(measured error of a low-precision reference,
  default_atol) * fudge``): a one-sample estimate of the rounding noise, fair on ill-conditioned
  inputs but statistical, which is why attention (whose logits reach 1e4) uses the rule above.
* bfloat16 / float16: an error within the elementwise a-priori bound above (where the op has an
  error model) is never a disagreement; beyond it, FlashAttention's rule
  (Dao-AILab/flash-attention tests/test_flash_attn.py,
  ``max|out - out_ref| <= 2 * max|out_pt - out_ref| + 1e-5``) with a noise floor measured from the
  reference itself (its hopper tests: ``2 * max|(out_ref + 0.3 - 0.3) - out_ref|``, the rounding
  error at the reference's scale; we take one unit in the last place at the largest ``|ref|``)::

      max|out - ref| <= k * max|plain - ref| + floor
      floor = k_noise * eps(dtype) * max|ref| + IMPL[dtype].atol * clamp(max|ref|, 1, 1e3)

  where ``plain`` is refllm's fast (unfused) op run in the checked dtype, ``k`` is
  ``LOW_PRECISION_FACTOR`` (2, FlashAttention's) for values and ``LOW_PRECISION_GRAD_FACTOR`` (4)
  for gradients, and ``k_noise`` is ``LOW_PRECISION_NOISE_FACTOR`` (2).

Non-finite values must match exactly (NaN where the reference has NaN, the same infinities),
except (float32 and below) where the plain same-dtype computation overflows as well, or where the
op shows that it forms an intermediate beyond the dtype's range (``overflow=True``; cross-entropy
with label smoothing sums log-probs of logits of 1e4 beyond float16's 65504 though the loss is
finite): such elements are not judged (the dtype's range, not the implementation, is at fault).

>>> import torch
>>> ref = torch.tensor([1.0, 2.0], dtype=torch.float64)
>>> compare(ref.float() + 1e-3, ref, dtype=torch.float32).passed
False
>>> compare(ref.float(), ref, dtype=torch.float32).passed
True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from refllm.testing.engine.tolerances import (
    ERROR_BOUND_FACTOR,
    IMPL,
    LOW_PRECISION_FACTOR,
    LOW_PRECISION_NOISE_FACTOR,
    Tolerance,
    magnitude_scale,
    tolerance,
)

LOW_PRECISION = (torch.bfloat16, torch.float16)


@dataclasses.dataclass
class Verdict:
    """The outcome of one comparison, with the worst element (``index`` in the result's shape)."""

    passed: bool
    index: tuple[int, ...] | None = None
    actual: float | None = None
    expected: float | None = None
    abs_error: float | None = None
    rel_error: float | None = None
    tolerance: float | None = None  # the allowed absolute error at the worst element
    rule: str = ""

    def describe(self) -> str:
        if self.index is None:
            return self.rule
        return (f"worst element at index {self.index}: actual {self.actual!r}, expected "
                f"{self.expected!r}, abs error {self.abs_error:.3g}, rel error "
                f"{self.rel_error:.3g}, allowed {self.tolerance:.3g} ({self.rule})")


def low_precision_bound(ref: torch.Tensor, plain: torch.Tensor, dtype: torch.dtype,
                        factor: float = LOW_PRECISION_FACTOR) -> float:
    """The largest max-abs error allowed in ``dtype``: ``k * max|plain - ref| + floor``.

    >>> ref = torch.tensor([1.0, 3.0], dtype=torch.float64)
    >>> plain = torch.tensor([1.0, 3.25], dtype=torch.float64)   # plain error 0.25
    >>> b = low_precision_bound(ref, plain, torch.bfloat16)
    >>> eps = torch.finfo(torch.bfloat16).eps                  # 2 ** -7
    >>> abs(b - (2 * 0.25 + 2 * eps * 3.0 + 1e-5 * 3.0)) < 1e-12  # atol * max|ref|
    True
    """
    ref64 = ref.detach().to("cpu", torch.float64)
    plain_err = _max_finite(plain.detach().to("cpu", torch.float64) - ref64)
    noise = torch.finfo(dtype).eps * _max_finite(ref64)  # one ulp at the largest |ref|
    floor = LOW_PRECISION_NOISE_FACTOR * noise + IMPL[dtype].atol * magnitude_scale(ref64)
    return factor * plain_err + floor


def _max_finite(diff: torch.Tensor) -> float:
    d = diff.abs()
    d = d[torch.isfinite(d)]
    return float(d.max()) if d.numel() else 0.0


def compare(actual: torch.Tensor, expected: torch.Tensor, *, dtype: torch.dtype,
            plain: Callable[[], torch.Tensor] | torch.Tensor | None = None,
            factor: float = LOW_PRECISION_FACTOR, floor: float = 0.0,
            bound: torch.Tensor | None = None, overflow: bool = False) -> Verdict:
    """Compare ``actual`` (any dtype/device) with the float64 reference under the policy.

    ``plain`` (a tensor, or a thunk computing it lazily) is the same-dtype plain reference; it is
    required for bfloat16/float16 and used for float32 only where the fixed bound is exceeded.
    ``factor`` is k of the rule (``LOW_PRECISION_GRAD_FACTOR`` for gradients); ``floor`` is an
    op's own estimate of unavoidable rounding noise, added to the bound (see `sdpa_floors`).
    ``bound`` (float32/float64) is an elementwise a-priori rounding-error bound of the op in
    ``dtype`` (see :mod:`refllm.testing.sdpa.error_bounds`); with it the rule is elementwise,
    ``|out - ref| <= atol + rtol |ref| + ERROR_BOUND_FACTOR * bound``, and no plain reference is
    consulted. ``overflow``: the op knows that the plain computation forms an intermediate
    beyond the dtype's range on this input; a non-finite result there is then not judged.
    """
    a = actual.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    bad = _nonfinite_mismatch(a, e)
    if bad is not None and dtype != torch.float64 and (plain is not None or overflow):
        p = a if overflow else plain() if callable(plain) else plain
        a, e = _unjudged_overflow(a, e, p)
        bad = _nonfinite_mismatch(a, e)
    if bad is not None:
        return _verdict(a, e, bad, tol=0.0, rule="non-finite values must match the reference")
    if a.numel() == 0:
        return Verdict(True, rule="empty")
    tol = tolerance(dtype, "impl") if dtype in IMPL else tolerance(torch.float32, "impl")
    tol = Tolerance(tol.rtol, tol.atol * magnitude_scale(e))  # the output's magnitude
    err = torch.nan_to_num((a - e).abs(), nan=0.0, posinf=0.0, neginf=0.0)
    allowed = tol.atol + tol.rtol * torch.nan_to_num(e.abs(), posinf=0.0)
    if dtype not in LOW_PRECISION and bound is not None:
        return _elementwise(a, e, err, allowed, bound, tol, dtype)
    if dtype not in LOW_PRECISION:
        worst = _unravel(int(torch.argmax(err / allowed)), a.shape)
        fixed = f"fixed bound rtol={tol.rtol:g}, atol={tol.atol:.3g} for {dtype}"
        if bool((err <= allowed).all()) or dtype == torch.float64 or plain is None:
            return _verdict(a, e, worst, float(allowed[worst]), fixed,
                            passed=bool((err <= allowed).all()))
    p = plain() if callable(plain) else plain
    if p is None:
        raise ValueError(f"the {dtype} policy needs the same-dtype plain reference")
    limit = low_precision_bound(e, p, dtype, factor) + floor
    worst = _unravel(int(torch.argmax(err)), a.shape)
    rule = (f"max abs error <= {factor:g} x error of the plain {dtype} "
            f"computation + noise floor = {limit:.3g}")
    verdict = _verdict(a, e, worst, limit, rule, passed=float(err.max()) <= limit)
    if not verdict.passed and bound is not None:  # within the worst-case rounding error: no bug
        rigorous = _elementwise(a, e, err, allowed, bound, tol, dtype)
        if rigorous.passed:
            return rigorous
        verdict.rule += (f"; beyond the a-priori bound too: at index {rigorous.index} abs error "
                         f"{rigorous.abs_error:.3g}, allowed {rigorous.tolerance:.3g} "
                         f"({rigorous.rule})")  # both bounds, on failure
    return verdict


def _elementwise(a: torch.Tensor, e: torch.Tensor, err: torch.Tensor, allowed: torch.Tensor,
                 bound: torch.Tensor, tol: Tolerance, dtype: torch.dtype) -> Verdict:
    b = bound.detach().to("cpu", torch.float64).expand(a.shape)
    allowed = allowed + ERROR_BOUND_FACTOR * torch.nan_to_num(b, nan=0.0, posinf=0.0)
    worst = _unravel(int(torch.argmax(err / allowed)), a.shape)
    rule = (f"elementwise: rtol={tol.rtol:g}, atol={tol.atol:.3g} for {dtype} + "
            f"{ERROR_BOUND_FACTOR:g} x the a-priori rounding-error bound of the element "
            f"({float(b[worst]):.3g} there)")
    return _verdict(a, e, worst, float(allowed[worst]), rule,
                    passed=bool((err <= allowed).all()))


def _unjudged_overflow(a: torch.Tensor, e: torch.Tensor,
                       plain: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the elements where the result is not finite though the reference is, *and* the plain
    same-dtype computation overflows too: the dtype's range, not the implementation, is at fault
    there (e.g. float16 cross-entropy with label smoothing over logits of +-1e4 sums log-probs
    beyond 65504, though the loss itself is finite)."""
    if plain is None:
        return a, e
    p = plain.detach().to("cpu", torch.float64)
    if p.shape != a.shape:
        return a, e
    drop = ~torch.isfinite(a) & torch.isfinite(e) & ~torch.isfinite(p)
    if not bool(drop.any()):
        return a, e
    return a.masked_fill(drop, 0.0), e.masked_fill(drop, 0.0)


def _nonfinite_mismatch(a: torch.Tensor, e: torch.Tensor) -> tuple[int, ...] | None:
    same_nan = torch.isnan(a) & torch.isnan(e)
    same_inf = torch.isinf(a) & torch.isinf(e) & (a == e)
    finite_both = torch.isfinite(a) & torch.isfinite(e)
    ok = same_nan | same_inf | finite_both
    if bool(ok.all()):
        return None
    return _unravel(int(torch.argmin(ok.to(torch.int8))), a.shape)


def _unravel(flat: int, shape: torch.Size) -> tuple[int, ...]:
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), shape)) if shape else ()


def _verdict(a: torch.Tensor, e: torch.Tensor, index: tuple[int, ...], tol: float, rule: str,
             passed: bool = False) -> Verdict:
    av, ev = float(a[index]), float(e[index])
    abs_err = abs(av - ev) if av != ev else 0.0
    rel = abs_err / abs(ev) if ev not in (0.0,) and abs(ev) != float("inf") else float(abs_err)
    if av != av or ev != ev:  # a NaN on one side
        abs_err = rel = float("nan")
    return Verdict(passed, index, av, ev, abs_err, rel, tol, rule)
