"""`check_layer_norm`: any function with the signature of ``F.layer_norm``.

    mu = (1/n) sum_j x_j      var = (1/n) sum_j (x_j - mu)^2
    y_i = (x_i - mu) / sqrt(var + eps) * w_i + b_i                (over ``normalized_shape``)

The function is called as PyTorch's op is, ``fn(input, normalized_shape, weight, bias, eps=eps)``
(``weight`` or ``bias`` None with the features "no_weight", "no_bias"; ``eps`` only with "eps",
else PyTorch's 1e-5), and compared with :func:`refllm.ops.norms.layer_norm` (two-pass variance)
run in float64: the output, and the gradients wrt ``input``, ``weight`` and ``bias`` under a
random upstream gradient. The default call ``F.layer_norm(x, (n,), weight, bias)`` is judged
first on fixed inputs, kernel-sized ones included (a row of 1,100 elements; 1,100 rows).
The feature "large_offset" (a common offset of 1e2 to 1e3) is where a one-pass variance cancels.

Floors (`layer_norm_floors`): LayerNorm is ill-conditioned where a row's mean is large against its
spread, and there even a correct kernel errs. Any implementation in a dtype whose computation
type has unit roundoff u forms the mean rounded, ``mu (1 + d)`` with ``|d| <= u``; to first
order that moves every normalised value by ``r u |mu|`` (``r = 1 / sqrt(var + eps)``), the
output by ``|w|`` times that, the input gradient
``dx = (r/n)(n wg - sum wg - x_hat sum(wg x_hat))`` (``wg = w g``) by at most
``r * r u |mu| * max|wg| * (1 + 2 max|x_hat|)`` and the weight gradient ``sum_rows g x_hat`` by
``sum_rows |g| r u |mu|``. Those, times the policy's noise factor 2, are the floors; they are
far below the error of a one-pass variance (relative ``u E[x^2] / var``) and vanish for rows
centred near 0. The bias gradient has none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from hypothesis import strategies as st

from refllm.testing.engine.case import Case
from refllm.testing.engine.check import CheckContext, check
from refllm.testing.engine.report import Report
from refllm.testing.layer_norm.record import RECORD

LAYER_NORM_FEATURES = ("no_weight", "no_bias", "eps", "multi_dim", "small_variance",
                       "large_offset")
"""What `check_layer_norm` can exercise (see :mod:`refllm.testing.rms_norm.strategy`)."""


def check_layer_norm(fn: Callable[..., Any] | str, *, features: Iterable[str] | None = None,
                     **options: Any) -> Report:
    """Check ``fn`` (or ``"module:name"``) against refllm's LayerNorm.

    ``features``: which of :data:`LAYER_NORM_FEATURES` to exercise (default: all);
    ``contract``: a `refllm.testing.contract.Contract` (``dtypes``, ``long_axes``, ``budget``,
    ``unsupported``). The other options are every check's
    (`refllm.testing.engine.options.CheckOptions`: see `refllm.testing.checks.check_sdpa`).
    """
    return check(RECORD, fn, features=features, **options)


def layer_norm_floors(case: Case, out: torch.Tensor, g: torch.Tensor | None,
                      dtype: torch.dtype) -> dict[str, float]:
    """The first-order error of a correctly rounded mean, per property (module docs)."""
    from refllm.testing.engine.tolerances import LOW_PRECISION_NOISE_FACTOR

    x, shape, weight = case.args[0], case.args[1], case.args[2]
    eps = case.kwargs.get("eps", 1e-5)
    dims = tuple(range(-len(shape), 0))
    u = torch.finfo(torch.float64 if dtype == torch.float64 else torch.float32).eps / 2
    x = x.detach().double()
    mu = x.mean(dims, keepdim=True)
    r = torch.rsqrt((x - mu).square().mean(dims, keepdim=True) + eps)
    x_hat = (x - mu) * r
    shift = r * u * mu.abs()  # the move of every normalised value of the row
    w = torch.ones(shape, dtype=torch.float64) if weight is None else weight.detach().double()
    k = LOW_PRECISION_NOISE_FACTOR
    floors = {"forward output": k * float((shift * w.abs()).max())}
    if g is not None:
        wg = (w * g).abs().amax(dims, keepdim=True)
        spread = 1 + 2 * x_hat.abs().amax(dims, keepdim=True)
        floors["grad wrt input"] = k * float((r * shift * wg * spread).max())
        rows = tuple(range(x.dim() - len(shape)))
        floors["grad wrt weight"] = k * float((g.abs() * shift).sum(rows).max()) if rows \
            else k * float((g.abs() * shift).max())
    return floors


def cases(ctx: CheckContext) -> st.SearchStrategy[Case]:
    from refllm.testing.layer_norm.strategy import layer_norm_cases

    c = ctx.contract
    return layer_norm_cases(dtype=torch.float64, features=ctx.features, max_size=ctx.max_size,
                            long_axes=c.long_axes, budget=c.budget)


def calls(ctx: CheckContext) -> list[Case]:
    from refllm.testing.layer_norm.strategy import layer_norm_default_calls

    c = ctx.contract
    return layer_norm_default_calls(max_size=ctx.max_size, long=c.long_axes, budget=c.budget)
