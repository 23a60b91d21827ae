"""`check_rms_norm`: any function with the signature of ``F.rms_norm``.

    y_i = x_i / sqrt(eps + (1/n) sum_j x_j^2) * w_i        (over the ``normalized_shape`` axes)

The function is called as PyTorch's op is, ``fn(input, normalized_shape, weight, eps=eps)``
(``weight`` left out with the feature "no_weight", ``eps`` only with "eps"), and compared with
:func:`refllm.ops.norms.rms_norm` run in float64: the output, and the gradients wrt ``input`` and
``weight`` under a random upstream gradient. The default call ``F.rms_norm(x, (n,), weight)`` is
judged first on fixed inputs, kernel-sized ones included (a row of 1,100 elements; 1,100 rows).

``eps=None`` means what it means to PyTorch: the machine epsilon of the computation type of the
*checked* dtype (``finfo(float32).eps`` for bfloat16, float16 and float32), so the float64
reference is given that eps, not float64's.

refllm's variants: the feature "weight_offset" (the target takes ``weight_offset=1.0``, Gemma's
``1 + w``, with the weight drawn around 0), and the choice ``cast``, where the *target* rounds to
the input's dtype: "after_weight" (PyTorch's, the default) or "before_weight" (Hugging Face's
``LlamaRMSNorm`` rounds the normalised value, then multiplies by the weight in the input's dtype).
The target is not given ``cast``: the check's plain same-dtype computation, which sets the
bfloat16/float16 tolerance, rounds where the target says it does. Adapters for
``nn.RMSNorm`` and Hugging Face's ``LlamaRMSNorm`` modules are in
:mod:`refllm.testing.rms_norm.adapters`.

The choice ``residual``: "none" (the default) or "fused", the fused residual add of vLLM,
Liger-Kernel and Unsloth: every case passes ``residual=r`` and the target returns ``(out,
new_residual)`` with ``new_residual = input + residual`` and ``out`` its RMSNorm; both outputs
and the gradients wrt ``input``, ``weight`` and ``residual`` are judged, under upstream
gradients on both outputs (:mod:`refllm.testing.rms_norm.residual`; ``adapters`` wraps a
``fused_add_rms_norm(x, residual, weight, eps)`` kernel).
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
from refllm.testing.rms_norm.record import RECORD

RMS_NORM_FEATURES = ("no_weight", "eps", "multi_dim", "small_variance", "large_offset",
                     "weight_offset")
"""What `check_rms_norm` can exercise (see :mod:`refllm.testing.rms_norm.strategy`)."""

DEFAULT_RMS_NORM_FEATURES = RMS_NORM_FEATURES[:5]
"""Everything ``F.rms_norm`` takes: all features but refllm's variant "weight_offset"."""

RESIDUALS = ("none", "fused")
"""Whether the target fuses a residual add: "none" (``F.rms_norm``) or "fused" (every case
passes ``residual=r``; the target returns ``(out, input + residual)``)."""


def check_rms_norm(fn: Callable[..., Any] | str, *, features: Iterable[str] | None = None,
                   cast: str | None = None, residual: str | bool | None = None,
                   **options: Any) -> Report:
    """Check ``fn`` (or ``"module:name"``) against refllm's RMSNorm.

    ``features``: which of :data:`RMS_NORM_FEATURES` to exercise (default
    :data:`DEFAULT_RMS_NORM_FEATURES`); ``cast``: "after_weight" (default) or "before_weight";
    ``residual``: "none" (default) or "fused" (True reads as "fused", False as "none"; module
    docs); ``contract``: a `refllm.testing.contract.Contract`
    (``dtypes``, ``long_axes``, ``budget``, ``unsupported``). The other options are every check's
    (`refllm.testing.engine.options.CheckOptions`: see `refllm.testing.checks.check_sdpa`).
    """
    if isinstance(residual, bool):
        residual = RESIDUALS[residual]
    return check(RECORD, fn, features=features, cast=cast, residual=residual, **options)


def _fused(ctx: CheckContext) -> bool:
    return ctx.chosen.get("residual", "none") == "fused"


def build(record: Any, ctx: CheckContext) -> Any:
    """The engine's spec (the record's ``build`` hook): the generic function spec, or with
    ``residual="fused"`` the spec of a target returning two tensors, whose gradients are taken
    wrt ``residual`` too (:class:`refllm.testing.rms_norm.residual.ResidualSpec`)."""
    import dataclasses

    from refllm.testing.engine.check import function_spec

    spec = function_spec(ctx)
    if not _fused(ctx):
        return spec
    from refllm.testing.rms_norm.residual import ResidualSpec

    fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)
              if f.init and f.name != "properties"}
    fields["grad_inputs"] = {**spec.grad_inputs, "residual": "residual"}
    return ResidualSpec(**fields)


def cases(ctx: CheckContext) -> st.SearchStrategy[Case]:
    from refllm.testing.rms_norm.strategy import rms_norm_cases

    c = ctx.contract
    return rms_norm_cases(dtype=torch.float64, features=ctx.features, max_size=ctx.max_size,
                          long_axes=c.long_axes, budget=c.budget, residual=_fused(ctx))


def calls(ctx: CheckContext) -> list[Case]:
    from refllm.testing.rms_norm.strategy import rms_norm_default_calls

    c = ctx.contract
    return rms_norm_default_calls(max_size=ctx.max_size, long=c.long_axes, budget=c.budget,
                                  residual=_fused(ctx))


def adapt(ctx: CheckContext, spec: dict[str, Any]) -> dict[str, Any]:
    """The reference and its naive twin with ``eps=None`` read as the checked dtype's default,
    and rounding where the chosen ``cast`` says."""
    spec = with_default_eps(ctx, spec)
    cast = ctx.chosen["cast"]
    if cast != "after_weight":
        for key in ("reference", "naive"):
            if spec.get(key) is not None:
                spec[key] = functools.partial(spec[key], cast=cast)
    return spec


def with_default_eps(ctx: CheckContext, spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with its reference and naive twin given PyTorch's default eps of ``ctx.dtype``
    where a case leaves eps out (RMSNorm's ``eps=None``; LayerNorm's default is a number)."""
    from refllm.ops.norms import default_eps

    eps = default_eps(ctx.dtype)
    spec = dict(spec)
    spec["reference"] = _eps_default(spec["reference"], eps)
    if spec.get("naive") is not None:
        spec["naive"] = _eps_default(spec["naive"], eps)
    return spec


def _eps_default(fn: Callable[..., Any], eps: float) -> Callable[..., Any]:
    @functools.wraps(fn)
    def call(input: torch.Tensor, normalized_shape: Any, weight: Any = None, eps_: Any = None,
             **kwargs: Any) -> Any:
        given = kwargs.pop("eps", eps_)
        return fn(input, normalized_shape, weight, eps if given is None else given, **kwargs)

    return call
