"""Input scale over decades: the regimes where a kernel's hidden constants break.

A kernel written and tried on standard-normal inputs can carry constants tuned to unit scale
that no unit-scale input reaches: an online softmax whose running maximum starts at ``-1e4``
instead of ``-inf`` (every row whose logits sit below -1e4 divides 0 by 0), a mean-squared error
expanded as ``x^2 - 2xy + y^2`` (which cancels to noise once the inputs share a large offset), an
activation's backward written as ``(1 + e^-x + x e^-x) / (1 + e^-x)^2`` (``inf / inf`` once
``e^-x`` overflows), an epsilon added to a sum of squares. So in about one case in four
(`SCALE_SHARE`) a strategy draws an input in another regime (`Regime`):

* ``"decade"``: the input times ``10^k``, k in {-3, -2, -1, 1, 2, 3} (`DECADES`): values from
  1e-3 to 1e3 in scale; small ones are the small-variance regime of a whole tensor;
* ``"offset"``: the input plus a large common offset (`OFFSETS`: +-1e2, +-1e3, 1e4), with its unit
  spread kept: the regime of cancellation and of an un-shifted ``exp``.

Each op says which of its inputs take a regime and what the regime means there (for attention
the logits' scale and a common shift of every logit of a row, and the values' scale and offset;
for cross-entropy the logits'), and caps what its dtype cannot hold. Which regime and which value
come from one drawn key through `random.Random`, as `refllm.testing.engine.sizes.long_tier`
does, so that they come up as often as stated whatever Hypothesis' leanings; shrinking moves the
key to 0, unit scale. tests/testing/regime_shares.py measures the shares from the drawn tensors
themselves, and docs/oracle.md ("What the checks exercise") holds the table.

>>> import torch
>>> Regime("decade", factor=1e-3).apply(torch.ones(2))
tensor([0.0010, 0.0010])
>>> str(Regime("offset", offset=-1e3))
'offset -1e+03'
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

import torch
from hypothesis import strategies as st

__all__ = ["Regime", "UNIT", "SCALE_SHARE", "DECADES", "OFFSETS", "regime"]

SCALE_SHARE = 0.25
"""The chance that one input of a drawn case is out of unit scale (key 0, where shrinking goes,
never is)."""

DECADES: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1e1, 1e2, 1e3)
"""Scale factors of the "decade" regime."""

OFFSETS: tuple[float, ...] = (1e2, -1e2, 1e3, -1e3, 1e4)
"""Common offsets of the "offset" regime."""


@dataclasses.dataclass(frozen=True)
class Regime:
    """How one input is drawn: ``x * factor + offset`` of a standard-normal ``x``."""

    kind: str = "unit"  # "unit", "decade" or "offset"
    factor: float = 1.0
    offset: float = 0.0

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor + self.offset if self.kind != "unit" else x

    def __str__(self) -> str:
        if self.kind == "decade":
            return f"scale {self.factor:.0e}"
        if self.kind == "offset":
            return f"offset {self.offset:+.0e}"
        return ""


UNIT = Regime()


def regime(draw: st.DrawFn, kinds: Sequence[str] = ("decade", "offset"), *,
           decades: Sequence[float] = DECADES, offsets: Sequence[float] = OFFSETS,
           share: float = SCALE_SHARE) -> Regime:
    """One input's `Regime`: `UNIT` about ``1 - share`` of the time, otherwise one of ``kinds``
    (each as likely) with a factor of ``decades`` or an offset of ``offsets`` (each as likely).

    An op leaves out what its inputs cannot take (``kinds=("decade",)``; ``decades`` without the
    large factors for a float16 input whose squares would overflow). With no kinds (or nothing
    to draw from) every case is at unit scale.
    """
    for k in kinds:
        if k not in ("decade", "offset"):
            raise ValueError(f"regime kinds are 'decade' and 'offset', got {k!r}")
    kinds = [k for k in kinds if (k == "decade" and decades) or (k == "offset" and offsets)]
    if not kinds:
        return UNIT
    key = draw(st.integers(0, 2**32 - 1))
    rng = random.Random(key)
    if key == 0 or rng.random() >= share:
        return UNIT
    kind = rng.choice(kinds)
    if kind == "decade":
        return Regime("decade", factor=rng.choice(list(decades)))
    return Regime("offset", offset=rng.choice(list(offsets)))
