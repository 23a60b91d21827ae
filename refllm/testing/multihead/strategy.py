"""Hypothesis strategy for multi-head attention: any torch.nn.MultiheadAttention set-up and call.

`multihead_cases` draws a `MultiheadCase`: the constructor's keyword arguments
(``MultiheadAttention(**case.init_kwargs)``), a state dict under PyTorch's parameter names
(``in_proj_weight`` or ``q_proj_weight``/``k_proj_weight``/``v_proj_weight``, ``in_proj_bias``,
``bias_k``, ``bias_v``, ``out_proj.weight``, ``out_proj.bias``) and the forward call as a
`refllm.testing.engine.case.Case` (``query, key, value`` and the keyword arguments
``key_padding_mask``, ``need_weights``, ``attn_mask``, ``average_attn_weights``, ``is_causal``).
So any module with PyTorch's interface can be built, loaded and called:
``case.call(case.build(MyMHA))``.

Sizes are small (every axis <= ``max_size``) so that refllm's naive loops stay quick. The values
of the weights, inputs and float masks come from a seeded ``torch.Generator`` (the seed is drawn;
Hypothesis shrinks sizes and flags, not individual values). ``dropout`` is always 0 (dropout
cannot match across implementations bit for bit). Masks are bool (True = ignore, PyTorch's MHA
convention) or additive float with some ``-inf``; a query may have all its keys masked, which
`MultiheadCase.fully_masked_rows` reports (PyTorch gives NaN there, refllm zeros).

>>> from hypothesis import given, settings
>>> @settings(max_examples=3, deadline=None)
... @given(multihead_cases())
... def check(case):
...     out, _ = case.call(case.build())
...     assert out.shape == case.forward.args[0].shape
>>> check()
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any

import torch
from hypothesis import strategies as st

from refllm._validation import require_int
from refllm.testing.engine.case import Case
from refllm.testing.engine.odds import feature_plan, sometimes
from refllm.testing.engine.odds import sizes as small_sizes
from refllm.testing.engine.sizes import (
    DEFAULT_BUDGET,
    Ranges,
    axis,
    check_ranges,
    fit,
    long_length,
    long_tier,
)
from refllm.testing.multihead.record import RECORD as _RECORD

MULTIHEAD_AXES = _RECORD.axes  # one declaration: the op's record
"""Axes whose lengths ``sizes=`` can bound: batch, heads, queries (target length), keys."""

NEG_INF = float("-inf")


@dataclasses.dataclass
class MultiheadCase:
    """A multi-head attention module (constructor kwargs + weights) and one call of its forward."""

    init_kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    forward: Case

    def build(self, cls: Any = torch.nn.MultiheadAttention, **overrides: Any) -> torch.nn.Module:
        """``cls(**init_kwargs, **overrides)`` with this case's weights loaded."""
        module = cls(**{**self.init_kwargs, **overrides})
        module.load_state_dict(self.state_dict)
        return module

    def call(self, module: Any) -> Any:
        """``module(*forward.args, **forward.kwargs)``."""
        return self.forward.call(module)

    def functional_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `refllm.ops.multihead.multi_head_attention` for this case."""
        sd, kw = self.state_dict, self.forward.kwargs
        names = ("in_proj_weight", "in_proj_bias", "q_proj_weight", "k_proj_weight",
                 "v_proj_weight", "bias_k", "bias_v")
        return {**{n: sd.get(n) for n in names},
                "out_proj_weight": sd["out_proj.weight"], "out_proj_bias": sd.get("out_proj.bias"),
                "add_zero_attn": self.init_kwargs["add_zero_attn"],
                "batch_first": self.init_kwargs["batch_first"], **kw}

    def call_functional(self, fn: Any) -> Any:
        """``fn(query, key, value, num_heads, **functional_kwargs())`` (refllm.ops' convention)."""
        return fn(*self.forward.args, self.init_kwargs["num_heads"], **self.functional_kwargs())

    def to(self, dtype: torch.dtype) -> MultiheadCase:
        """The same case with every floating-point tensor (weights, inputs, masks) cast."""
        sd = {k: v.detach().to(dtype) for k, v in self.state_dict.items()}
        return MultiheadCase({**self.init_kwargs, "dtype": dtype}, sd, self.forward.to(dtype))

    def fully_masked_rows(self) -> torch.Tensor:
        """Bool (b, t) (or (t,) unbatched): queries with every key masked in at least one head."""
        q, k = self.forward.args[0], self.forward.args[1]
        kw, h = self.forward.kwargs, self.init_kwargs["num_heads"]
        unbatched = q.ndim == 2
        if unbatched:
            q, k = q[None], k[None]
        elif not self.init_kwargs["batch_first"]:
            q, k = q.transpose(0, 1), k.transpose(0, 1)
        (b, t, _), s = q.shape, k.shape[1]
        ignored = torch.zeros(b, h, t, s, dtype=torch.bool)
        for name in ("attn_mask", "key_padding_mask"):
            m = kw.get(name)
            if m is None:
                continue
            m = m if m.dtype == torch.bool else m == NEG_INF
            if name == "key_padding_mask":
                m = m.reshape(b, 1, 1, s)
            elif m.ndim == 3:
                m = m.reshape(b, h, t, s)
            ignored = ignored | m
        extra = self.init_kwargs["add_bias_kv"] or self.init_kwargs["add_zero_attn"]
        rows = ignored.all(-1).any(1) & (not extra)
        return rows[0] if unbatched else rows

    def snippet(self, cls_name: str = "torch.nn.MultiheadAttention") -> str:
        """Runnable Python that rebuilds the module and the call."""
        from refllm.testing.engine.case import to_source

        return (f"import torch\nmodule = {cls_name}(**{to_source(self.init_kwargs)})\n"
                f"module.load_state_dict({to_source(self.state_dict)})\n"
                + self.forward.snippet("module").split("\n", 1)[1])


def _mask(g: torch.Generator, shape: tuple[int, ...], kind: str, dtype: torch.dtype):
    if kind == "bool":
        return torch.rand(shape, generator=g) < 0.3
    values = torch.randn(shape, generator=g, dtype=torch.float64)
    return values.masked_fill(torch.rand(shape, generator=g) < 0.2, NEG_INF).to(dtype)


def _causal(t: int, s: int, kind: str, dtype: torch.dtype) -> torch.Tensor:
    future = torch.ones(t, s, dtype=torch.bool).triu(1)
    if kind == "bool":
        return future
    return torch.zeros(t, s, dtype=dtype).masked_fill(future, NEG_INF)


def _optional(plan: Any, name: str, kinds: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A mask kind, or "none": as the plan forces it, else "none" only now and then."""
    forced = plan.forced.get(name, False)
    if forced is None:
        return sometimes(st.just("none"), otherwise=kinds)
    return kinds if forced else st.just("none")


def _lengths(draw: st.DrawFn, long: str | None, rng: random.Random, ranges: dict,
             max_size: int, budget: int, bh: int, c: int) -> tuple[int, int]:
    """(t, s): short, or one of them (or both, "ts") long, within the budget of the (b, h, t, s)
    weights and the (b, t, c) activations."""
    if long == "ts":
        lo = max(ranges.get("t", (1, 1))[0], ranges.get("s", (1, 1))[0])
        hi = min(ranges.get("t", (1, 1 << 30))[1], ranges.get("s", (1, 1 << 30))[1])
        n = long_length(rng, lo, min(hi, math.isqrt(fit(budget, bh)), fit(budget, bh, c)))
        if n is not None:
            return n, n
        long = "s"
    if long == "t":
        s = axis(draw, "s", ranges, max_size, fit(budget, bh, c))
        return axis(draw, "t", ranges, max_size, fit(budget, bh, max(s, c)), rng), s
    t = axis(draw, "t", ranges, max_size, fit(budget, bh, c))
    return t, axis(draw, "s", ranges, max_size, fit(budget, bh, max(t, c)),
                   rng if long == "s" else None)


@st.composite
def multihead_cases(draw: st.DrawFn, *, dtype: torch.dtype = torch.float64,
                    batch_first: bool | None = None, kdim_vdim: bool = True, bias: bool = True,
                    add_bias_kv: bool = True, add_zero_attn: bool = True,
                    key_padding_mask: bool = True, attn_mask: bool = True,
                    need_weights: bool = True, causal_extra_keys: bool = True,
                    max_size: int = 6, write_defaults: bool = True, long_axes: bool = True,
                    budget: int = DEFAULT_BUDGET, sizes: Ranges | None = None,
                    masks: str = "any", causal: str = "optional") -> MultiheadCase:
    """Draw a `MultiheadCase`; each keyword set False turns one feature off (never drawn).

    ``batch_first=None`` draws it; ``need_weights=False`` always calls with need_weights=False
    (True draws it, and ``average_attn_weights``); ``attn_mask`` covers 2-D and 3-D, bool and
    float masks and the causal mask with ``is_causal=True``; ``kdim_vdim`` draws key/value widths
    other than embed_dim (separate projection weights); ``causal_extra_keys=False`` never draws
    ``add_bias_kv``/``add_zero_attn`` together with the causal mask. Every axis is <=
    ``max_size``. About one case in five is the default call (``MultiheadAttention(c, h)``
    with PyTorch's default constructor keywords written out, called as ``module(query, key,
    value)``), one in five uses exactly one feature, one in five exactly two (see
    `refllm.testing.engine.odds.feature_plan`); `multihead_default_calls` gives fixed ones.
    ``write_defaults``: write ``need_weights=True`` out where the call leaves it at the default
    (the checks pass False, to call ``module(query, key, value)`` exactly).

    About one case in four is kernel-sized (``long_axes``): the key length s, the query length t,
    or both (t == s, self-attention) cross a block boundary (15, 16, 17, ..., 511, 512, 513, 1000,
    2047, 2049, 4097), the other axes small; no tensor of the call (the (b, h, t, s) weights, the
    (b, t, c) activations) holds more than ``budget`` elements (default 2^20). ``sizes``:
    inclusive ranges of `MULTIHEAD_AXES` replacing ``max_size``. ``masks``: "any", "bool" or
    "additive" (the kind of every mask drawn), or "none" (neither ``attn_mask`` nor
    ``key_padding_mask``); ``causal``: "optional", "only" (every call ``is_causal=True`` with
    its causal mask) or "never".
    """
    require_int("budget", budget, low=1)
    ranges = check_ranges(sizes, MULTIHEAD_AXES, "multihead_cases")
    if masks not in ("any", "bool", "additive", "none"):
        raise ValueError(f"masks must be 'any', 'bool', 'additive' or 'none', got {masks!r}")
    if causal not in ("optional", "only", "never"):
        raise ValueError(f"causal must be 'optional', 'only' or 'never', got {causal!r}")
    if masks == "none":  # no mask of the caller's; a causal-only kernel still gets its own
        key_padding_mask, attn_mask = False, causal == "only"
    if causal == "only":
        attn_mask = True
    mask_kinds = ["bool", "float"] if masks == "any" else ["bool"] if masks == "bool" else \
        ["float"]
    switches = {"kdim_vdim": kdim_vdim, "bias": bias, "add_bias_kv": add_bias_kv,
                "add_zero_attn": add_zero_attn, "key_padding_mask": key_padding_mask,
                "attn_mask": attn_mask, "need_weights": need_weights,
                "batch_first": batch_first is None}
    plan = draw(feature_plan([n for n, on in switches.items() if on]))
    long, rng = long_tier(draw, long_axes, ("s", "t", "ts"))
    h = axis(draw, "h", ranges, min(3, max_size))
    c = h * draw(small_sizes(max(1, max_size // h)))
    batched = st.integers(*ranges["b"]) if "b" in ranges else small_sizes(min(3, max_size))
    # None: unbatched (never on the default call)
    b = draw(batched if plan.default or "b" in ranges else
             sometimes(st.none(), otherwise=batched))
    t, s = _lengths(draw, long, rng, ranges, max_size, budget, (b or 1) * h, c)
    kdim = vdim = c
    if plan.on(draw, "kdim_vdim", st.booleans()):
        kdim, vdim = draw(small_sizes(max_size)), draw(small_sizes(max_size))
        if kdim == vdim == c and max_size > 1:  # the feature is on: a width other than c
            vdim = c - 1 if c > 1 else c + 1
    # no mask only now and then (see refllm.testing.engine.odds); drawn before the module so
    # that a causal case can leave out the extra keys (``causal_extra_keys=False``)
    am_kinds = st.sampled_from(["causal"] if causal == "only" else ["2d", "3d"] if
                               causal == "never" or masks == "none" else ["causal", "2d", "3d"])
    am_kind = "causal" if causal == "only" else draw(_optional(plan, "attn_mask", am_kinds))
    extra_keys = causal_extra_keys or am_kind != "causal"
    init = dict(embed_dim=c, num_heads=h, dropout=0.0,
                bias=not plan.on(draw, "bias", st.booleans()) if bias else False,
                add_bias_kv=extra_keys and plan.on(draw, "add_bias_kv", st.booleans()),
                add_zero_attn=extra_keys and plan.on(draw, "add_zero_attn", st.booleans()),
                kdim=kdim, vdim=vdim, batch_first=plan.on(draw, "batch_first", st.booleans())
                if batch_first is None else batch_first, dtype=dtype)
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    with torch.random.fork_rng():
        torch.manual_seed(int(torch.randint(0, 2**31, (), generator=g)))
        state = torch.nn.MultiheadAttention(**init).state_dict()
    state = {k: torch.randn(v.shape, generator=g, dtype=torch.float64).to(dtype) * 0.5
             for k, v in state.items()}  # random biases too, not PyTorch's zeros

    def seq(n: int, width: int) -> torch.Tensor:
        shape = (n, width) if b is None else (b, n, width) if init["batch_first"] else (n, b, width)
        return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)

    query = seq(t, c)
    self_attn = kdim == vdim == c and s == t and draw(st.booleans())
    key, value = (query, query) if self_attn else (seq(s, kdim), seq(s, vdim))
    kw: dict[str, Any] = {}
    kpm_kind = draw(_optional(plan, "key_padding_mask", st.sampled_from(mask_kinds)))
    if kpm_kind != "none":
        kw["key_padding_mask"] = _mask(g, (s,) if b is None else (b, s), kpm_kind, dtype)
    if am_kind != "none":
        kind = draw(st.sampled_from(mask_kinds))
        if am_kind == "causal":
            kw["attn_mask"], kw["is_causal"] = _causal(t, s, kind, dtype), True
        else:
            shape = (t, s) if am_kind == "2d" else ((b or 1) * h, t, s)
            kw["attn_mask"] = _mask(g, shape, kind, dtype)
    if not need_weights:
        kw["need_weights"] = False
    elif plan.on(draw, "need_weights", st.just(True)):  # PyTorch's default: True, averaged
        kw["need_weights"] = draw(st.booleans())
        if kw["need_weights"]:
            kw["average_attn_weights"] = draw(st.booleans())
    elif write_defaults:
        kw["need_weights"] = True
    note = f"h={h} c={c} b={b} t={t} s={s} kdim={kdim} vdim={vdim} self_attn={self_attn}"
    note += f", long {long}" if long else ""
    return MultiheadCase(init, state, Case((query, key, value), kw, note))


def multihead_default_calls(*, dtype: torch.dtype = torch.float64, bias: bool = True,
                            need_weights: bool = True, max_size: int = 6,
                            sizes: Ranges | None = None, long: bool = True,
                            budget: int = DEFAULT_BUDGET) -> list[MultiheadCase]:
    """Fixed default calls, the same whatever the seed: ``MultiheadAttention(c, h)`` (sequence
    first, PyTorch's default keywords written out) called as ``module(x, x, x)`` (self-attention)
    and ``module(query, key, value)`` with s != t. ``bias=False`` / ``need_weights=False``: the
    caller's features exclude PyTorch's default there, so the call takes the one allowed value.
    With ``long``, two kernel-sized self-attention calls follow (t == s == 150: past 64- and
    128-key tiles; shorter within ``sizes`` and ``budget``): ``module(x, x, x)`` and a decoder's
    ``module(x, x, x, attn_mask=causal, is_causal=True)`` (a boolean causal mask).
    """
    ranges = check_ranges(sizes, MULTIHEAD_AXES, "multihead_default_calls")

    def clip(name: str, n: int) -> int:
        lo, hi = ranges.get(name, (1, n))
        return max(lo, min(n, hi))

    g = torch.Generator().manual_seed(20260705)
    h = clip("h", min(2, max_size))
    c = h * max(1, min(3, max_size // h))
    b, t, s = clip("b", min(2, max_size)), clip("t", min(5, max_size)), clip("s", min(3, max_size))
    init = dict(embed_dim=c, num_heads=h, dropout=0.0, bias=bias, add_bias_kv=False,
                add_zero_attn=False, kdim=c, vdim=c, batch_first=False, dtype=dtype)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        names = torch.nn.MultiheadAttention(**{**init, "dtype": torch.float64}).state_dict()
    kw = {} if need_weights else {"need_weights": False}
    out = []
    calls = [("self-attention", (t,)), ("s != t", (t, s, s))]
    n = min(LONG_DEFAULT_T, *(ranges[a][1] for a in ("t", "s") if a in ranges),
            math.isqrt(fit(budget, b * h)), fit(budget, b, c))
    if long and n >= 17 and n >= max(ranges.get(a, (1, 1))[0] for a in ("t", "s")):
        calls.append((f"self-attention, t == s == {n}", (n,)))
        calls.append((f"causal self-attention (a decoder's call), t == s == {n}", (n,)))
    for note, lengths in calls:
        state = {k: torch.randn(v.shape, generator=g, dtype=torch.float64).to(dtype) * 0.5
                 for k, v in names.items()}
        seqs = [torch.randn(n, b, c, generator=g, dtype=torch.float64).to(dtype)
                for n in lengths]
        args = (seqs[0], seqs[0], seqs[0]) if len(seqs) == 1 else tuple(seqs)
        call: dict[str, Any] = dict(kw)
        if note.startswith("causal"):
            call["attn_mask"] = _causal(lengths[0], lengths[0], "bool", dtype)
            call["is_causal"] = True
        out.append(MultiheadCase(init, state, Case(args, call, f"default call, {note}")))
    return out


LONG_DEFAULT_T = 150
"""t == s of the kernel-sized default call: past key tiles of 64 and 128."""

__all__ = ["MultiheadCase", "multihead_cases", "multihead_default_calls"]
