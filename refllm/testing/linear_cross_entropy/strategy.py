"""Hypothesis strategy for fused linear cross-entropy, in ``F.linear_cross_entropy``'s convention.

``linear_cross_entropy_cases()`` draws `Case` objects for ``F.linear_cross_entropy(input,
linear_weight, target, linear_bias=..., weight=..., reduction=..., ignore_index=...,
label_smoothing=...)``: hidden states (n, d), a classifier (V, d) and class-index targets (n,).
Features, each drawn alone, in pairs and freely (`refllm.testing.engine.odds.feature_plan`):
"bias" (``linear_bias``), "weights" (class weights), "ignore_index" (some targets ignored, all
of them now and then under "sum" and "none"), "label_smoothing", "large_logits" (hidden states
scaled so that logits reach 1e2 to 1e3), and the reduction, drawn from ``reductions``
(``reduction='none'`` is judged under the engine's random per-row upstream gradient).

About one case in four is kernel-sized: the vocabulary V or the rows n take a length of
`refllm.testing.engine.sizes.LONG_LENGTHS` (1000, 2047, 2049, 4097 and 2^k +- 1: never a
multiple of a vocabulary chunk, past a block of rows), the logits (n x V) within ``budget``.

>>> from hypothesis import given
>>> @given(linear_cross_entropy_cases())
... def test(case):
...     h, w, y = case.args
...     assert h.shape[-1] == w.shape[-1] and y.shape == h.shape[:-1]
>>> test()
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from hypothesis import strategies as st

from refllm.ops.choices import REDUCTIONS
from refllm.testing.engine.case import Case
from refllm.testing.engine.odds import check_reductions, feature_plan, mostly, reduction
from refllm.testing.engine.odds import sizes as small_sizes
from refllm.testing.engine.sizes import DEFAULT_BUDGET, axis, fit, long_tier

__all__ = ["LCE_FEATURES", "linear_cross_entropy_cases", "linear_cross_entropy_default_calls"]

LCE_FEATURES = ("bias", "weights", "ignore_index", "label_smoothing", "large_logits")
"""The features of `linear_cross_entropy_cases` (module docs)."""


@st.composite
def linear_cross_entropy_cases(draw, *, dtype: torch.dtype = torch.float64,
                               features: Sequence[str] = LCE_FEATURES,
                               reductions: Sequence[str] = REDUCTIONS, max_size: int = 6,
                               long_axes: bool = True, budget: int = DEFAULT_BUDGET) -> Case:
    """`Case` objects for ``F.linear_cross_entropy`` (see the module docs); the default call
    ``F.linear_cross_entropy(h, W, y)`` about one case in five (not without "mean")."""
    reductions = check_reductions(reductions)
    unknown = [f for f in features if f not in LCE_FEATURES]
    if unknown:
        raise ValueError(f"linear_cross_entropy_cases: unknown features {unknown}; choose from "
                         f"{list(LCE_FEATURES)}")
    names = list(features) + (["reduction"] if "mean" in reductions else [])
    plan = draw(feature_plan(names))
    on = {f: plan.on(draw, f, mostly if f == "reduction" else st.booleans()) for f in names}
    long, rng = long_tier(draw, long_axes, ("vocab", "rows"))
    n = draw(small_sizes(max_size))
    v = draw(st.integers(2, max(2, max_size)))
    d = draw(st.integers(1, max(1, 2 * max_size)))
    if long == "vocab":
        v = max(2, axis(draw, "v", {}, max_size, fit(budget, n, 1), rng))
    elif long == "rows":
        n = axis(draw, "n", {}, max_size, fit(budget, v, 1), rng)
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from((30.0, 100.0))) if on.get("large_logits") else 1.0
    h = torch.randn(n, d, generator=gen, dtype=torch.float64) * scale
    w = torch.randn(v, d, generator=gen, dtype=torch.float64) / max(1.0, d ** 0.5) * 2
    y = torch.randint(0, v, (n,), generator=gen)
    kwargs: dict = {}
    if on.get("bias"):
        kwargs["linear_bias"] = (torch.randn(v, generator=gen, dtype=torch.float64)
                                 * 0.5).to(dtype)
    if on.get("weights"):
        kwargs["weight"] = (torch.rand(v, generator=gen, dtype=torch.float64) + 0.25).to(dtype)
    if "mean" not in reductions or on.get("reduction"):
        kwargs["reduction"] = draw(reduction(reductions))
    if on.get("ignore_index"):
        index = draw(st.sampled_from((-100, 0)))
        # now and then the all-ignored batch, under "sum" and "none" only (the mean's 0 / 0,
        # nan with zero gradients, is tested in tests/ops/test_linear_cross_entropy.py)
        every = kwargs.get("reduction", "mean") != "mean" and draw(st.integers(0, 7)) == 7
        hit = torch.ones(n, dtype=torch.bool) if every else torch.rand(n, generator=gen) < 0.3
        y = torch.where(hit, torch.full_like(y, index), y)
        if not every and kwargs.get("reduction", "mean") == "mean" and bool((y == index).all()):
            y[0] = 1 if index == 0 else 0  # the mean keeps one target (v >= 2)
        kwargs["ignore_index"] = index
    if on.get("label_smoothing"):
        kwargs["label_smoothing"] = draw(st.sampled_from((0.1, 0.3)))
    note = f"input ({n}, {d}), vocabulary {v}" + (f", long {long}" if long else "")
    return Case(args=(h.to(dtype), w.to(dtype), y), kwargs=kwargs, note=note)


def linear_cross_entropy_default_calls(*, max_size: int = 6, long: bool = True,
                                       budget: int = DEFAULT_BUDGET) -> list[Case]:
    """Fixed float64 examples of ``F.linear_cross_entropy(h, W, y)``: 4 rows of width 8 over 5
    classes; with ``long``, 70 rows over a vocabulary of 300 (past row groups of 32 and chunks of
    128 and 256) and 300 rows over 2,049 (past chunks of 1024 and 2048)."""
    g = torch.Generator().manual_seed(20261208)
    shapes = [(min(4, max_size), 8, 5)]
    if long:
        shapes += [s for s in ((70, 16, 300), (300, 16, 2049)) if s[0] * s[2] <= budget]
    out = []
    for n, d, v in shapes:
        h = torch.randn(n, d, generator=g, dtype=torch.float64)
        w = torch.randn(v, d, generator=g, dtype=torch.float64) / d ** 0.5 * 2
        out.append(Case(args=(h, w, torch.randint(0, v, (n,), generator=g)), kwargs={},
                        note=f"default call, input ({n}, {d}), vocabulary {v}"))
    return out
