"""Float division with IEEE 754 semantics, for the naive (pure-Python float) references.

Python's ``a / b`` raises ZeroDivisionError where a tensor division returns an infinity or a NaN;
the references must return what the equation gives under IEEE arithmetic, as torch does:
``0 / ±0 = nan``, ``nan / ±0 = nan``, ``x / +0 = sign(x) inf`` and ``x / -0 = -sign(x) inf``.
"""

from __future__ import annotations

import math


def ieee_div(a: float, b: float) -> float:
    """``a / b`` as IEEE 754 (and torch) divide, the sign of a zero divisor included."""
    if b != 0:
        return a / b
    if a == 0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)
