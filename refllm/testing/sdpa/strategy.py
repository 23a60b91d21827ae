"""Hypothesis strategy for scaled dot-product attention inputs, in PyTorch's calling convention.

Every drawn `Case` holds exactly the arguments of
``torch.nn.functional.scaled_dot_product_attention(query, key, value, **kwargs)``, so one case can
be fed to PyTorch, to refllm and to a user's kernel (``case.call(fn)``). Only non-default keyword
arguments appear in ``kwargs``. refllm's extra keywords (``causal_alignment``, ``generator``) are
not drawn: add them yourself where you need them.

>>> from hypothesis import given
>>> import torch.nn.functional as F
>>> @given(sdpa_cases(dtype=torch.float32))
... def test(case):
...     q, k, v = case.args
...     assert case.call(F.scaled_dot_product_attention).shape == (*q.shape[:-1], v.shape[-1])
>>> test()
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch
from hypothesis import strategies as st

from refllm._validation import require_int
from refllm.testing.engine.case import Case
from refllm.testing.engine.odds import FeaturePlan, feature_plan, sometimes
from refllm.testing.engine.odds import sizes as small_sizes
from refllm.testing.engine.scales import DECADES, UNIT, Regime, regime
from refllm.testing.engine.sizes import (
    DEFAULT_BUDGET,
    LONG_LENGTHS,
    LongRng,
    Ranges,
    axis,
    check_ranges,
    fit,
    long_length,
    long_tier,
)
from refllm.testing.sdpa.record import RECORD as _RECORD

NEG_INF = float("-inf")


def _tensor(draw, shape: tuple[int, ...], g: torch.Generator, magnitude: float,
            non_contiguous: bool) -> torch.Tensor:
    if non_contiguous and len(shape) >= 2 and draw(st.booleans()):
        swapped = (*shape[:-2], shape[-1], shape[-2])
        return torch.randn(swapped, generator=g, dtype=torch.float64).transpose(-1, -2) * magnitude
    return torch.randn(shape, generator=g, dtype=torch.float64) * magnitude


def _mask(draw, full: tuple[int, ...], g: torch.Generator, kind: str,
          fully_masked_rows: bool) -> torch.Tensor:
    """A bool (True = take part) or additive float mask broadcastable to ``full`` (..., h, t, s)."""
    rank = draw(st.integers(2, len(full)))
    shape = tuple(n if i >= len(full) - 2 or draw(st.booleans()) else 1
                  for i, n in enumerate(full[-rank:], start=len(full) - rank))
    density = draw(st.sampled_from([0.3, 0.7, 1.0]))
    keep = torch.rand(shape, generator=g, dtype=torch.float64) < density
    if fully_masked_rows and draw(st.booleans()):
        keep[..., draw(st.integers(0, shape[-2] - 1)), :] = False  # one query sees no key
    elif not fully_masked_rows:
        keep[..., 0] = True  # every query sees key 0
    if kind == "bool":
        return keep
    return torch.randn(shape, generator=g, dtype=torch.float64).masked_fill(~keep, NEG_INF)


SDPA_AXES = _RECORD.axes  # one declaration: the op's record
"""Axes whose lengths ``sizes=`` can bound: every batch dim, query heads, queries, keys, query/key
width, value width (key/value heads g follow from h)."""

LAYOUTS = ("bhtd", "bthd")
MASK_KINDS = {True: ("float", "bool"), "any": ("float", "bool"), "bool": ("bool",),
              "additive": ("float",), False: (), "none": ()}
CAUSAL_MODES = {True: "optional", "optional": "optional", "only": "only", False: "never",
                "never": "never"}


HEAD_DIM_LENGTHS = (96, 127, 128, 129, 160, 192, 255, 256)
"""Head dims of the kernel-sized tier's "d" axis: kernels specialise on 64 and 128 and take
other paths (or none) past 128, up to the 256 that FlashAttention supports."""
SLICE_COUNTS = (63, 64, 65, 255, 256, 257, 65535, 65536, 65537)
"""(batch x head) slice counts of the kernel-sized tier's "bh" axis: past warp- and block-sized
groups of slices, and past 65535, CUDA's limit on one grid dimension, where kernels that map
batch or heads to ``gridDim.y``/``gridDim.z`` fail to launch or skip slices (flashinfer#3125,
pytorch#142228). Capped by the budget: 65537 slices leave room for t = s = d = 1 to 4."""
LONG_AXES = ("s", "t", "ts", "bh", "d")
"""What the kernel-sized tier can make long: keys, queries, both (t == s), the number of
(batch x head) slices, or the head dim."""


def _choice(value, table: dict, name: str):
    try:
        return table[value]
    except (KeyError, TypeError):
        raise ValueError(f"{name} must be one of {sorted(map(repr, table))}, got {value!r}") \
            from None


def _heads(draw, plan: FeaturePlan, ranges: dict, max_size: int, head_axis: bool,
           cap: int) -> tuple[tuple[int, ...], tuple[int, ...], bool]:
    """(query head dims, key/value head dims, enable_gqa): () when there is no head axis."""
    lo, hi = ranges.get("h", (1, max(1, max_size)))
    hi = max(lo, min(hi, cap))
    if plan.on(draw, "gqa", st.booleans()) and hi >= 2:
        g = draw(small_sizes(max(1, hi // 2)))
        r_lo = max(1, -(-lo // g))
        if r_lo <= hi // g:  # r (query heads per group) = r_lo only now and then
            r = draw(sometimes(st.just(r_lo), otherwise=st.integers(r_lo + 1, hi // g))) \
                if r_lo < hi // g else r_lo
            return (g * r,), (g,), True
    if head_axis or lo > 1 or draw(st.booleans()):
        h = axis(draw, "h", {"h": (lo, hi)}, max_size)
        return (h,), (h,), False
    return (), (), False


def _many_slices(rng: LongRng, ranges: dict, budget: int) -> tuple[int, int] | None:
    """(b, h) with b * h just past a `SLICE_COUNTS` boundary, within the ranges and the budget
    (every slice holds at least one element); None when no count fits."""
    b_lo, b_hi = ranges.get("b", (1, LONG_LENGTHS[-1] * 16))
    h_lo, h_hi = ranges.get("h", (1, LONG_LENGTHS[-1] * 16))
    # the three groups (past 64, past 256, past 65535) hold three counts each: as likely
    counts = [n for n in SLICE_COUNTS if b_lo * h_lo <= n <= min(b_hi * h_hi, budget)]
    if not counts:
        return None
    n = rng.pick(counts)
    h = rng.choice((n, 1, 2, 4, 8))  # all heads, all batch, or a few heads of a long batch
    h = max(h_lo, min(h, h_hi, n))
    b = max(b_lo, min(-(-n // h), b_hi))
    h = max(h_lo, min(-(-n // b), h_hi))
    return b, h


def _slice_heads(draw, plan: FeaturePlan, h: int) -> tuple[tuple[int, ...], tuple[int, ...],
                                                             bool]:
    """Heads of a many-slice case: h query heads, grouped in twos or fours (GQA) when drawn and
    h allows it."""
    groups = [r for r in (2, 4) if h % r == 0]
    if groups and plan.on(draw, "gqa", st.booleans()):
        r = draw(st.sampled_from(groups))
        return (h,), (h // r,), True
    return (h,), (h,), False


LOGIT_OFFSETS = (1e3, -1e3, 1e4, -2e4)
"""Offsets of the keys in the logits' "offset" regime (every logit shifts by about twice as
much, at most 4e4 in magnitude: within float16's range)."""


def _logit_regime(draw, large: bool) -> Regime:
    """The logits' regime: small ones (near-uniform weights) always; large ones and a common
    shift of every logit of a row only with the "large_logits" feature."""
    return regime(draw, ("decade", "offset") if large else ("decade",),
                  decades=DECADES if large else tuple(f for f in DECADES if f < 1),
                  offsets=LOGIT_OFFSETS if large else ())


def _mask_kind(draw, plan: FeaturePlan, kinds: tuple[str, ...], causal_mode: str) -> str:
    """"none", "float", "bool" or "causal" (``attn_mask`` and ``is_causal`` exclude each other)."""
    if causal_mode == "only":
        return "causal"
    forced = {n: plan.forced[n] for n in ("mask", "causal") if n in plan.forced}
    if any(forced.values()):
        return "causal" if forced.get("causal") else draw(st.sampled_from(kinds))
    if plan.mode != "free":
        return "none"
    # free: no mask only now and then, the masked cases are where attention bugs live, and
    # Hypothesis leans to a choice's first option (see refllm.testing.engine.odds)
    options = (list(kinds) if "mask" in forced else []) + (
        ["causal"] if "causal" in forced else [])
    return draw(sometimes(st.just("none"), otherwise=st.sampled_from(options))) if options \
        else "none"


def _lengths(draw, long: str | None, rng: random.Random, ranges: dict, max_size: int,
             budget: int, bh: int, d: int, e: int) -> tuple[int, int]:
    """(t, s) within ``ranges`` and the budget.

    Every tensor of the call, (b, h, t, d), (b, g, s, d), (b, g, s, e), (b, h, t, e) and the
    scores (b, h, t, s), holds at most ``budget`` elements. ``long``: None, "s" (keys), "t"
    (queries) or "ts" (t == s, both long: a decoder's causal self-attention)."""
    width = max(d, e)
    if long == "ts":
        lo = max(ranges.get("t", (1, 1))[0], ranges.get("s", (1, 1))[0])
        hi = min(ranges.get("t", (1, 1 << 30))[1], ranges.get("s", (1, 1 << 30))[1])
        cap = min(math.isqrt(fit(budget, bh)), fit(budget, bh, width))
        n = long_length(rng, lo, min(hi, cap)) if lo <= hi else None
        if n is not None:
            return n, n
        long = "s"
    if long == "t":
        s = axis(draw, "s", ranges, max_size, fit(budget, bh, width))
        return axis(draw, "t", ranges, max_size, fit(budget, bh, max(s, width)), rng), s
    t = axis(draw, "t", ranges, max_size, fit(budget, bh, width))
    s_cap = fit(budget, bh, max(t, width))
    if long is None and draw(st.integers(0, 3)) == 0:
        s_lo, s_hi = ranges.get("s", (1, max_size))
        if s_lo <= t <= min(s_hi, s_cap):
            return t, t  # self-attention, as in every decoder: a quarter of the cases
    return t, axis(draw, "s", ranges, max_size, s_cap, rng if long == "s" else None)


@st.composite
def sdpa_cases(draw, *, dtype: torch.dtype = torch.float64, max_batch_dims: int = 2,
               max_size: int = 6, masks: bool | str = True, causal: bool | str = True,
               gqa: bool = True, dropout: bool = False, scale: bool = True,
               large_logits: bool = False, non_contiguous: bool = False,
               fully_masked_rows: bool = True, long_axes: bool = True,
               budget: int = DEFAULT_BUDGET, sizes: Ranges | None = None,
               head_dims: Sequence[int] | None = None, layout: str | None = None,
               scales: bool = True) -> Case:
    """`Case` objects ``Case(args=(query, key, value), kwargs={...})`` for PyTorch's SDPA.

    Shapes: query ``(*batch, [h,] t, d)``, key ``(*batch, [g,] s, d)``,
    value ``(*batch, [g,] s, e)``, with t, s, d, e drawn independently (so t = 1,
    s != t, e != d and odd sizes all occur).

    About one case in five is the default call ``sdpa(query, key, value)`` (no keyword at all),
    about one in five uses exactly one of the keyword features, one in five exactly two, the rest
    draw each feature freely (`refllm.testing.engine.odds.feature_plan`); t == s in about a
    quarter of the cases. `sdpa_default_calls` gives fixed examples of the default call.

    About one case in four is kernel-sized (``long_axes``): one of s, t, both (t == s), the
    number of (batch x head) slices ("bh": 63 to 65537, `SLICE_COUNTS`) or the head dim ("d":
    96 to 256, `HEAD_DIM_LENGTHS`, with e = d) is long; s and t take a length that crosses a
    block boundary (15, 16, 17, ..., 511, 512, 513, 1000, 2047, 2049, 4097;
    `refllm.testing.engine.sizes`), the other axes stay small, and no tensor of the call
    (q, k, v, the output, the (b, h, t, s) scores) holds more than ``budget`` elements (default
    2^20; short axes are capped by it too).

    About one case in four draws the values, and one in four the logits, out of unit scale
    (``scales``; `refllm.testing.engine.scales`): values times 1e-3 to 1e3 or plus a common
    offset of +-1e2 to 1e4; logits times 1e-3 to 1e-1 (near-uniform weights) and, with
    ``large_logits``, times 10 to 1e3 or shifted as a whole row by 2e3 to 4e4
    (`_apply_logit_regime`: the weights barely change, an un-shifted or finitely started
    running maximum does). tests/testing/regime_shares.py measures the shares.

    Parameters:
        dtype: floating-point dtype of query, key, value and float masks (drawn in float64, cast).
        max_batch_dims: 0 to ``max_batch_dims`` leading batch dims (sizes 1 to 3) before the
            optional head axis; with no batch dims and no head axis the inputs are 2-D ``(t, d)``.
        max_size: largest drawn size of a short axis (h, t, s, d, e).
        masks: sometimes pass ``attn_mask``, boolean (True = take part) or additive float (0 or
            finite values, ``-inf`` where masked), of a shape broadcastable to ``(..., h, t, s)``;
            "bool" or "additive" draws only that kind, False (or "none") never a mask.
        causal: sometimes pass ``is_causal=True`` (never together with ``attn_mask``); "only":
            every case is causal (and has no mask); False (or "never"): no case is.
        gqa: sometimes draw grouped-query inputs (``enable_gqa=True``, h a multiple of g).
        dropout: sometimes pass ``dropout_p`` in (0, 1); the result is then random, so pass a
            seeded ``generator=`` to refllm for a reproducible draw.
        scale: sometimes pass an explicit ``scale`` in [0.1, 2].
        large_logits: sometimes scale query and key so that the logits reach about 1e4.
        non_contiguous: sometimes draw query, key or value transposed in memory (non-contiguous).
        fully_masked_rows: allow masks in which a query sees no key at all (refllm and PyTorch 2.13
            give zeros there); when False every query sees at least one key.
        long_axes: draw the kernel-sized tier (above).
        scales: draw values and logits over decades and with common offsets (above).
        budget: the most elements of any tensor of one call (validated: at least 1).
        sizes: per-axis inclusive ranges ``{"h": (1, 4), "s": (1, 4096), ...}`` of `SDPA_AXES`
            (a range beyond ``max_size`` is reached by the long tier; its low end is always
            allowed); they replace ``max_size`` for the axes they name.
        head_dims: draw d from this set, and e = d (a kernel's head sizes, e.g. (64, 128)).
        layout: None (any rank, as above), "bhtd" (exactly (b, h, t, d)) or "bthd" (exactly
            (b, t, h, d), FlashAttention's layout; masks stay broadcastable to (b, h, t, s)).
    """
    kinds = _choice(masks, MASK_KINDS, "masks")
    causal_mode = _choice(causal, CAUSAL_MODES, "causal")
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout must be None or one of {LAYOUTS}, got {layout!r}")
    if head_dims is not None and (not head_dims or any(
            not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in head_dims)):
        raise ValueError(f"head_dims must be a non-empty set of positive ints, got {head_dims!r}")
    require_int("budget", budget, low=1)
    ranges = check_ranges(sizes, SDPA_AXES, "sdpa_cases")
    switches = {"mask": bool(kinds) and causal_mode != "only",
                "causal": causal_mode == "optional", "scale": scale, "gqa": gqa}
    plan = draw(feature_plan([n for n, on in switches.items() if on],
                             exclusive=[("mask", "causal")]))
    long, rng = long_tier(draw, long_axes, LONG_AXES if head_dims is None or any(
        n > 128 for n in head_dims) else LONG_AXES[:-1])
    slices = _many_slices(rng, ranges, budget) if long == "bh" else None
    if long == "bh" and slices is None:
        long = None
    b_lo, b_hi = ranges.get("b", (1, 3))
    fixed = layout is not None
    # half the default calls in a model's layout (b, h, t, d), where fused kernels take over
    model_layout = fixed or slices is not None or (
        plan.default and max_batch_dims > 0 and draw(st.booleans()))
    if slices is not None:
        batch = (slices[0],)
    else:
        batch = (draw(st.integers(b_lo, b_hi)),) if model_layout else tuple(
            draw(st.lists(st.integers(b_lo, b_hi), max_size=max_batch_dims)))
    n_batch = math.prod(batch)
    smallest_d = min(head_dims) if head_dims else ranges.get("d", (1, 1))[0]
    if slices is not None:
        q_heads, kv_heads, enable_gqa = _slice_heads(draw, plan, slices[1])
    else:
        q_heads, kv_heads, enable_gqa = _heads(draw, plan, ranges, max_size,
                                               head_axis=model_layout,
                                               cap=fit(budget, n_batch, smallest_d))
    bh = n_batch * math.prod(q_heads)
    if head_dims is not None:
        wide = sorted(n for n in head_dims if n > 128)
        d = e = rng.pick(wide) if long == "d" else draw(st.sampled_from(sorted(head_dims)))
    elif long == "d":
        d_lo, d_hi = ranges.get("d", (1, HEAD_DIM_LENGTHS[-1]))
        d_hi = max(d_lo, min(d_hi, fit(budget, bh, 2)))
        choices = [n for n in HEAD_DIM_LENGTHS if d_lo <= n <= d_hi]
        d = rng.pick(choices) if choices else d_hi
        e_lo, e_hi = ranges.get("e", (1, d))
        e = max(e_lo, min(d, e_hi))  # a kernel's value head dim is its query head dim
    else:
        d = axis(draw, "d", ranges, max_size, fit(budget, bh))
        e = axis(draw, "e", ranges, max_size, fit(budget, bh))
    t, s = _lengths(draw, long if long in ("s", "t", "ts") else None, rng, ranges, max_size,
                    budget, bh, d, e)
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    # large logits saturate the softmax to one-hot rows, which hides most bugs in the weights:
    # an edge case to draw now and then, not a third of the time
    big = sometimes(st.sampled_from([10.0, 100.0]), otherwise=st.just(1.0))
    magnitude = draw(big) if large_logits else 1.0
    logits = _logit_regime(draw, large_logits) if scales and magnitude == 1.0 else UNIT
    values = regime(draw) if scales else UNIT
    query = _tensor(draw, (*batch, *q_heads, t, d), g, magnitude, non_contiguous)
    key = _tensor(draw, (*batch, *kv_heads, s, d), g, magnitude, non_contiguous)
    value = _tensor(draw, (*batch, *kv_heads, s, e), g, 1.0, non_contiguous)
    query, key = _apply_logit_regime(logits, query, key)
    value = values.apply(value)
    kwargs: dict = {}
    kind = _mask_kind(draw, plan, kinds, causal_mode)
    if kind == "causal":
        kwargs["is_causal"] = True
    elif kind != "none":
        kwargs["attn_mask"] = _mask(draw, (*batch, *q_heads, t, s), g, kind, fully_masked_rows)
    if dropout and not plan.default and draw(st.booleans()):
        kwargs["dropout_p"] = draw(st.sampled_from([0.1, 0.5, 0.9]))
    if plan.on(draw, "scale", st.booleans()):
        kwargs["scale"] = draw(st.floats(0.1, 2.0))
    if enable_gqa:
        kwargs["enable_gqa"] = True
    if layout == "bthd":
        query, key, value = (x.transpose(1, 2).contiguous() for x in (query, key, value))
    note = ", ".join(filter(None, (
        f"long {long}: b*h={bh} t={t} s={s} d={d}" if long else "",
        f"logits {logits}" if logits.kind != "unit" else "",
        f"values {values}" if values.kind != "unit" else "")))
    return Case(args=(query, key, value), kwargs=kwargs, note=note).to(dtype)


def _apply_logit_regime(r: Regime, query: torch.Tensor,
                        key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``scale q k^T`` times ``r.factor`` (q and k each times its square root), or every
    logit shifted by about ``2 r.offset`` (queries plus 2 and keys plus ``r.offset / sqrt(d)``
    in every component: with the default scale the shift is ``2 r.offset + r.offset
    sum(q) / d``, the same for every key of a row, so the weights barely change (the queries'
    offset adds a spread of about 2 to the logits), but a kernel that does not subtract the row
    maximum, or starts its running maximum at a finite value, breaks)."""
    if r.kind == "decade":
        root = math.sqrt(r.factor)
        return query * root, key * root
    if r.kind == "offset":
        return query + 2.0, key + r.offset / math.sqrt(key.shape[-1])
    return query, key


def sdpa_default_calls(*, max_batch_dims: int = 2, max_size: int = 6,
                       sizes: Ranges | None = None, head_dims: Sequence[int] | None = None,
                       causal: bool | str = True, layout: str | None = None,
                       long: bool = True, budget: int = DEFAULT_BUDGET) -> list[Case]:
    """Fixed float64 examples of the default calls, the same whatever the seed.

    ``sdpa(q, k, v)`` and ``sdpa(q, k, v, is_causal=True)`` on (b, h, t, d) inputs with t == s
    (a decoder's self-attention), and ``sdpa(q, k, v)`` with s != t (cross-attention); within
    ``max_size`` and ``max_batch_dims`` (no batch axis when it is 0), and within a contract's
    ``sizes``, ``head_dims`` (d = e = the smallest), ``causal`` ("only": the causal call alone;
    False/"never": no causal call) and ``layout`` ("bthd": (b, t, h, d) tensors). With ``long``,
    two kernel-sized ones follow: ``sdpa(q, k, v, is_causal=True)`` with t == s == 300 and
    ``sdpa(q, k, v)`` with s == 1100 (shorter where ``sizes`` or ``budget`` demand it; left
    out below 17), and ``sdpa(q, k, v)`` on a batch of 65537 (one head, t = 1, s = 2; left out
    where the batch range, a batch-less layout or the budget does not allow it), so that a bug
    past a tile or past a grid limit is judged whatever the seed.
    """
    causal_mode = _choice(causal, CAUSAL_MODES, "causal")
    ranges = check_ranges(sizes, SDPA_AXES, "sdpa_default_calls")

    def clip(name: str, n: int) -> int:
        lo, hi = ranges.get(name, (1, max(1, max_size)))
        return max(lo, min(n, hi))

    g = torch.Generator().manual_seed(20260701)
    batch: tuple[int, ...] = (clip("b", 2),) if max_batch_dims > 0 or layout else ()
    h, t, s, d = clip("h", 3), clip("t", 5), clip("s", 4), clip("d", 4)
    d = e = min(head_dims) if head_dims else d
    if s == t and t > ranges.get("s", (1, t))[0]:
        s = t - 1  # cross-attention: s != t where the range allows it

    def qkv(t: int, s: int) -> tuple[torch.Tensor, ...]:
        out = tuple(torch.randn((*batch, h, n, w), generator=g, dtype=torch.float64)
                    for n, w in ((t, d), (s, d), (s, e)))
        return tuple(x.transpose(1, 2).contiguous() for x in out) if layout == "bthd" else out

    ts = min(t, ranges.get("s", (1, t))[1]) if "s" in ranges else t
    ts = max(ts, ranges.get("t", (1, 1))[0], ranges.get("s", (1, 1))[0])
    calls = [Case(args=qkv(ts, ts), kwargs={}, note="default call, t == s"),
             Case(args=qkv(ts, ts), kwargs={"is_causal": True},
                  note="causal default call, t == s"),
             Case(args=qkv(t, s), kwargs={}, note="default call, s != t")]
    if long:  # kernel-sized: past 64-, 128- and 256-key tiles and buffers, s past 1024
        batch = tuple(clip("b", 1) for _ in batch)  # one sequence, two heads: cheap
        h = clip("h", 2)
        bh, width = math.prod(batch) * h, max(d, e)
        t_hi, s_hi = (ranges.get(a, (1, LONG_DEFAULT_S))[1] for a in ("t", "s"))
        n = min(LONG_DEFAULT_T, t_hi, s_hi, math.isqrt(fit(budget, bh)), fit(budget, bh, width))
        if n >= 17 and n >= max(ranges.get(a, (1, 1))[0] for a in ("t", "s")):
            calls.append(Case(args=qkv(n, n), kwargs={"is_causal": True},
                              note=f"causal default call, t == s == {n}"))
        n = min(LONG_DEFAULT_S, s_hi, fit(budget, bh, max(t, width)))
        if n >= 17:
            calls.append(Case(args=qkv(t, n), kwargs={}, note=f"default call, s == {n}"))
        # past 65535 (batch x head) slices, CUDA's limit on one grid dimension: kernels that put
        # the batch (or batch x heads) on gridDim.y/z skip slices there without an error
        had_batch = bool(batch)
        batch, h, d, e = (MANY_SLICES_DEFAULT,), clip("h", 1), clip("d", 2), clip("e", 2)
        if head_dims:
            d = e = min(head_dims)
        t2, s2 = clip("t", 1), clip("s", 2)
        fits = MANY_SLICES_DEFAULT * h * max(t2, s2) * max(d, e, s2) <= budget
        b_hi = ranges.get("b", (1, MANY_SLICES_DEFAULT))[1]
        if had_batch and b_hi >= MANY_SLICES_DEFAULT and fits:
            calls.append(Case(args=qkv(t2, s2), kwargs={},
                              note=f"default call, {MANY_SLICES_DEFAULT} (batch x head) slices"))
    if causal_mode == "only":
        return [c for c in calls if c.kwargs]
    return [c for c in calls if causal_mode == "optional" or not c.kwargs]


MANY_SLICES_DEFAULT = 65537
"""The batch of the many-slice default call, a query (65537, 1, 1, 2) and keys and values
(65537, 1, 2, 2): past CUDA's 65535 per grid axis, in few elements."""
LONG_DEFAULT_T = 300
"""t == s of the kernel-sized causal default call: past tiles of 64, 128 and 256 keys."""
LONG_DEFAULT_S = 1100
"""s of the kernel-sized default call: past tiles of 64 to 1024 keys, with a partial last one."""
