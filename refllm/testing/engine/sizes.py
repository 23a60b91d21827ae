"""Axis lengths: small ones, per-axis ranges, and the kernel-sized tier (one long axis at a time).

Real kernels tile: 16 to 128 keys per block, vocabularies cut into chunks of 128 or 256, rows in
groups of 32, a causal mask sliced from a cached buffer of the context length, SIMD loops of width
8 or 16 with a scalar tail, reductions in blocks of 1024. Their bugs live past those sizes, where
axes of at most 6 never go. So in about one drawn case in four (`long_tier`; docs/oracle.md holds
the measured share) ONE axis of the case is long: its length comes from `LONG_LENGTHS`, the
lengths 2^k - 1, 2^k and 2^k + 1 for 16 <= 2^k <= 512 and a few in the thousands (1000, 2047,
2049, 4097), which cross the usual block boundaries from both sides. The other axes stay small.

The cost of an example is bounded by a budget in elements (`DEFAULT_BUDGET` = 2^20): the largest
tensor the call forms (for attention the (b, h, t, s) scores, for cross-entropy the logits) holds
at most that many elements; a long length that would exceed it is not drawn (the longest that
fits is), and short axes drawn after others are capped the same way, so that a large ``max_size``
can no longer draw 200 heads of width 200 at once.

Which axis is long and its length are picked from one drawn key (`long_tier`), so that they come
up as often as stated whatever Hypothesis' leanings; shrinking moves the key towards 0, "no long
axis". A keyed pick does not shrink, though: a bug past a tile of 16 found at 4,097 keys would
be reported at 4,097 (any other key picks another length at random, or none). So a long case
also draws a *shrink knob* (`LongRng.cap`), an integer in [0, 1023]: from 16 up it is inert,
below 16 it caps the index of the picked length at its share of the list. The shrinker, moving
the knob to 0, walks the length down to the shortest one that still fails. As drawn, 9% of the
long cases had a knob below 16 (7% at 0: Hypothesis draws an integer's bounds often), so that
many come out shorter than the keyed pick (measured over 600 SDPA draws; the shares in
docs/oracle.md are measured with the knob).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from hypothesis import strategies as st

from refllm.testing.engine.odds import sometimes

__all__ = ["LONG_LENGTHS", "DEFAULT_BUDGET", "LONG_SHARE", "long_tier", "long_length", "axis",
           "Ranges", "check_ranges", "fit", "LongRng"]

LONG_LENGTHS: tuple[int, ...] = tuple(sorted(
    {2**k + o for k in range(4, 10) for o in (-1, 0, 1)} | {1000, 2047, 2049, 4097}))
"""Boundary-crossing lengths of the long axis, ascending: 15, 16, 17, 31, ..., 513, 1000, 2047,
2049, 4097."""

DEFAULT_BUDGET = 2**20
"""Elements of the largest tensor one drawn example forms (8 MiB in float64)."""

LONG_SHARE = 0.25
"""The chance that a drawn case is kernel-sized (see `long_tier`; the key 0, where shrinking
goes, is never long). Measured over 2,000 draws: 26% to 30% per strategy (Hypothesis also
repeats keys when it mutates earlier examples)."""

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


KNOB_INERT, KNOB_MAX = 16, 1023
"""Shrink knobs in [KNOB_INERT, KNOB_MAX] leave the keyed pick alone; below, they cap it."""


class LongRng(random.Random):
    """The generator of a long case: keyed picks (`random.Random`) and a shrink knob ``cap`` in
    [0, 1] (1: inert) that bounds the index of what `pick` returns from a list ordered short to
    long."""

    cap: float = 1.0

    def pick(self, choices: Sequence[int]) -> int:
        """One of ``choices`` (ascending), each as likely while the knob is inert; at most the
        one at ``floor(cap * (len - 1))``."""
        i = self.randrange(len(choices))
        return choices[min(i, int(self.cap * (len(choices) - 1)))]


def long_tier(draw: st.DrawFn, on: bool,
              axes: Sequence[str] = ("long",)) -> tuple[str | None, LongRng]:
    """``(axis, rng)``: which of ``axes`` is long in this case (None about three cases in four, or
    always when not ``on``), and the generator that picks its length (`long_length`).

    Both come from one drawn 32-bit key through `random.Random`, as `_odds.feature_plan` does:
    drawn directly, Hypothesis' choices lean to their first option, most in the first examples
    of a run (``st.integers(0, 4) == 4`` gave 4 long cases, all of one shape, in 43 examples at
    seed 0, and index 0 of 22 lengths came up in a fifth of 40-example runs). Shrinking moves the
    key to 0: no long axis.
    """
    if not on:
        return None, LongRng(0)
    key = draw(st.integers(0, 2**32 - 1))
    rng = LongRng(key)
    if key == 0 or rng.random() >= LONG_SHARE:
        return None, rng
    axis = rng.choice(list(axes))
    rng.cap = min(1.0, draw(st.integers(0, KNOB_MAX)) / KNOB_INERT)  # the shrink knob
    return axis, rng


def long_length(rng: random.Random, lo: int, hi: int) -> int | None:
    """A length of `LONG_LENGTHS` in [lo, hi], each as likely (under `LongRng`'s shrink knob);
    None when none is in range."""
    choices = [n for n in LONG_LENGTHS if lo <= n <= hi]
    if not choices:
        return None
    return rng.pick(choices) if isinstance(rng, LongRng) else choices[rng.randrange(len(choices))]


def axis(draw: st.DrawFn, name: str, ranges: Ranges, max_size: int, cap: int | None = None,
         long: random.Random | None = None) -> int:
    """One axis length: within ``ranges[name]`` and <= ``cap``.

    The default range is [1, ``max_size``] for a short axis and [1, 4097] for a long one.

    Short (``long`` None): ``low`` about one draw in seven (1, an edge case worth drawing but one
    that hides most bugs), otherwise in [low + 1, min(high, low + max_size - 1)]. Long (``long``
    the generator of `long_tier`): a
    boundary length of `LONG_LENGTHS` within the range and the cap, or the longest allowed one
    when no boundary length fits. ``cap`` never goes below ``low`` (the range wins).
    """
    lo, hi = ranges.get(name, (1, LONG_LENGTHS[-1] if long is not None else max(1, max_size)))
    if cap is not None:
        hi = max(lo, min(hi, cap))
    if long is not None:
        n = long_length(long, lo, hi)
        return hi if n is None else n
    top = min(hi, lo + max(1, max_size) - 1)
    if top <= lo:
        return lo
    return draw(sometimes(st.just(lo), otherwise=st.integers(lo + 1, top)))
