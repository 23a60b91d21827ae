"""Hypothesis strategy for cross-entropy inputs, in PyTorch's calling convention.

``cross_entropy_cases()`` draws `Case` objects for ``F.cross_entropy(input, target, weight=...,
ignore_index=..., reduction=..., label_smoothing=...)``; every feature can be switched off by
keyword, so an implementation that supports only part of PyTorch's contract can still be checked
on that part.

Hypothesis draws the structure (shapes, which features, scales, how many targets are ignored);
the values of the tensors come from a drawn seed through ``torch.Generator``, so that large
tensors stay cheap to draw. Keyword arguments a case does not exercise are left out of its call.

>>> from hypothesis import given
>>> @given(cross_entropy_cases(prob_targets=False, reductions=("sum",)))
... def test(case):
...     assert case.kwargs["reduction"] == "sum" and not case.args[1].is_floating_point()
>>> test()
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from hypothesis import strategies as st

from refllm._validation import require_int
from refllm.ops.choices import REDUCTIONS
from refllm.testing.cross_entropy.record import RECORD as _RECORD
from refllm.testing.engine.case import Case
from refllm.testing.engine.odds import (
    FeaturePlan,
    check_reductions,
    feature_plan,
    mostly,
    reduction,
    sometimes,
)
from refllm.testing.engine.odds import sizes as small_sizes
from refllm.testing.engine.scales import DECADES
from refllm.testing.engine.sizes import (
    DEFAULT_BUDGET,
    Ranges,
    axis,
    check_ranges,
    fit,
    long_tier,
)

__all__ = ["cross_entropy_cases", "cross_entropy_default_calls", "CROSS_ENTROPY_AXES"]

LOGIT_OFFSETS = (1e2, -1e2, 1e3, -1e3)
"""Common offsets of "normal" logits (the "near_max"/"near_min" kinds sit at +-1e4)."""

CROSS_ENTROPY_AXES = _RECORD.axes  # one declaration: the op's record
"""Axes whose lengths ``sizes=`` can bound: rows n (the batch b of (b, c[, k...])) and classes c."""

def _logits(draw, shape: tuple[int, ...], class_dim: int, extreme: bool,
            gen: torch.Generator) -> torch.Tensor:
    """float64 logits: ordinary spreads, over decades (`refllm.testing.engine.scales.DECADES`)
    or with a common offset of +-1e2 or +-1e3, ties, and (extreme) values up to +-1e4. (Drawn
    as kinds of one choice, not as a keyed regime: an extra 32-bit draw per case cost the
    corpus's reduction='none' mutants a third of their catch rate.)"""
    # ties and +-1e4 spreads (one-hot softmax rows) now and then only: they hide most bugs
    usual = ["normal", "wide", "decade", "offset"] + (["near_max", "near_min"] if extreme else [])
    edge = ["ties"] + (["extreme"] if extreme else [])
    kind = draw(sometimes(st.sampled_from(edge), otherwise=st.sampled_from(usual)))
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    if kind == "decade":  # 1e-3: near-uniform rows; 1e3: saturated ones
        x = x * draw(st.sampled_from(DECADES))
    elif kind == "offset":  # a common offset, where an un-shifted exp or a difference cancels
        x = x + draw(st.sampled_from(LOGIT_OFFSETS))
    elif kind == "wide":
        x = x * 10
    elif kind == "ties":  # equal logits in every row (the class axis), a classic edge case
        x = x.amax(dim=class_dim, keepdim=True).expand(shape).clone()
    elif kind == "extreme":
        x = (x * 1e4).clamp(-1e4, 1e4)
    elif kind in ("near_max", "near_min"):  # all logits near +-1e4: only max-subtraction survives
        x = (1e4 - x.abs()) * (1 if kind == "near_max" else -1)
    return x


def _class_probs(draw, shape: tuple[int, ...], class_dim: int,
                 gen: torch.Generator) -> torch.Tensor:
    """Soft targets: a softmax (rows sum to one), one-hot rows, or any non-negative rows."""
    kind = draw(st.sampled_from(["softmax", "one_hot", "unnormalised"]))
    if kind == "softmax":
        return torch.softmax(torch.randn(shape, generator=gen, dtype=torch.float64), class_dim)
    if kind == "unnormalised":
        return torch.rand(shape, generator=gen, dtype=torch.float64) * 2
    scores = torch.rand(shape, generator=gen, dtype=torch.float64)
    return (scores == scores.amax(dim=class_dim, keepdim=True)).to(torch.float64)


def _class_indices(draw, target_shape: tuple[int, ...], n_classes: int, plan: FeaturePlan,
                   gen: torch.Generator) -> tuple[torch.Tensor, int | None]:
    """int64 targets in [0, C); with ``ignore``, an ignore_index and a share of ignored targets."""
    target = torch.randint(0, n_classes, target_shape, generator=gen, dtype=torch.int64)
    if not plan.on(draw, "ignore_index", mostly):
        return target, None
    ignore_index = draw(st.sampled_from([-100, -1, 0, n_classes - 1]))  # in range: a padding class
    share = draw(st.sampled_from([0.3, 0.7, 1.0, 0.0]))  # 1.0: the all-ignored batch
    mask = torch.rand(target_shape, generator=gen, dtype=torch.float64) < share
    if 0 < share < 1 and mask.numel() >= 2:  # a partial share ignores some targets, not all
        mask.view(-1)[0], mask.view(-1)[-1] = True, False
    return torch.where(mask, ignore_index, target), ignore_index


@st.composite
def cross_entropy_cases(draw, *, dtype: torch.dtype = torch.float64, k_dims: bool = True,
                        index_targets: bool = True, prob_targets: bool = True,
                        weights: bool = True, ignore_index: bool = True,
                        label_smoothing: bool = True,
                        reductions: Sequence[str] = REDUCTIONS, extreme_logits: bool = True,
                        max_size: int = 6, write_defaults: bool = True,
                        long_axes: bool = True, budget: int = DEFAULT_BUDGET,
                        sizes: Ranges | None = None) -> Case:
    """`Case` objects for ``F.cross_entropy(input, target, **kwargs)``.

    Inputs are (c), (b, c) or, with ``k_dims``, (b, c, d1[, d2]); each axis holds 1..``max_size``.
    Targets are int64 class indices (``index_targets``; with ``ignore_index`` some or all of them
    equal a drawn ``ignore_index``, which may be a valid class) or class probabilities of ``dtype``
    (``prob_targets``: softmax rows, one-hot rows or unnormalised non-negative rows). ``weights``
    draws positive class weights, ``label_smoothing`` an eps in [0, 1], ``reductions`` the allowed
    reductions and ``extreme_logits`` logits up to +-1e4. Logits are drawn in float64 and cast to
    ``dtype``. About one case in five is the language-model loss call
    ``F.cross_entropy(logits (n > 1, c), class indices)`` with no keyword, one in five uses
    exactly one feature (`refllm.testing.engine.odds.feature_plan`); a keyword left out is
    PyTorch's default (mean, no weight, no smoothing, nothing ignored). ``write_defaults``: write
    ``reduction="mean"`` out where the case leaves it at the default (the checks pass False, to
    call exactly as a model does).

    About one case in four is kernel-sized (``long_axes``; `refllm.testing.engine.sizes`):
    the classes (a vocabulary cut into chunks) or the rows (rows processed in groups) take a
    length that crosses a block boundary (15, 16, 17, ..., 511, 512, 513, 1000, 2047, 2049,
    4097), the other axes small; the logits never hold more than ``budget`` elements (default
    2^20). ``sizes``: inclusive ranges ``{"rows": (lo, hi), "classes": (lo, hi)}`` (a kernel's
    vocabulary sizes, say), which replace ``max_size`` for those axes; their low ends are always
    allowed.
    """
    reductions = check_reductions(reductions)
    require_int("budget", budget, low=1)
    ranges = check_ranges(sizes, CROSS_ENTROPY_AXES, "cross_entropy_cases")
    kinds = ["index"] * index_targets + ["prob"] * prob_targets
    if not kinds:
        raise ValueError("at least one of index_targets and prob_targets must be True")
    # the default call F.cross_entropy(logits (n, c), class indices) needs index targets and
    # the mean; without them the keyword or the target kind is no longer optional
    switches = {"layout": True, "prob_targets": prob_targets and index_targets,
                "weight": weights, "ignore_index": ignore_index and index_targets,
                "label_smoothing": label_smoothing, "reduction": "mean" in reductions}
    plan = draw(feature_plan([n for n, on in switches.items() if on],
                             exclusive=[("prob_targets", "ignore_index")]))
    long, rng = long_tier(draw, long_axes, ("classes", "rows"))
    layouts = (["b c k"] if k_dims else []) + ["c"]  # unbatched last: least often
    layout = draw(st.sampled_from(["b c", *layouts]) if plan.forced.get("layout") is None
                  else st.sampled_from(layouts) if plan.forced["layout"] else st.just("b c"))
    if layout == "c":
        long = long and "classes"  # no rows to make long
    extra = tuple(draw(st.lists(small_sizes(min(max_size, 3)), min_size=1, max_size=2))) if \
        layout == "b c k" else ()
    k = math.prod(extra)
    row_ranges = ranges
    if plan.default and "rows" not in ranges:
        row_ranges = {"rows": (min(2, max_size), max_size)}  # the LM loss: n > 1
    elif plan.default and ranges["rows"][1] >= 2:
        row_ranges = {"rows": (max(2, ranges["rows"][0]), ranges["rows"][1])}
    if long == "rows" and "rows" not in ranges:
        row_ranges = {"rows": (row_ranges.get("rows", (1, 1))[0], 1 << 30)}
    rows_lo = row_ranges.get("rows", (1, 1))[0] if layout != "c" else 1
    n_classes = axis(draw, "classes", ranges, max_size, fit(budget, k, rows_lo),
                     rng if long == "classes" else None)
    shape = (n_classes,) if layout == "c" else (
        axis(draw, "rows", row_ranges, max_size, fit(budget, k, n_classes),
             rng if long == "rows" else None),
        n_classes)
    shape += extra
    class_dim = 0 if layout == "c" else 1
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    logits = _logits(draw, shape, class_dim, extreme_logits, gen).to(dtype)
    kwargs: dict = {}
    kind = ("prob" if plan.on(draw, "prob_targets", st.booleans()) else "index") if len(
        kinds) > 1 else kinds[0]
    if kind == "prob":
        target = _class_probs(draw, shape, class_dim, gen).to(dtype)
    else:
        target_shape = shape[:class_dim] + shape[class_dim + 1:]
        target, ignored = _class_indices(draw, target_shape, n_classes, plan, gen)
        if ignored is not None:
            kwargs["ignore_index"] = ignored
    if plan.on(draw, "weight", mostly):
        log_w = torch.rand(n_classes, generator=gen, dtype=torch.float64) * 3 - 1.5
        kwargs["weight"] = log_w.exp().to(dtype)  # in [e^-1.5, e^1.5]: positive, modest
    if "reduction" not in plan.forced or plan.on(draw, "reduction", mostly):
        kwargs["reduction"] = draw(reduction(reductions))
    elif write_defaults:
        kwargs["reduction"] = "mean"
    if plan.on(draw, "label_smoothing", mostly):
        kwargs["label_smoothing"] = draw(st.sampled_from([0.1, 1.0]) | st.floats(0.0, 1.0))
    note = f"{kind} targets, input {tuple(shape)}, kwargs {sorted(kwargs)}"
    note += f", long {long}" if long else ""
    return Case(args=(logits, target), kwargs=kwargs, note=note)


def cross_entropy_default_calls(*, max_size: int = 6, sizes: Ranges | None = None,
                                long: bool = True,
                                budget: int = DEFAULT_BUDGET) -> list[Case]:
    """Fixed float64 examples of the language-model loss ``F.cross_entropy(logits, targets)``:
    logits (n, c) with n > 1 rows, int64 class indices, no keyword (mean, no weight, no
    smoothing, nothing ignored); the same whatever the seed; within ``max_size`` and
    ``sizes`` (ranges of "rows" and "classes"). With ``long``, a kernel-sized one follows:
    (70, 300) logits, past row groups of 32 and vocabulary chunks of 128 and 256 (within
    ``sizes`` and ``budget``)."""
    ranges = check_ranges(sizes, CROSS_ENTROPY_AXES, "cross_entropy_default_calls")
    g = torch.Generator().manual_seed(20260702)
    out = []
    shapes = [(max(min(4, max_size), 1), min(5, max_size)), (max(min(6, max_size), 1),
                                                             min(3, max_size))]
    if long:
        c = _clip(300, ranges.get("classes"))
        n = min(_clip(70, ranges.get("rows")), max(1, budget // c))
        if c * n <= budget and max(n, c) >= 17:
            shapes.append((n, c))
    for n, c in shapes:
        n = _clip(n, ranges.get("rows"))
        c = _clip(c, ranges.get("classes"))
        logits = torch.randn(n, c, generator=g, dtype=torch.float64)
        target = torch.randint(0, c, (n,), generator=g, dtype=torch.int64)
        out.append(Case(args=(logits, target), kwargs={}, note=f"default call, input {(n, c)}"))
    return out


def _clip(n: int, bounds: tuple[int, int] | None) -> int:
    return n if bounds is None else max(bounds[0], min(n, bounds[1]))
