"""Hypothesis strategy for inputs of softmax, log_softmax and logsumexp, in PyTorch's convention.

>>> from hypothesis import given
>>> import torch
>>> @given(softmax_cases())
... def test(case):
...     assert case.call(torch.softmax).shape == case.args[0].shape
>>> test()
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from refllm.testing.engine.case import Case

NEG_INF = float("-inf")


@st.composite
def softmax_cases(draw, *, dtype: torch.dtype = torch.float64, max_dims: int = 3,
                  max_size: int = 6, large_logits: bool = False, neg_inf_rows: bool = True,
                  neg_inf_entries: bool = True) -> Case:
    """`Case` objects ``Case(args=(x,), kwargs={"dim": dim})`` for ``torch.softmax(x, dim=dim)``.

    The same case serves ``torch.log_softmax`` and ``torch.logsumexp`` (whose ``dim`` is required).

    Parameters:
        dtype: the floating-point dtype of ``x`` (values are drawn in float64, then cast).
        max_dims: ``x`` has 1 to ``max_dims`` dimensions.
        max_size: every dimension has size 1 to ``max_size``.
        large_logits: scale the logits by up to 1e4 (tests that nothing overflows).
        neg_inf_rows: sometimes make one whole row along ``dim`` ``-inf`` (refllm defines softmax 0,
            log_softmax and logsumexp ``-inf`` there; PyTorch's softmax gives NaN).
        neg_inf_entries: sometimes set single entries to ``-inf`` (masked logits); with
            ``neg_inf_rows=False`` the first entry of every row stays finite.
    """
    shape = draw(st.lists(st.integers(1, max_size), min_size=1, max_size=max_dims))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    seed = draw(st.integers(0, 2**32 - 1))
    g = torch.Generator().manual_seed(seed)
    magnitude = draw(st.sampled_from([1.0, 100.0, 1e4])) if large_logits else 1.0
    x = torch.randn(shape, generator=g, dtype=torch.float64) * magnitude
    if neg_inf_entries and draw(st.booleans()):
        hit = torch.rand(shape, generator=g, dtype=torch.float64) < 0.3
        if not neg_inf_rows:  # keep the first entry of every row finite
            hit.movedim(dim, -1)[..., 0] = False
        x = x.masked_fill(hit, NEG_INF)
    if neg_inf_rows and draw(st.booleans()):
        moved = x.movedim(dim, -1)  # a view: writing a row of it writes x
        flat_rows = moved.reshape(-1, moved.shape[-1]).shape[0]
        row = draw(st.integers(0, flat_rows - 1))
        index = torch.unravel_index(torch.tensor(row), moved.shape[:-1])
        moved[tuple(int(i) for i in index)] = NEG_INF
    return Case(args=(x.to(dtype),), kwargs={"dim": dim})


def softmax_default_calls(*, max_size: int = 6, long: bool = True) -> list[Case]:
    """Fixed float64 examples of the call every model makes, ``softmax(x, dim=-1)``: a (4, 5) and
    a (2, 3, 5) input within ``max_size``; with ``long``, a kernel-sized (3, 1100) one whose rows
    cross a block of 1024. The same whatever the seed."""
    g = torch.Generator().manual_seed(20260704)
    n = max(1, min(5, max_size))
    shapes: list[tuple[int, ...]] = [(min(4, max_size), n), (2, min(3, max_size), n)]
    if long:
        shapes.append((3, 1100))
    return [Case(args=(torch.randn(s, generator=g, dtype=torch.float64),), kwargs={"dim": -1},
                 note=f"default call, input {s}") for s in shapes]
