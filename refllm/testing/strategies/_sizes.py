"""Axis lengths: small ones, per-axis ranges, and the kernel-sized tier (one long axis at a time).

Real kernels tile: 16 to 128 keys per block, vocabularies cut into chunks of 128 or 256, rows in
groups of 32, a causal mask sliced from a cached buffer of the context length, SIMD loops of width
8 or 16 with a scalar tail, reductions in blocks of 1024. Their bugs live past those sizes, where
axes of at most 6 never go. So in about one drawn case in six (`long_tier`; docs/testing.md holds
the measured share) ONE axis of the case is long: its length comes from `LONG_LENGTHS`, the
lengths 2^k - 1, 2^k and 2^k + 1 for 16 <= 2^k <= 512 and a few in the thousands (1000, 2047,
2049, 4097), which cross the usual block boundaries from both sides. The other axes stay small.

The cost of an example is bounded by a budget in elements (`DEFAULT_BUDGET` = 2^20): the largest
tensor the call forms (for attention the (b, h, t, s) scores, for cross-entropy the logits) holds
at most that many elements; a long length that would exceed it is not drawn (the longest that
fits is), and short axes drawn after others are capped the same way, so that a large ``max_size``
can no longer draw 200 heads of width 200 at once.

Shrinking moves a long length towards the shortest boundary (`LONG_LENGTHS` is ascending and its
index is drawn directly), and the tier itself towards "no long axis".
"""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import strategies as st

from refllm.testing.strategies._odds import sometimes

__all__ = ["LONG_LENGTHS", "DEFAULT_BUDGET", "LONG_ODDS", "long_tier", "long_length", "axis",
           "Ranges", "check_ranges", "fit"]

LONG_LENGTHS: tuple[int, ...] = tuple(sorted(
    {2**k + o for k in range(4, 10) for o in (-1, 0, 1)} | {1000, 2047, 2049, 4097}))
"""Boundary-crossing lengths of the long axis, ascending: 15, 16, 17, 31, ..., 513, 1000, 2047,
2049, 4097."""

DEFAULT_BUDGET = 2**20
"""Elements of the largest tensor one drawn example forms (8 MiB in float64)."""

LONG_ODDS = 5
"""A case is in the long tier when ``st.integers(0, LONG_ODDS - 1)`` draws its last value:
measured at about one case in six (Hypothesis leans a little to 0, see `_odds`)."""

Ranges = Mapping[str, tuple[int, int]]
"""Per-axis inclusive length ranges, e.g. ``{"h": (1, 4), "t": (1, 4096)}``."""


def check_ranges(ranges: Ranges | None, known: tuple[str, ...], what: str) -> dict[str, tuple[
        int, int]]:
    """Validate per-axis ranges: known axis names, integer bounds with 1 <= lo <= hi."""
    out: dict[str, tuple[int, int]] = {}
    for name, bounds in (ranges or {}).items():
        if name not in known:
            raise ValueError(f"{what}: unknown axis {name!r} in sizes; choose from {list(known)}")
        try:
            lo, hi = bounds
        except (TypeError, ValueError):
            raise ValueError(f"{what}: sizes[{name!r}] must be a (low, high) pair, "
                             f"got {bounds!r}") from None
        if not (isinstance(lo, int) and isinstance(hi, int)) or isinstance(lo, bool) or \
                isinstance(hi, bool):
            raise TypeError(f"{what}: sizes[{name!r}] must hold integers, got {bounds!r}")
        if not 1 <= lo <= hi:
            raise ValueError(f"{what}: sizes[{name!r}] must satisfy 1 <= low <= high, "
                             f"got {bounds!r}")
        out[name] = (lo, hi)
    return out


def fit(budget: int, *others: int) -> int:
    """The longest length n with ``n * prod(others) <= budget`` (at least 1)."""
    per = 1
    for n in others:
        per *= max(1, n)
    return max(1, budget // per)


def long_tier(draw: st.DrawFn, on: bool) -> bool:
    """Whether this case has a long axis (about one case in six when ``on``)."""
    return on and draw(st.integers(0, LONG_ODDS - 1)) == LONG_ODDS - 1


def long_length(draw: st.DrawFn, lo: int, hi: int) -> int | None:
    """A length of `LONG_LENGTHS` in [lo, hi] (shrinks to the shortest); None when none is."""
    choices = [n for n in LONG_LENGTHS if lo <= n <= hi]
    if not choices:
        return None
    return choices[draw(st.integers(0, len(choices) - 1))]


def axis(draw: st.DrawFn, name: str, ranges: Ranges, max_size: int, cap: int | None = None,
         long: bool = False) -> int:
    """One axis length: within ``ranges[name]`` and <= ``cap``.

    The default range is [1, ``max_size``] for a short axis and [1, 4097] for a long one.

    Short (``long=False``): ``low`` about one draw in seven (1, an edge case worth drawing but one
    that hides most bugs), otherwise in [low + 1, min(high, low + max_size - 1)]. Long: a
    boundary length of `LONG_LENGTHS` within the range and the cap, or the longest allowed one
    when no boundary length fits. ``cap`` never goes below ``low`` (the range wins).
    """
    lo, hi = ranges.get(name, (1, LONG_LENGTHS[-1] if long else max(1, max_size)))
    if cap is not None:
        hi = max(lo, min(hi, cap))
    if long:
        n = long_length(draw, lo, hi)
        return hi if n is None else n
    top = min(hi, lo + max(1, max_size) - 1)
    if top <= lo:
        return lo
    return draw(sometimes(st.just(lo), otherwise=st.integers(lo + 1, top)))
