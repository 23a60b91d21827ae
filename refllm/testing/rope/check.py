"""`check_rope`: any function with the signature of refllm's ``rope``.

    (x_a, x_b) -> a (x_a cos(m theta_i) - x_b sin(m theta_i),
                     x_b cos(m theta_i) + x_a sin(m theta_i))

for each rotated pair i of the first ``rotary_dim`` features of a vector at position m
(:mod:`refllm.ops.rope`). refllm's signature, documented there::

    rope(x, positions=None, *, offset=0, base=10000.0, layout="neox", rotary_dim=None,
         scaling=None)

``x`` is (..., t, d); ``positions`` an integer (t,) or (b, t) tensor, else ``offset +
arange(t)``; ``layout`` "neox" (the half split, Hugging Face's ``rotate_half``) or "gptj"
(interleaved pairs); ``scaling`` one of `refllm.ops.rope_scaling`'s. The function is called with
the keywords a case uses only, and compared with :func:`refllm.ops.rope.rope` (tables from the
integer positions in float64) run in float64: the output, and the gradient wrt ``x`` under a
random upstream gradient. The default call ``rope(x)`` is judged first on fixed (b, h, t, d)
inputs, kernel-sized ones included (1,100 positions; a cached step at offset 4,000). Hugging
Face's ``apply_rotary_pos_emb(q, k, cos, sin)`` is checked through
:func:`refllm.testing.rope.adapters.hf_apply_rotary_pos_emb`.

``max_position=`` (this check's own keyword, default 8,192) bounds the positions drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from hypothesis import strategies as st

from refllm.testing.engine.case import Case
from refllm.testing.engine.check import CheckContext, check
from refllm.testing.engine.report import Report
from refllm.testing.rope.record import RECORD

ROPE_FEATURES = ("positions", "offset", "long_positions", "gptj", "partial_rotary", "base",
                 "scaling")
"""What `check_rope` can exercise (see :mod:`refllm.testing.rope.strategy`)."""


def check_rope(fn: Callable[..., Any] | str, *, features: Iterable[str] | None = None,
               max_position: int | None = None, **options: Any) -> Report:
    """Check ``fn`` (or ``"module:name"``) against refllm's RoPE.

    ``features``: which of :data:`ROPE_FEATURES` to exercise (default: all); ``max_position``:
    the largest position drawn (default 8,192); ``contract``: a
    `refllm.testing.contract.Contract` (``dtypes``, ``long_axes``, ``budget``, ``unsupported``).
    The other options are every check's (`refllm.testing.engine.options.CheckOptions`: see
    `refllm.testing.checks.check_sdpa`).
    """
    extra = {} if max_position is None else {"max_position": max_position}
    return check(RECORD, fn, features=features, **extra, **options)


def cases(ctx: CheckContext) -> st.SearchStrategy[Case]:
    from refllm._validation import require_int
    from refllm.testing.rope.strategy import DEFAULT_MAX_POSITION, rope_cases

    top = require_int("max_position", ctx.extra.get("max_position", DEFAULT_MAX_POSITION),
                      low=2)
    c = ctx.contract
    return rope_cases(dtype=torch.float64, features=ctx.features, max_size=ctx.max_size,
                      max_position=top, long_axes=c.long_axes, budget=c.budget)


def calls(ctx: CheckContext) -> list[Case]:
    from refllm.testing.rope.strategy import rope_default_calls

    c = ctx.contract
    return rope_default_calls(max_size=ctx.max_size, long=c.long_axes, budget=c.budget)
