"""Hypothesis strategy for mean-squared-error inputs, in PyTorch's calling convention.

``mse_cases()`` draws `Case` objects for ``F.mse_loss(input, target, reduction=...)``; the
reductions drawn can be narrowed by keyword, so an implementation that supports only part of
PyTorch's contract can still be checked on that part. Hypothesis draws the structure (shape,
scale, reduction); the values come from a drawn seed through ``torch.Generator``.

>>> from hypothesis import given
>>> @given(mse_cases(reductions=("sum",)))
... def test(case):
...     assert case.kwargs["reduction"] == "sum" and case.args[0].shape == case.args[1].shape
>>> test()
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from hypothesis import strategies as st

from refllm._validation import require_int
from refllm.ops.choices import REDUCTIONS
from refllm.testing.engine.case import Case
from refllm.testing.engine.odds import check_reductions, feature_plan, mostly, reduction
from refllm.testing.engine.odds import sizes as small_sizes
from refllm.testing.engine.scales import regime
from refllm.testing.engine.sizes import (
    DEFAULT_BUDGET,
    LONG_LENGTHS,
    Ranges,
    axis,
    check_ranges,
    fit,
    long_tier,
)
from refllm.testing.mse.record import RECORD as _RECORD

__all__ = ["mse_cases", "mse_default_calls", "MSE_AXES"]

MSE_AXES = _RECORD.axes  # one declaration: the op's record
"""``sizes={"numel": (lo, hi)}`` bounds the number of elements of an MSE case."""


@st.composite
def mse_cases(draw, *, dtype: torch.dtype = torch.float64,
              reductions: Sequence[str] = REDUCTIONS, max_size: int = 6,
              max_ndim: int = 3, write_defaults: bool = True, long_axes: bool = True,
              budget: int = DEFAULT_BUDGET, sizes: Ranges | None = None) -> Case:
    """`Case` objects for ``F.mse_loss(input, target, reduction=...)``: equal shapes of 0 to
    ``max_ndim`` axes of 1..``max_size`` each, values of scale 1e-3 to 1e3 or sharing a common
    offset of +-1e2 to 1e4 (half the cases; `refllm.testing.engine.scales`), cast to ``dtype``.
    About a third of the cases are the default call, the mean, with ``reduction`` written out
    as "mean" unless ``write_defaults`` is False (as the checks call: ``mse_loss(x, y)``).

    About one case in four is kernel-sized (``long_axes``): one axis takes a length that crosses a
    block boundary (15, 16, 17, ..., 1000, 2047, 2049, 4097; half the time one of the thousands),
    so the element count crosses the blocks of a blocked reduction; at most ``budget`` elements
    (default 2^20).
    ``sizes={"numel": (lo, hi)}`` keeps the element count in [lo, hi] (cases outside are
    redrawn smaller: the last axis is cut, or lengthened, to fit).
    """
    reductions = check_reductions(reductions)
    require_int("budget", budget, low=1)
    ranges = check_ranges(sizes, MSE_AXES, "mse_cases")
    long, rng = long_tier(draw, long_axes and max_ndim > 0)
    # the full rank first: drawn most; a long case has at least one axis
    ndim = draw(st.sampled_from(range(max_ndim, 0 if long else -1, -1)))
    where = draw(st.integers(0, ndim - 1)) if long else -1
    shape = tuple(draw(small_sizes(max_size)) for _ in range(ndim))
    if long:
        rest = math.prod(shape) // shape[where]
        # half the time in the thousands, so that the element count passes a block of 1024
        lo = 1000 if rng.random() < 0.5 and fit(budget, rest) >= 1000 else 1
        shape = shape[:where] + (axis(draw, "n", {"n": (lo, LONG_LENGTHS[-1])}, max_size,
                                      fit(budget, rest), rng),) + shape[where + 1:]
    shape = _numel_within(shape, ranges.get("numel"))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    # over decades or with a common offset of input and target (where x^2 - 2xy + y^2 cancels)
    scale = regime(draw, share=0.5)
    input = scale.apply(torch.randn(shape, generator=gen, dtype=torch.float64))
    target = scale.apply(torch.randn(shape, generator=gen, dtype=torch.float64))
    if draw(st.booleans()):  # some exact hits: zero error elements
        target = torch.where(torch.rand(shape, generator=gen) < 0.5, input, target)
    plan = draw(feature_plan(["reduction"] if "mean" in reductions else []))
    explicit = "reduction" not in plan.forced or plan.on(draw, "reduction", mostly)
    kwargs = ({"reduction": draw(reduction(reductions))} if explicit else
              {"reduction": "mean"} if write_defaults else {})
    return Case(args=(input.to(dtype), target.to(dtype)), kwargs=kwargs,
                note=f"input {tuple(shape)}" + (", long" if long else "") +
                (f", {scale}" if scale.kind != "unit" else ""))


def _numel_within(shape: tuple[int, ...], bounds: tuple[int, int] | None) -> tuple[int, ...]:
    """``shape`` with its last axis cut or lengthened so that its element count is in bounds."""
    if bounds is None:
        return shape
    lo, hi = bounds
    if not shape:
        return shape if lo <= 1 else (lo,)
    rest = math.prod(shape[:-1])
    last = min(max(shape[-1], -(-lo // rest)), max(1, hi // rest))
    if not lo <= rest * last <= hi:  # the other axes alone are too many: one axis
        return (max(lo, min(math.prod(shape), hi)),)
    return (*shape[:-1], last)


def mse_default_calls(*, max_size: int = 6, sizes: Ranges | None = None, long: bool = True,
                      budget: int = DEFAULT_BUDGET) -> list[Case]:
    """Fixed float64 examples of ``F.mse_loss(input, target)`` (no keyword: the mean), within
    ``sizes={"numel": (lo, hi)}``; with ``long``, a kernel-sized one of shape (3, 700) (2,100
    elements: past two blocks of 1024 with a partial third; fewer within ``budget``)."""
    numel = check_ranges(sizes, MSE_AXES, "mse_default_calls").get("numel")
    g = torch.Generator().manual_seed(20260703)
    base: list[tuple[int, ...]] = [(min(3, max_size), min(4, max_size)), (min(5, max_size),)]
    if long and min(2100, budget) >= 17:
        base.append((3, 700) if budget >= 2100 else (budget,))
    shapes = [_numel_within(s, numel) for s in base]
    return [Case(args=(torch.randn(s, generator=g, dtype=torch.float64),
                       torch.randn(s, generator=g, dtype=torch.float64)), kwargs={},
                 note=f"default call, input {s}") for s in shapes]
