"""Hypothesis strategy for the inputs of rotary position embedding, in refllm's convention.

``rope_cases()`` draws `Case` objects for ``rope(x, positions, offset=..., base=...,
layout=..., rotary_dim=..., scaling=...)``: ``x`` of shape (..., t, d), d even, 2 to 4 axes.
Features, each drawn alone, in pairs and freely (`refllm.testing.engine.odds.feature_plan`):

* "positions": explicit integer positions, (t,) or (b, t) (one row per element of the first
  axis), increasing with gaps, as a packed or padded batch has them;
* "offset": ``offset=`` for a KV cache's next positions;
* "long_positions": positions (or the offset) in the thousands, up to ``max_position``
  (default 8,192; the slow tier draws past 2^15), where angles held in low precision merge
  positions;
* "gptj": the interleaved layout ``layout="gptj"`` (else "neox", the half split);
* "partial_rotary": ``rotary_dim`` < d (GPT-NeoX, Phi): the last features pass through;
* "base": a base other than 10,000 (500,000 as Llama 3, 1e6, 100);
* "scaling": linear, NTK-aware, YaRN or Llama 3.1 frequency scaling.

About one case in four is kernel-sized: t or d takes a length of
`refllm.testing.engine.sizes.LONG_LENGTHS` (d rounded up to even).

>>> from hypothesis import given
>>> @given(rope_cases())
... def test(case):
...     assert case.args[0].shape[-1] % 2 == 0
>>> test()
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from hypothesis import strategies as st

from refllm.ops.rope_scaling import LinearScaling, Llama3Scaling, NTKScaling, YarnScaling
from refllm.testing.engine.case import Case
from refllm.testing.engine.odds import feature_plan
from refllm.testing.engine.odds import sizes as small_sizes
from refllm.testing.engine.sizes import DEFAULT_BUDGET, axis, fit, long_tier

__all__ = ["DEFAULT_MAX_POSITION", "ROPE_CASE_FEATURES", "rope_cases", "rope_default_calls"]

ROPE_CASE_FEATURES = ("positions", "offset", "long_positions", "gptj", "partial_rotary", "base",
                      "scaling")
"""The features of `rope_cases` (module docs)."""

DEFAULT_MAX_POSITION = 8192
"""The largest position drawn by default (Llama 3's context); the slow tier goes past 2^15."""

EXCLUSIVE = (("positions", "offset"),)
"""refllm's rope takes explicit positions or an offset, not both."""


def _scaling(draw: st.DrawFn, r: int) -> object:
    kind = draw(st.sampled_from(("linear", "ntk", "yarn", "llama3") if r >= 4 else
                                ("linear", "yarn", "llama3")))
    factor = draw(st.sampled_from((2.0, 4.0, 8.0)))
    if kind == "linear":
        return LinearScaling(factor)
    if kind == "ntk":
        return NTKScaling(factor)
    if kind == "yarn":
        return YarnScaling(factor, original_max_position_embeddings=draw(
            st.sampled_from((512, 4096))))
    return Llama3Scaling(factor=factor, original_max_position_embeddings=draw(
        st.sampled_from((512, 8192))))


@st.composite
def rope_cases(draw, *, dtype: torch.dtype = torch.float64,
               features: Sequence[str] = ROPE_CASE_FEATURES, max_size: int = 6,
               max_position: int = DEFAULT_MAX_POSITION, long_axes: bool = True,
               budget: int = DEFAULT_BUDGET) -> Case:
    """`Case` objects ``Case(args=(x[, positions]), kwargs={...})`` for refllm's ``rope`` (see
    the module docs); the default call ``rope(x)`` about one case in five."""
    unknown = [f for f in features if f not in ROPE_CASE_FEATURES]
    if unknown:
        raise ValueError(f"rope_cases: unknown features {unknown}; choose from "
                         f"{list(ROPE_CASE_FEATURES)}")
    plan = draw(feature_plan(list(features), exclusive=EXCLUSIVE))
    on = {f: plan.on(draw, f, st.booleans()) for f in features}
    if on.get("positions") and on.get("offset"):
        on["offset"] = False
    long, rng = long_tier(draw, long_axes, ("t", "d"))
    batch = [draw(small_sizes(max_size)) for _ in range(draw(st.integers(0, 2)))]
    t = draw(small_sizes(max_size))
    d = 2 * draw(st.integers(1, max(1, max_size // 2 + 1)))
    if (on.get("partial_rotary") or on.get("scaling")) and d < 4:
        d = 4  # a pass-through feature; NTK-aware scaling needs r >= 4
    if long == "t":
        t = axis(draw, "t", {}, max_size, fit(budget, d, *batch), rng)
    elif long == "d":
        n = axis(draw, "d", {}, max_size, fit(budget, t, *batch), rng)
        d = max(2, n + n % 2)
    shape = (*batch, t, d)
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * draw(
        st.sampled_from((1.0, 10.0, 0.1)))
    args: list = [x.to(dtype)]
    kwargs: dict = {}
    top = max(t + 1, max_position)
    low = 1000 if on.get("long_positions") and top > 1000 + t else 0
    if on.get("positions"):
        rows = batch[0] if batch and draw(st.booleans()) else 0
        count = max(rows, 1)
        gaps = torch.randint(1, 3, (count, t), generator=gen)
        start = torch.randint(low, max(low + 1, top - 2 * t), (count, 1), generator=gen)
        pos = (start + gaps.cumsum(-1) - gaps[:, :1]).clamp_max(top - 1)
        args.append(pos if rows else pos[0])
    elif on.get("offset") or low:
        kwargs["offset"] = int(torch.randint(max(low, 1), top - t + 1, (), generator=gen))
    if on.get("gptj"):
        kwargs["layout"] = "gptj"
    if on.get("partial_rotary"):
        kwargs["rotary_dim"] = 2 * draw(st.integers(2 if on.get("scaling") and d > 4 else 1,
                                                    d // 2 - 1))
    if on.get("base"):
        kwargs["base"] = draw(st.sampled_from((500000.0, 1e6, 100.0)))
    if on.get("scaling"):
        kwargs["scaling"] = _scaling(draw, kwargs.get("rotary_dim", d))
    note = f"x {shape}" + (", long positions" if low else "") + (f", long {long}" if long else "")
    return Case(args=tuple(args), kwargs=kwargs, note=note)


def rope_default_calls(*, max_size: int = 6, long: bool = True,
                       budget: int = DEFAULT_BUDGET) -> list[Case]:
    """Fixed float64 examples of a decoder's call ``rope(x)`` on (b, h, t, d) queries: a (2, 3,
    5, 8) one; with ``long``, a (1, 2, 1100, 64) one (positions past 1,024) and a KV cache's
    step ``rope(x, offset=4000)`` on (1, 2, 3, 128)."""
    g = torch.Generator().manual_seed(20261207)
    out = [Case(args=(torch.randn(2, min(3, max_size), 5, 8, generator=g,
                                  dtype=torch.float64),), kwargs={},
                note="default call, x (2, 3, 5, 8)")]
    if long and budget >= 2 * 1100 * 64:
        out.append(Case(args=(torch.randn(1, 2, 1100, 64, generator=g, dtype=torch.float64),),
                        kwargs={}, note="default call, x (1, 2, 1100, 64)"))
        out.append(Case(args=(torch.randn(1, 2, 3, 128, generator=g, dtype=torch.float64),),
                        kwargs={"offset": 4000}, note="a cached step, x (1, 2, 3, 128)"))
    return out
