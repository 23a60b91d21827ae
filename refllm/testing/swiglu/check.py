"""`check_swiglu`: any function ``fn(gate, up)`` computing a gated linear unit elementwise.

    swiglu(gate, up) = silu(gate) * up = gate sigmoid(gate) up       (activation "silu")
    geglu(gate, up)  = gelu(gate) * up                               ("gelu", "gelu_tanh")

refllm's signature, as fused kernels take it (Liger's and Unsloth's SwiGLU): the gate and up
projections of one shape in, their gated product out. The function is called ``fn(gate, up)``
and compared with :func:`refllm.ops.activations.swiglu` (or ``geglu`` with the chosen
``activation``) run in float64: the output, and the gradients wrt ``gate`` and ``up`` under a
random upstream gradient. The default call is judged first on fixed (b, t, f) inputs, a
kernel-sized one included (a row of 1,100). Hugging Face's ``LlamaMLP`` (and any MLP module with
``gate_proj``, ``up_proj``, ``down_proj`` and ``act_fn``) is checked through
:func:`refllm.testing.swiglu.adapters.hf_mlp`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import torch
from hypothesis import strategies as st

from refllm.testing.engine.case import Case
from refllm.testing.engine.check import CheckContext, check
from refllm.testing.engine.report import Report
from refllm.testing.swiglu.record import RECORD

SWIGLU_FEATURES = ("large_gates", "zero_gates", "non_contiguous")
"""What `check_swiglu` can exercise (see :mod:`refllm.testing.swiglu.strategy`)."""


def check_swiglu(fn: Callable[..., Any] | str, *, features: Iterable[str] | None = None,
                 activation: str | None = None, **options: Any) -> Report:
    """Check ``fn(gate, up)`` (or ``"module:name"``) against refllm's gated linear unit.

    ``activation``: "silu" (SwiGLU, default), "gelu" or "gelu_tanh" (GeGLU; ``fn`` is still
    called ``fn(gate, up)``); ``features``: which of :data:`SWIGLU_FEATURES` to exercise
    (default: all); ``contract``: a `refllm.testing.contract.Contract` (``dtypes``,
    ``long_axes``, ``budget``, ``unsupported``). The other options are every check's
    (`refllm.testing.engine.options.CheckOptions`: see `refllm.testing.checks.check_sdpa`).
    """
    return check(RECORD, fn, features=features, activation=activation, **options)


def cases(ctx: CheckContext) -> st.SearchStrategy[Case]:
    from refllm.testing.swiglu.strategy import swiglu_cases

    c = ctx.contract
    return swiglu_cases(dtype=torch.float64, features=ctx.features, max_size=ctx.max_size,
                        long_axes=c.long_axes, budget=c.budget)


def calls(ctx: CheckContext) -> list[Case]:
    from refllm.testing.swiglu.strategy import swiglu_default_calls

    c = ctx.contract
    return swiglu_default_calls(max_size=ctx.max_size, long=c.long_axes, budget=c.budget)


def adapt(ctx: CheckContext, spec: dict[str, Any]) -> dict[str, Any]:
    """GeGLU's reference and naive twin for the activations "gelu" and "gelu_tanh"."""
    activation = ctx.chosen["activation"]
    if activation == "silu":
        return spec
    from refllm.ops import activations

    approximate = "tanh" if activation == "gelu_tanh" else "none"
    spec = dict(spec, reference=functools.partial(activations.geglu, approximate=approximate),
                reference_name="refllm.ops.activations:geglu")
    if spec.get("naive") is not None:
        spec["naive"] = functools.partial(activations.geglu_naive, approximate=approximate)
    return spec
