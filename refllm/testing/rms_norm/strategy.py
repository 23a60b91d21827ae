"""Hypothesis strategies for RMSNorm and LayerNorm inputs, in PyTorch's calling convention.

``rms_norm_cases()`` draws `Case` objects for ``F.rms_norm(input, normalized_shape, weight,
eps=...)``; ``norm_cases(bias=True)`` the same for ``F.layer_norm`` (with a bias). Hypothesis
draws the structure (shapes, which features, scales); the values come from a drawn seed through
``torch.Generator``. The regimes where norm kernels go wrong are features, each drawn alone, in
pairs and freely (`refllm.testing.engine.odds.feature_plan`):

* "small_variance": inputs of scale 1e-3 to 3e-5, so that the mean square (1e-6 to 1e-9) is
  of the order of the default eps (1.2e-7) or below it: where eps placed inside or outside the
  square root, or the wrong dtype's eps, shows;
* "large_offset": a common offset of 1e2 to 1e3 on each slice, where a one-pass variance
  E[x^2] - E[x]^2 cancels;
* "no_weight", "eps" (an explicit eps), "multi_dim" (a ``normalized_shape`` of two axes), and
  refllm's RMSNorm variant "weight_offset" (Gemma's ``1 + w``); for LayerNorm "no_bias".

With ``residual=True`` (RMSNorm's fused residual add, every case) the case also carries the
keyword ``residual``: a tensor of the input's shape, of scale 0.1, 1 or 10 times the input's
(a residual stream that is smaller than, like, or larger than the new branch), times the small
scale with "small_variance" and without the common offset, so that the sum the norm sees stays
in the regime the features name.

About one case in four is kernel-sized: the normalised axis or the rows take a length of
`refllm.testing.engine.sizes.LONG_LENGTHS` (past the blocks of a row reduction, or the row groups
of a weight-gradient reduction).

>>> from hypothesis import given
>>> @given(rms_norm_cases())
... def test(case):
...     x, shape = case.args[:2]
...     assert tuple(x.shape[x.dim() - len(shape):]) == tuple(shape)
>>> test()
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from hypothesis import strategies as st

from refllm.testing.engine.case import Case
from refllm.testing.engine.odds import feature_plan, mostly
from refllm.testing.engine.odds import sizes as small_sizes
from refllm.testing.engine.sizes import DEFAULT_BUDGET, axis, fit, long_tier

__all__ = ["NORM_FEATURES", "RMS_ONLY", "norm_cases", "norm_default_calls", "rms_norm_cases",
           "rms_norm_default_calls"]

NORM_FEATURES = ("no_weight", "eps", "multi_dim", "small_variance", "large_offset")
"""The features both norms share (module docs)."""

RMS_ONLY = ("weight_offset",)
"""refllm's RMSNorm variant: the keyword ``weight_offset=1.0`` (Gemma's ``1 + w``)."""

EXCLUSIVE = (("small_variance", "large_offset"), ("no_weight", "weight_offset"))
"""Features never on together: an input is drawn small or offset; the offset applies to a
weight."""

EPS = (1e-5, 1e-6, 1e-8)
RESIDUAL_SCALES = (1.0, 10.0, 0.1)
SMALL_SCALES = (1e-3, 1e-4, 3e-5)
OFFSETS = (1e2, -3e2, 1e3)


@st.composite
def norm_cases(draw, *, dtype: torch.dtype = torch.float64,
               features: Sequence[str] = NORM_FEATURES, bias: bool = False, max_size: int = 6,
               long_axes: bool = True, budget: int = DEFAULT_BUDGET,
               residual: bool = False) -> Case:
    """`Case` objects ``(input, normalized_shape[, weight[, bias]]), {eps, ...}`` for a norm.

    ``bias``: draw LayerNorm's cases (a bias, feature "no_bias" leaves it out); ``residual``:
    every case has RMSNorm's keyword ``residual`` (module docs). ``features``:
    which of the module's features may be drawn (the others are never). The weight is
    ``1 + 0.1 n`` (``0.1 n`` with "weight_offset", Gemma's storage), the bias ``0.1 n`` (n
    standard normal).
    """
    names = [f for f in features]
    plan = draw(feature_plan(names, exclusive=EXCLUSIVE))
    on = {f: plan.on(draw, f, mostly if f == "eps" else st.booleans()) for f in names}
    for a, b in EXCLUSIVE:  # drawn freely, the second of a pair gives way
        if on.get(a) and on.get(b):
            on[b] = False
    long, rng = long_tier(draw, long_axes, ("norm", "rows"))
    norm_dims = 2 if on.get("multi_dim") else 1
    norm = [draw(small_sizes(max_size)) for _ in range(norm_dims)]
    if norm_dims == 1 and norm[0] == 1 and draw(st.booleans()):
        norm[0] = draw(st.integers(2, max(2, max_size)))  # one element normalises to +-1 only
    batch = [draw(small_sizes(max_size)) for _ in range(draw(st.integers(0, 2)))]
    if long == "norm":
        norm[-1] = axis(draw, "n", {}, max_size, fit(budget, *norm[:-1], *batch), rng)
    elif long == "rows":
        batch = [axis(draw, "n", {}, max_size, fit(budget, *norm), rng), *batch[1:]]
    shape = (*batch, *norm)
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    small = draw(st.sampled_from(SMALL_SCALES)) if on.get("small_variance") else 1.0
    x = x * (small if on.get("small_variance") else draw(st.sampled_from((1.0, 0.1, 10.0))))
    if on.get("large_offset"):
        x = x + draw(st.sampled_from(OFFSETS))
    args: list = [x.to(dtype), tuple(norm)]
    kwargs: dict = {}
    if residual:
        r = torch.randn(shape, generator=gen, dtype=torch.float64)
        kwargs["residual"] = (r * small * draw(st.sampled_from(RESIDUAL_SCALES))).to(dtype)
    affine = not on.get("no_weight")
    # a left-out weight is passed as None (the engine finds grad inputs by position)
    w = torch.randn(norm, generator=gen, dtype=torch.float64) * 0.1
    args.append((w if on.get("weight_offset") else 1.0 + w).to(dtype) if affine else None)
    if bias:
        shift = torch.randn(norm, generator=gen, dtype=torch.float64) * 0.1
        args.append(None if on.get("no_bias") else shift.to(dtype))
    if on.get("eps"):
        kwargs["eps"] = draw(st.sampled_from(EPS))
    if on.get("weight_offset") and affine:
        kwargs["weight_offset"] = 1.0
    regime = [f for f in ("small_variance", "large_offset") if on.get(f)]
    note = (f"input {shape}" + (" and residual" if residual else "")
            + "".join(f", {r}" for r in regime) + (f", long {long}" if long else ""))
    return Case(args=tuple(args), kwargs=kwargs, note=note)


def rms_norm_cases(*, dtype: torch.dtype = torch.float64,
                   features: Sequence[str] = NORM_FEATURES, max_size: int = 6,
                   long_axes: bool = True, budget: int = DEFAULT_BUDGET,
                   residual: bool = False) -> st.SearchStrategy[Case]:
    """`Case` objects for ``F.rms_norm(input, normalized_shape, weight, eps=...)`` and refllm's
    variants (``features`` from `NORM_FEATURES` and `RMS_ONLY`; see the module docs): the
    default call ``F.rms_norm(x, (n,), weight)`` about one case in five. ``residual``: every
    case adds the keyword ``residual`` (the fused residual add, ``(out, new_residual)``)."""
    unknown = [f for f in features if f not in NORM_FEATURES + RMS_ONLY]
    if unknown:
        raise ValueError(f"rms_norm_cases: unknown features {unknown}; choose from "
                         f"{list(NORM_FEATURES + RMS_ONLY)}")
    return norm_cases(dtype=dtype, features=features, max_size=max_size, long_axes=long_axes,
                      budget=budget, residual=residual)


def norm_default_calls(*, bias: bool, max_size: int = 6, long: bool = True,
                       budget: int = DEFAULT_BUDGET, seed: int = 20261204) -> list[Case]:
    """Fixed float64 examples of a decoder's norm call, ``norm(x, (n,), weight[, bias])``: a
    (4, 8) and a (2, 3, 16) input within ``max_size`` rows; with ``long``, a (3, 1100) input (a
    row past a block of 1024) and a (1100, 48) one (a weight gradient reduced over 1,100 rows)."""
    g = torch.Generator().manual_seed(seed)
    shapes: list[tuple[int, ...]] = [(min(4, max_size), 8), (2, min(3, max_size), 16)]
    if long:
        shapes += [s for s in ((3, 1100), (1100, 48)) if math.prod(s) <= budget]
    out = []
    for s in shapes:
        x = torch.randn(s, generator=g, dtype=torch.float64)
        params = [1.0 + 0.1 * torch.randn(s[-1], generator=g, dtype=torch.float64)]
        if bias:
            params.append(0.1 * torch.randn(s[-1], generator=g, dtype=torch.float64))
        out.append(Case(args=(x, (s[-1],), *params), kwargs={}, note=f"default call, input {s}"))
    return out


def rms_norm_default_calls(*, max_size: int = 6, long: bool = True,
                           budget: int = DEFAULT_BUDGET, residual: bool = False) -> list[Case]:
    """Fixed float64 examples of ``F.rms_norm(x, (n,), weight)`` (see `norm_default_calls`);
    with ``residual``, of ``rms_norm(x, (n,), weight, residual=r)``, r of the input's scale."""
    calls = norm_default_calls(bias=False, max_size=max_size, long=long, budget=budget)
    if not residual:
        return calls
    g = torch.Generator().manual_seed(20261206)
    return [Case(c.args, {"residual": torch.randn(c.args[0].shape, generator=g,
                                                  dtype=torch.float64)},
                 c.note + " and residual") for c in calls]
