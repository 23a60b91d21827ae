"""`check_softmax`: any function with the signature of ``torch.softmax``.

    softmax(x)_i = exp(x_i - max x) / sum_j exp(x_j - max x)        (along ``dim``)

The function is called as PyTorch's op is, ``fn(input, dim=dim)``, and compared with
:func:`refllm.ops.softmax.softmax` run in float64: the output, and the gradient wrt ``input``
under a random upstream gradient. The default call ``softmax(x, dim=-1)`` is judged first on
fixed inputs (`refllm.testing.softmax.strategy.softmax_default_calls`).

Deviation: a row whose every entry is ``-inf`` is not drawn by default. refllm defines its softmax
as 0 there, PyTorch's is NaN (0/0); add the feature "masked_rows" to require refllm's zeros.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from hypothesis import strategies as st

from refllm.testing.engine.case import Case
from refllm.testing.engine.check import CheckContext, check
from refllm.testing.engine.report import Report
from refllm.testing.softmax.record import RECORD

SOFTMAX_FEATURES = ("large_logits", "masked_entries", "masked_rows")
"""What `check_softmax` can exercise: logits scaled up to 1e4 ("large_logits"), single ``-inf``
entries ("masked_entries") and whole ``-inf`` rows ("masked_rows", not by default)."""

DEFAULT_SOFTMAX_FEATURES = ("large_logits", "masked_entries")
"""All features but "masked_rows" (see the module docs)."""


def check_softmax(fn: Callable[..., Any] | str, *, features: Iterable[str] | None = None,
                  **options: Any) -> Report:
    """Check ``fn`` (or ``"module:name"``) against refllm's softmax.

    ``features``: which of :data:`SOFTMAX_FEATURES` to exercise (default
    :data:`DEFAULT_SOFTMAX_FEATURES`); ``contract``: a `refllm.testing.contract.Contract`
    (``dtypes``, ``long_axes``, ``unsupported``). The other options are every check's
    (`refllm.testing.engine.options.CheckOptions`: see `refllm.testing.checks.check_sdpa`).
    """
    return check(RECORD, fn, features=features, **options)


def cases(ctx: CheckContext) -> st.SearchStrategy[Case]:
    from refllm.testing.softmax.strategy import softmax_cases

    return softmax_cases(dtype=torch.float64, max_size=ctx.max_size,
                         large_logits=ctx.has("large_logits"),
                         neg_inf_entries=ctx.has("masked_entries"),
                         neg_inf_rows=ctx.has("masked_rows"))


def calls(ctx: CheckContext) -> list[Case]:
    from refllm.testing.softmax.strategy import softmax_default_calls

    return softmax_default_calls(max_size=ctx.max_size, long=ctx.contract.long_axes)
