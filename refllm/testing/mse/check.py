"""`check_mse`: any function with the signature of ``F.mse_loss``.

    L = (1 / N) sum_i (x_i - y_i)^2

The function is called as PyTorch's op is, ``fn(input, target, **kwargs)`` with non-default
keywords only, and compared with :func:`refllm.ops.mse.mse_loss` run in float64: the loss, and the
gradients wrt ``input`` and ``target`` under a random upstream gradient.

The default call ``F.mse_loss(x, y)`` is judged first on fixed inputs, then drawn in about one
example in five (docs/oracle.md, "The default call"); not where ``reductions`` leaves out "mean".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from hypothesis import strategies as st

from refllm.testing.engine.case import Case
from refllm.testing.engine.check import CheckContext, check
from refllm.testing.engine.report import Report
from refllm.testing.mse.record import RECORD


def check_mse(fn: Callable[..., Any] | str, *, reductions: Sequence[str] | None = None,
              **options: Any) -> Report:
    """Check ``fn`` (or ``"module:name"``) against refllm's mean squared error.

    Gradients are compared wrt both ``input`` and ``target``; ``reductions`` picks the reductions
    drawn (default: all); ``contract``: a `refllm.testing.contract.Contract`
    (``sizes={"numel": (lo, hi)}``, ``dtypes``, ``long_axes``, ``budget``, ``unsupported``). The
    other options are every check's (`refllm.testing.engine.options.CheckOptions`: see
    `refllm.testing.checks.check_sdpa`).
    """
    return check(RECORD, fn, reductions=reductions, **options)


def cases(ctx: CheckContext) -> st.SearchStrategy[Case]:
    from refllm.testing.mse.strategy import mse_cases

    c = ctx.contract
    return mse_cases(dtype=torch.float64, reductions=ctx.chosen["reductions"],
                     max_size=ctx.max_size, write_defaults=False, long_axes=c.long_axes,
                     budget=c.budget, sizes=ctx.ranges)


def calls(ctx: CheckContext) -> list[Case]:
    from refllm.testing.mse.strategy import mse_default_calls

    if "mean" not in ctx.chosen["reductions"]:
        return []
    c = ctx.contract
    return mse_default_calls(max_size=ctx.max_size, sizes=ctx.ranges, long=c.long_axes,
                             budget=c.budget)
