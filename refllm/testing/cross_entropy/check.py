"""`check_cross_entropy`: any function with the signature of ``F.cross_entropy``.

    L = -sum_c y_c log softmax(x)_c   (weights, ignore_index, label smoothing)

The function is called as PyTorch's op is, ``fn(input, target, **kwargs)`` with non-default
keywords only, and compared with :func:`refllm.ops.cross_entropy.cross_entropy` run in float64:
the loss, and the gradient wrt ``input`` under a random upstream gradient.

The default call (the language-model loss ``F.cross_entropy(logits (n, c), targets)`` with no
keyword) is judged first on fixed inputs, then drawn in about one example in five (docs/oracle.md,
"The default call"); not where ``reductions`` leaves out "mean" or ``features`` leaves out
"index_targets".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from hypothesis import strategies as st

from refllm.ops.choices import REDUCTIONS as _REDUCTIONS
from refllm.testing.cross_entropy.record import RECORD
from refllm.testing.engine.case import Case
from refllm.testing.engine.check import CheckContext, check
from refllm.testing.engine.function import OVERFLOW
from refllm.testing.engine.report import Report
from refllm.testing.engine.tolerances import LOW_PRECISION_NOISE_FACTOR, tree_reduction_error

CROSS_ENTROPY_FEATURES = ("k_dims", "index_targets", "prob_targets", "weights", "ignore_index",
                          "label_smoothing", "extreme_logits")
"""What `check_cross_entropy` exercises by default (all of them): inputs with extra dimensions
``(b, c, d1, ...)`` ("k_dims"), class-index and class-probability targets, class ``weight``,
``ignore_index``, ``label_smoothing`` and logits up to +-1e4 ("extreme_logits")."""

REDUCTIONS = _REDUCTIONS  # one list: refllm.ops.choices (PyTorch's default first)


def cross_entropy_floors(case: Case, out: torch.Tensor, g: torch.Tensor | None,
                         dtype: torch.dtype) -> dict[str, float]:
    """Rounding noise of d loss / d input = g * w * (softmax(x) - y) where it cancels to 0.

    Where ``softmax(x)`` equals the (smoothed) target the exact gradient is 0, but a same-dtype
    computation of the difference of two terms of size up to ``|g| * w`` leaves about one ulp of
    them, which no rounding of the (zero) reference shows.
    """
    weight = case.kwargs.get("weight")
    w = float(weight.abs().max()) if isinstance(weight, torch.Tensor) else 1.0
    floors = {OVERFLOW: _log_prob_magnitude(case, w) / torch.finfo(dtype).max,
              "forward output": _cross_entropy_reduction_floor(case, out, dtype)}
    if g is None or g.numel() == 0:
        return floors
    noise = LOW_PRECISION_NOISE_FACTOR * torch.finfo(dtype).eps * float(g.abs().max()) * w
    return {**floors, "grad wrt input": noise}


def _cross_entropy_reduction_floor(case: Case, out: torch.Tensor, dtype: torch.dtype) -> float:
    """Rounding of the "mean"/"sum" reduction in ``dtype``: PyTorch's bfloat16 mean of 255 equal
    row losses (ln 3, each rounded to 1.1016) came out 1.125, 3.4 ulps above the exact 1.0986 and
    past "2 x the plain error + 2 ulps"; a tree reduction's bound allows it, a lost term does not.
    ``gamma_k * (sum |w_i l_i| / |denominator| + |mean|)`` for the mean (its denominator is a sum
    too), ``gamma_k * sum |w_i l_i|`` for the sum."""
    from refllm.ops.cross_entropy import cross_entropy

    reduction = case.kwargs.get("reduction", "mean")
    if reduction == "none" or out.numel() != 1:
        return 0.0
    x, target = (a.detach() for a in case.args[:2])
    kwargs: dict[str, Any] = {k: (v.detach() if isinstance(v, torch.Tensor) else v)
                              for k, v in case.kwargs.items() if k != "reduction"}
    terms = cross_entropy(x, target, reduction="none", **kwargs)
    gamma_k = tree_reduction_error(terms.numel(), dtype)
    total = float(terms.abs().sum())
    if reduction == "sum":
        return gamma_k * total
    if target.is_floating_point():  # probability targets: the mean over the batch elements
        denominator = float(terms.numel())
    else:
        weight = kwargs.get("weight")
        kept = target != kwargs.get("ignore_index", -100)
        w = weight[target.clamp(min=0)] if isinstance(weight, torch.Tensor) else \
            torch.ones(target.shape, dtype=torch.float64)
        denominator = float((w * kept).sum())
    if denominator == 0.0:
        return 0.0  # nothing kept: the mean is 0/0, judged as non-finite on both sides
    return gamma_k * (total / abs(denominator) + abs(float(out.detach())))


def _log_prob_magnitude(case: Case, w: float) -> float:
    """``w * sum |log softmax(x)|`` over every element and class: the size of the sum a
    label-smoothed (or probability-target) cross-entropy forms; beyond the dtype's largest value
    the plain computation overflows though the loss may be finite (float16, logits of 1e4)."""
    x = case.args[0].detach().to("cpu", torch.float64)
    dim = 0 if x.dim() == 1 else 1
    return w * float(torch.log_softmax(x, dim=dim).abs().nan_to_num(0.0, 0.0, 0.0).sum())


def check_cross_entropy(fn: Callable[..., Any] | str, *,
                        features: Iterable[str] | None = None,
                        reductions: Sequence[str] | None = None, **options: Any) -> Report:
    """Check ``fn`` (or ``"module:name"``) against refllm's cross-entropy.

    ``features``: which of :data:`CROSS_ENTROPY_FEATURES` to exercise (default: all; at least one
    of "index_targets" and "prob_targets"); ``reductions``: which reductions to draw (default:
    all); ``contract``: a `refllm.testing.contract.Contract` (``sizes`` of "rows" and "classes",
    e.g. a kernel's vocabulary sizes, ``dtypes``, ``long_axes``, ``budget``, ``unsupported``).
    The other options are every check's (`refllm.testing.engine.options.CheckOptions`: see
    `refllm.testing.checks.check_sdpa`).
    """
    return check(RECORD, fn, features=features, reductions=reductions, **options)


def cases(ctx: CheckContext) -> st.SearchStrategy[Case]:
    from refllm.testing.cross_entropy.strategy import cross_entropy_cases

    c = ctx.contract
    flags = {f: ctx.has(f) for f in CROSS_ENTROPY_FEATURES}
    return cross_entropy_cases(dtype=torch.float64, reductions=ctx.chosen["reductions"],
                               max_size=ctx.max_size, write_defaults=False,
                               long_axes=c.long_axes, budget=c.budget, sizes=ctx.ranges, **flags)


def calls(ctx: CheckContext) -> list[Case]:
    from refllm.testing.cross_entropy.strategy import cross_entropy_default_calls

    if not ctx.has("index_targets") or "mean" not in ctx.chosen["reductions"]:
        return []
    c = ctx.contract
    return cross_entropy_default_calls(max_size=ctx.max_size, sizes=ctx.ranges,
                                       long=c.long_axes, budget=c.budget)
