"""`check_linear_cross_entropy`: any function with the signature of ``F.linear_cross_entropy``.

    z = input @ linear_weight^T + linear_bias,     loss = cross_entropy(z, target, ...)

without the logits (see :mod:`refllm.ops.linear_cross_entropy` for the equation with class
weights, ``ignore_index`` and label smoothing). The function is called as PyTorch's op is,
``fn(input, linear_weight, target, **kwargs)`` with non-default keywords only, and compared with
:func:`refllm.ops.linear_cross_entropy.linear_cross_entropy` run in float64: the loss, and the
gradients wrt ``input``, ``linear_weight`` and ``linear_bias`` under a random upstream gradient
(per row for ``reduction='none'``). The default call ``F.linear_cross_entropy(h, W, y)`` is
judged first on fixed inputs, kernel-sized ones included (vocabularies of 300 and 2,049: no
multiple of a chunk). Targets are class indices (refllm's reference takes no probability
targets).

The plain same-dtype computation that sets the bfloat16/float16 tolerance (and float32's beyond
its fixed bound) is the *unfused* one, as the policy states for every op: the logits formed in
the checked dtype (``F.linear``), then refllm's cross-entropy; the float64 reference is the fused
one (in float64 the two agree). refllm's fused op computes in float32 internally, so taking it as
the plain computation would hold a bfloat16 kernel to float32's accuracy.

The op has an a-priori error model
(:mod:`refllm.testing.linear_cross_entropy.error_bounds`: the logits' dot products over the
hidden size, then the cross-entropy's rounding): in float32 the tolerance is elementwise with it;
below, an error within it is never a disagreement, and a failure names both bounds. A loss whose
label-smoothing sum of log-probabilities passes float16's range is not judged
(`linear_cross_entropy_floors`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from hypothesis import strategies as st

from refllm.testing.engine.case import Case
from refllm.testing.engine.check import CheckContext, check
from refllm.testing.engine.report import Report
from refllm.testing.linear_cross_entropy.record import RECORD

LINEAR_CROSS_ENTROPY_FEATURES = ("bias", "weights", "ignore_index", "label_smoothing",
                                 "large_logits")
"""What `check_linear_cross_entropy` can exercise (see
:mod:`refllm.testing.linear_cross_entropy.strategy`)."""


def check_linear_cross_entropy(fn: Callable[..., Any] | str, *,
                               features: Iterable[str] | None = None,
                               reductions: Sequence[str] | None = None,
                               **options: Any) -> Report:
    """Check ``fn`` (or ``"module:name"``) against refllm's fused linear cross-entropy.

    ``features``: which of :data:`LINEAR_CROSS_ENTROPY_FEATURES` to exercise (default: all);
    ``reductions``: the reductions drawn (default: all); ``contract``: a
    `refllm.testing.contract.Contract` (``dtypes``, ``long_axes``, ``budget``, ``unsupported``).
    The other options are every check's (`refllm.testing.engine.options.CheckOptions`: see
    `refllm.testing.checks.check_sdpa`).
    """
    return check(RECORD, fn, features=features, reductions=reductions, **options)


def adapt(ctx: CheckContext, spec: dict[str, Any]) -> dict[str, Any]:
    """The reference with the unfused computation below float64 (module docs)."""
    return dict(spec, reference=reference)


def reference(input: torch.Tensor, linear_weight: torch.Tensor, target: torch.Tensor, *,
              linear_bias: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
    """refllm's fused linear cross-entropy in float64, its unfused form in any other dtype."""
    from refllm.ops.cross_entropy import cross_entropy
    from refllm.ops.linear_cross_entropy import linear_cross_entropy

    if input.dtype == torch.float64:
        out = linear_cross_entropy(input, linear_weight, target, linear_bias=linear_bias,
                                   **kwargs)
        assert isinstance(out, torch.Tensor)  # no return_z_loss= in PyTorch's signature
        return out
    logits = torch.nn.functional.linear(input, linear_weight, linear_bias)
    return cross_entropy(logits, target, **kwargs)


def linear_cross_entropy_floors(case: Case, out: torch.Tensor, g: torch.Tensor | None,
                                dtype: torch.dtype) -> dict[str, float]:
    """Only the overflow key of :func:`refllm.testing.cross_entropy.check.cross_entropy_floors`
    on the logits: with label smoothing the loss sums log-probabilities over the vocabulary,
    beyond float16's 65504 at logits of 1e2 to 1e3 over 2,049 classes though the loss is
    finite (PyTorch's float16 gives inf there); such a loss is not judged."""
    from refllm.testing.cross_entropy.check import cross_entropy_floors
    from refllm.testing.engine.function import OVERFLOW

    h, w, y = (a.detach() for a in case.args[:3])
    b = case.kwargs.get("linear_bias")
    z = torch.nn.functional.linear(h, w, None if b is None else b.detach())
    kwargs = {k: v for k, v in case.kwargs.items() if k != "linear_bias"}
    floors = cross_entropy_floors(Case((z, y), kwargs), out, g, dtype)
    return {OVERFLOW: floors[OVERFLOW]}


def cases(ctx: CheckContext) -> st.SearchStrategy[Case]:
    from refllm.testing.linear_cross_entropy.strategy import linear_cross_entropy_cases

    c = ctx.contract
    return linear_cross_entropy_cases(dtype=torch.float64, features=ctx.features,
                                      reductions=ctx.chosen["reductions"],
                                      max_size=ctx.max_size, long_axes=c.long_axes,
                                      budget=c.budget)


def calls(ctx: CheckContext) -> list[Case]:
    from refllm.testing.linear_cross_entropy.strategy import linear_cross_entropy_default_calls

    if "mean" not in ctx.chosen["reductions"]:
        return []
    c = ctx.contract
    return linear_cross_entropy_default_calls(max_size=ctx.max_size, long=c.long_axes,
                                              budget=c.budget)
