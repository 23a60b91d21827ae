"""Hypothesis strategy for gradient clipping problems, in ``torch.nn.utils``'s calling convention.

A `ClipProblem` holds the gradients of a few parameters (float64, some None), ``max_norm`` and
the keywords of the call. Hypothesis draws the structure (how many parameters, their shapes,
the scale of each gradient, the norm type, whether the bound clips); the values come from a
drawn seed through ``torch.Generator``.

>>> from hypothesis import given
>>> @given(clip_problems())
... def test(problem):
...     assert len(problem.grads) >= 1 and problem.max_norm >= 0
>>> test()
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from hypothesis import strategies as st

from refllm.testing.engine.odds import feature_plan, mostly, sometimes
from refllm.testing.engine.sizes import DEFAULT_BUDGET, LONG_LENGTHS, Ranges, check_ranges

CLIP_FEATURES = ("norm_types", "none_grads", "single_tensor", "generator", "foreach",
                 "nonfinite", "mixed_scales")
"""What `check_clip_grad_norm` exercises by default (all of them): p = 1, 3 and inf besides 2
("norm_types"), parameters without a gradient, a lone tensor instead of a list, parameters
passed as a generator (read once, as ``model.parameters()`` is), ``foreach=`` given,
an infinite gradient with ``error_if_nonfinite=True`` ("nonfinite": the call must raise) and
gradients whose scales differ by decades ("mixed_scales")."""

AXES = ("numel",)
NORM_TYPES = (2.0, math.inf, 1.0, 3.0)
_RARE = sometimes(st.just(True), otherwise=st.just(False))


@dataclasses.dataclass
class ClipProblem:
    """One call: ``fn(params, max_norm, **kwargs)`` where param i has gradient ``grads[i]``
    (None: no gradient); ``how`` is how the parameters are passed: "list", "tensor" (one
    parameter, passed alone) or "generator"."""

    grads: list[torch.Tensor | None]
    max_norm: float
    kwargs: dict[str, Any]
    how: str = "list"
    note: str = ""

    def describe(self) -> str:
        shapes = [None if g is None else tuple(g.shape) for g in self.grads]
        return f"grads {shapes}, max_norm {self.max_norm:g}, {self.how}, kwargs {self.kwargs}"


def _largest_norm(grads: list[torch.Tensor | None], p: float) -> float:
    from refllm.ops.clip_grad import get_total_norm_naive

    return float(get_total_norm_naive([g for g in grads if g is not None], p))


@st.composite
def clip_problems(draw: Any, *, features: tuple[str, ...] = CLIP_FEATURES, max_size: int = 6,
                  long_axes: bool = True, budget: int = DEFAULT_BUDGET,
                  sizes: Ranges | None = None, dtype_max: float = 3.4e38) -> ClipProblem:
    """`ClipProblem` objects (float64 gradients). ``sizes={"numel": (lo, hi)}`` bounds each
    gradient's elements; with ``long_axes`` one gradient in about six is kernel-sized (a length
    from 15 to 4097 elements, past the blocks of a blocked reduction); ``dtype_max``: the largest
    value of the checked dtype, so that no drawn norm overflows it (float16's 65504)."""
    numel = check_ranges(sizes, AXES, "clip_problems").get("numel", (1, max_size ** 2))
    lo, hi = numel
    plan = draw(feature_plan(features, exclusive=[("single_tensor", "generator"),
                                                  ("single_tensor", "none_grads")]))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    how = "list"
    if plan.on(draw, "single_tensor", _RARE):
        how = "tensor"
    elif plan.on(draw, "generator", _RARE):
        how = "generator"
    count = 1 if how == "tensor" else draw(st.integers(1, 4))
    grads: list[torch.Tensor | None] = []
    for _ in range(count):
        if how != "tensor" and plan.on(draw, "none_grads", _RARE):
            grads.append(None)
            continue
        if long_axes and draw(_RARE):
            n = min(max(lo, draw(st.sampled_from(LONG_LENGTHS))), hi, budget)
            shape: tuple[int, ...] = (n,)
        else:
            dims = draw(st.lists(st.integers(1, max_size), min_size=0, max_size=2))
            shape = tuple(dims)
            while math.prod(shape) > hi:
                shape = shape[1:]
            if math.prod(shape) < lo:
                shape = (lo,)
        mixed = plan.on(draw, "mixed_scales", mostly)
        scale = draw(st.sampled_from([1.0, 1e-3, 1e3])) if mixed else 1.0
        grads.append(torch.randn(shape, generator=gen, dtype=torch.float64) * scale)
    if all(g is None for g in grads):
        grads[0] = torch.randn((), generator=gen, dtype=torch.float64)
    kwargs: dict[str, Any] = {}
    p = draw(st.sampled_from(NORM_TYPES)) if plan.on(draw, "norm_types", mostly) else 2.0
    if p != 2.0:
        kwargs["norm_type"] = p
    if plan.on(draw, "foreach", _RARE):
        kwargs["foreach"] = draw(st.booleans())
    norm = _largest_norm(grads, p)
    if norm * 8 >= dtype_max:  # keep the drawn norm inside the checked dtype's range
        factor = dtype_max / (norm * 64)
        grads = [None if g is None else g * factor for g in grads]
        norm *= factor
    # clip (most of the time), leave alone, or sit right at the threshold
    ratio = 0.5 if plan.default else draw(st.sampled_from([0.5, 0.1, 2.0, 1.0, 0.0]))
    max_norm = norm * ratio
    if plan.on(draw, "nonfinite", _RARE):
        live = [i for i, g in enumerate(grads) if g is not None and g.numel()]
        if live:
            i = live[draw(st.integers(0, len(live) - 1))]
            flat = grads[i].clone().reshape(-1)
            flat[draw(st.integers(0, flat.numel() - 1))] = math.inf
            grads[i] = flat.reshape(grads[i].shape)
            kwargs["error_if_nonfinite"] = True
    return ClipProblem(grads, max_norm, kwargs, how)


def clip_default_problems(*, max_size: int = 6, long: bool = True) -> list[ClipProblem]:
    """Fixed examples of the call every training loop makes, ``clip_grad_norm_(params, 1.0)``
    (the 2-norm): on a list of parameters that clips, on ``model.parameters()`` (a generator,
    read once) that clips, and on a list whose norm is below the bound (most steps of a run:
    nothing may change); with ``long`` a kernel-sized gradient of 3000 elements beside them. The
    same whatever the seed."""
    g = torch.Generator().manual_seed(20261204)
    n = max(1, min(max_size, 4))
    grads: list[torch.Tensor | None] = [torch.randn(n, n, generator=g, dtype=torch.float64),
                                        torch.randn(n, generator=g, dtype=torch.float64)]
    problems = [ClipProblem(grads, 1.0, {}, note="default call"),
                ClipProblem(grads, 1.0, {}, how="generator",
                            note="default call on model.parameters()"),
                ClipProblem([None if x is None else x * 0.01 for x in grads], 1.0, {},
                            note="default call, below the bound")]
    if long:
        big = [*grads, torch.randn(3000, generator=g, dtype=torch.float64)]
        problems.append(ClipProblem(big, 1.0, {}, note="default call, 3000 elements"))
    return problems


__all__ = ["CLIP_FEATURES", "ClipProblem", "clip_default_problems", "clip_problems"]
