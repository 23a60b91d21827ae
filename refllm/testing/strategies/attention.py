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

import torch
from hypothesis import strategies as st

from refllm.testing.case import Case
from refllm.testing.strategies._odds import FeaturePlan, feature_plan, sizes, sometimes

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


def _heads(draw, plan: FeaturePlan, max_size: int,
           head_axis: bool) -> tuple[tuple[int, ...], tuple[int, ...], bool]:
    """(query head dims, key/value head dims, enable_gqa): () when there is no head axis."""
    if plan.on(draw, "gqa", st.booleans()):
        g = draw(sizes(max(1, max_size // 2)))
        r = draw(sizes(max(1, max_size // g)))
        return (g * r,), (g,), True
    if head_axis or draw(st.booleans()):
        h = draw(sizes(max_size))
        return (h,), (h,), False
    return (), (), False


def _mask_kind(draw, plan: FeaturePlan) -> str:
    """"none", "float", "bool" or "causal" (``attn_mask`` and ``is_causal`` exclude each other)."""
    forced = {n: plan.forced[n] for n in ("mask", "causal") if n in plan.forced}
    if any(forced.values()):
        return "causal" if forced.get("causal") else draw(st.sampled_from(["float", "bool"]))
    if plan.mode != "free":
        return "none"
    # free: no mask only now and then, the masked cases are where attention bugs live, and
    # Hypothesis leans to a choice's first option (see refllm.testing.strategies._odds)
    kinds = (["float", "bool"] if "mask" in forced else []) + (
        ["causal"] if "causal" in forced else [])
    return draw(sometimes(st.just("none"), otherwise=st.sampled_from(kinds))) if kinds else "none"


@st.composite
def sdpa_cases(draw, *, dtype: torch.dtype = torch.float64, max_batch_dims: int = 2,
               max_size: int = 6, masks: bool = True, causal: bool = True, gqa: bool = True,
               dropout: bool = False, scale: bool = True, large_logits: bool = False,
               non_contiguous: bool = False, fully_masked_rows: bool = True) -> Case:
    """`Case` objects ``Case(args=(query, key, value), kwargs={...})`` for PyTorch's SDPA.

    Shapes: query ``(*batch, [h,] t, d)``, key ``(*batch, [g,] s, d)``,
    value ``(*batch, [g,] s, e)``, with t, s, d, e drawn independently (so t = 1,
    s != t, e != d and odd sizes all occur).

    About one case in five is the default call ``sdpa(query, key, value)`` (no keyword at all),
    about one in five uses exactly one of the keyword features, one in five exactly two, the rest
    draw each feature freely (`refllm.testing.strategies._odds.feature_plan`); t == s in about a
    quarter of the cases. `sdpa_default_calls` gives fixed examples of the default call.

    Parameters:
        dtype: floating-point dtype of query, key, value and float masks (drawn in float64, cast).
        max_batch_dims: 0 to ``max_batch_dims`` leading batch dims (sizes 1 to 3) before the
            optional head axis; with no batch dims and no head axis the inputs are 2-D ``(t, d)``.
        max_size: largest drawn size of h, t, s, d and e.
        masks: sometimes pass ``attn_mask``, boolean (True = take part) or additive float (0 or
            finite values, ``-inf`` where masked), of a shape broadcastable to ``(..., h, t, s)``.
        causal: sometimes pass ``is_causal=True`` (never together with ``attn_mask``).
        gqa: sometimes draw grouped-query inputs (``enable_gqa=True``, h a multiple of g).
        dropout: sometimes pass ``dropout_p`` in (0, 1); the result is then random, so pass a
            seeded ``generator=`` to refllm for a reproducible draw.
        scale: sometimes pass an explicit ``scale`` in [0.1, 2].
        large_logits: sometimes scale query and key so that the logits reach about 1e4.
        non_contiguous: sometimes draw query, key or value transposed in memory (non-contiguous).
        fully_masked_rows: allow masks in which a query sees no key at all (refllm and PyTorch 2.13
            give zeros there); when False every query sees at least one key.
    """
    switches = {"mask": masks, "causal": causal, "scale": scale, "gqa": gqa}
    plan = draw(feature_plan([n for n, on in switches.items() if on],
                             exclusive=[("mask", "causal")]))
    # half the default calls in a model's layout (b, h, t, d), where fused kernels take over
    model_layout = plan.default and max_batch_dims > 0 and draw(st.booleans())
    batch = (draw(st.integers(1, 3)),) if model_layout else tuple(
        draw(st.lists(st.integers(1, 3), max_size=max_batch_dims)))
    q_heads, kv_heads, enable_gqa = _heads(draw, plan, max_size, head_axis=model_layout)
    t, s, d, e = (draw(sizes(max_size)) for _ in range(4))
    if draw(st.integers(0, 3)) == 0:
        s = t  # self-attention, as in every decoder: a quarter of the cases, not one in six
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    # large logits saturate the softmax to one-hot rows, which hides most bugs in the weights:
    # an edge case to draw now and then, not a third of the time
    big = sometimes(st.sampled_from([10.0, 100.0]), otherwise=st.just(1.0))
    magnitude = draw(big) if large_logits else 1.0
    query = _tensor(draw, (*batch, *q_heads, t, d), g, magnitude, non_contiguous)
    key = _tensor(draw, (*batch, *kv_heads, s, d), g, magnitude, non_contiguous)
    value = _tensor(draw, (*batch, *kv_heads, s, e), g, 1.0, non_contiguous)
    kwargs: dict = {}
    # no mask only now and then: the masked cases are where attention bugs live, and Hypothesis
    # leans to a choice's first option (see refllm.testing.strategies._odds)
    kind = _mask_kind(draw, plan)
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
    return Case(args=(query, key, value), kwargs=kwargs).to(dtype)


def sdpa_default_calls(*, max_batch_dims: int = 2, max_size: int = 6) -> list[Case]:
    """Fixed float64 examples of the default calls, the same whatever the seed.

    ``sdpa(q, k, v)`` and ``sdpa(q, k, v, is_causal=True)`` on (b, h, t, d) inputs with t == s
    (a decoder's self-attention), and ``sdpa(q, k, v)`` with s != t (cross-attention); within
    ``max_size`` and ``max_batch_dims`` (no batch axis when it is 0).
    """
    g = torch.Generator().manual_seed(20260701)
    batch = (2,) if max_batch_dims > 0 else ()
    h, t, s, d = (min(n, max_size) for n in (3, 5, 4, 4))

    def qkv(t: int, s: int) -> tuple[torch.Tensor, ...]:
        return tuple(torch.randn((*batch, h, n, d), generator=g, dtype=torch.float64)
                     for n in (t, s, s))

    return [Case(args=qkv(t, t), kwargs={}, note="default call, t == s"),
            Case(args=qkv(t, t), kwargs={"is_causal": True}, note="causal default call, t == s"),
            Case(args=qkv(s, t), kwargs={}, note="default call, s != t")]
