"""Hypothesis strategy for the inputs of a gated linear unit, ``fn(gate, up)``.

``swiglu_cases()`` draws `Case` objects ``Case(args=(gate, up))``: two tensors of one shape (1
to 3 axes, the last the hidden width), standard normal times a drawn scale. Features, each drawn
alone, in pairs and freely (`refllm.testing.engine.odds.feature_plan`):

* "large_gates": gates of magnitude up to 1e2, where ``sigmoid`` and ``Phi`` saturate and a
  naive ``exp(-a)`` overflows;
* "zero_gates": some gates exactly 0 (silu and gelu are 0 there, their slope 1/2);
* "non_contiguous": the inputs are transposed views (a kernel that ignores strides reads the
  wrong elements).

About one case in four is kernel-sized: the hidden width takes a length of
`refllm.testing.engine.sizes.LONG_LENGTHS` (past a vector width or a block of 1024).

>>> from hypothesis import given
>>> @given(swiglu_cases())
... def test(case):
...     gate, up = case.args
...     assert gate.shape == up.shape
>>> test()
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from hypothesis import strategies as st

from refllm.testing.engine.case import Case
from refllm.testing.engine.odds import feature_plan
from refllm.testing.engine.odds import sizes as small_sizes
from refllm.testing.engine.sizes import DEFAULT_BUDGET, axis, fit, long_tier

__all__ = ["GLU_FEATURES", "swiglu_cases", "swiglu_default_calls"]

GLU_FEATURES = ("large_gates", "zero_gates", "non_contiguous")
"""The features of `swiglu_cases` (module docs)."""


@st.composite
def swiglu_cases(draw, *, dtype: torch.dtype = torch.float64,
                 features: Sequence[str] = GLU_FEATURES, max_size: int = 6,
                 long_axes: bool = True, budget: int = DEFAULT_BUDGET) -> Case:
    """`Case` objects ``(gate, up)`` for ``swiglu(gate, up)`` (see the module docs); the plain
    call on normal inputs about one case in five."""
    unknown = [f for f in features if f not in GLU_FEATURES]
    if unknown:
        raise ValueError(f"swiglu_cases: unknown features {unknown}; choose from "
                         f"{list(GLU_FEATURES)}")
    plan = draw(feature_plan(list(features)))
    on = {f: plan.on(draw, f, st.booleans()) for f in features}
    long, rng = long_tier(draw, long_axes)
    shape = [draw(small_sizes(max_size)) for _ in range(draw(st.integers(1, 3)))]
    if on.get("non_contiguous") and len(shape) == 1:
        shape.insert(0, draw(st.integers(2, max(2, max_size))))
    if long:
        shape[-1] = axis(draw, "n", {}, max_size, fit(budget, *shape[:-1]), rng)
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from((1.0, 3.0, 0.3)))
    gate = torch.randn(shape, generator=gen, dtype=torch.float64) * scale
    up = torch.randn(shape, generator=gen, dtype=torch.float64)
    if on.get("large_gates"):
        gate = gate * draw(st.sampled_from((10.0, 30.0, 100.0)))
    if on.get("zero_gates"):
        gate = gate.masked_fill(torch.rand(shape, generator=gen) < 0.3, 0.0)
    gate, up = gate.to(dtype), up.to(dtype)
    if on.get("non_contiguous"):  # the same values, laid out transposed
        gate, up = (t.transpose(-1, -2).contiguous().transpose(-1, -2) for t in (gate, up))
    note = f"gate {tuple(shape)}" + "".join(f", {f}" for f in GLU_FEATURES if on.get(f))
    return Case(args=(gate, up), kwargs={}, note=note + (", long" if long else ""))


def swiglu_default_calls(*, max_size: int = 6, long: bool = True,
                         budget: int = DEFAULT_BUDGET) -> list[Case]:
    """Fixed float64 examples of a decoder's call, ``swiglu(gate, up)`` on (b, t, f) inputs: a
    (2, 3, 8) one within ``max_size``; with ``long``, a (3, 1100) one (past a block of 1024)."""
    g = torch.Generator().manual_seed(20261206)
    shapes: list[tuple[int, ...]] = [(2, min(3, max_size), 8)]
    if long and budget >= 3300:
        shapes.append((3, 1100))
    return [Case(args=(torch.randn(s, generator=g, dtype=torch.float64),
                       torch.randn(s, generator=g, dtype=torch.float64)), kwargs={},
                 note=f"default call, gate {s}") for s in shapes]
