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

from refllm.testing.contract import Contract, apply
from refllm.testing.engine.calls import DEFAULT_TIMEOUT
from refllm.testing.engine.function import FunctionSpec
from refllm.testing.engine.options import features_of, parse_dtype
from refllm.testing.engine.report import Report
from refllm.testing.engine.search import DEFAULT_THREADS, run
from refllm.testing.engine.targets import resolve

SOFTMAX_FEATURES = ("large_logits", "masked_entries", "masked_rows")
"""What `check_softmax` can exercise: logits scaled up to 1e4 ("large_logits"), single ``-inf``
entries ("masked_entries") and whole ``-inf`` rows ("masked_rows", not by default)."""

DEFAULT_SOFTMAX_FEATURES = ("large_logits", "masked_entries")
"""All features but "masked_rows" (see the module docs)."""


def check_softmax(fn: Callable[..., Any] | str, *, dtype: torch.dtype | str = torch.float32,
                  device: str = "cpu", examples: int | None = None,
                  features: Iterable[str] | None = None, grads: bool = True,
                  seed: int | None = None, max_size: int = 6, naive: bool = False,
                  raise_on_failure: bool = True, threads: int | None = DEFAULT_THREADS,
                  timeout: float | None = DEFAULT_TIMEOUT,
                  contract: Contract | None = None) -> Report:
    """Check ``fn`` (or ``"module:name"``) against refllm's softmax.

    ``features``: which of :data:`SOFTMAX_FEATURES` to exercise (default
    :data:`DEFAULT_SOFTMAX_FEATURES`); ``contract``: a `refllm.testing.contract.Contract`
    (``dtypes``, ``unsupported``). The other parameters are those of
    `refllm.testing.checks.check_sdpa`.
    """
    dtype = parse_dtype(dtype)  # "bf16", "float32", torch.float32: as the CLI
    from refllm.ops.softmax import softmax, softmax_naive
    from refllm.testing.softmax.strategy import softmax_cases, softmax_default_calls

    chosen = features_of(DEFAULT_SOFTMAX_FEATURES if features is None else features,
                         SOFTMAX_FEATURES, "softmax")
    c = apply(contract, "softmax", dtype)
    impl, target = resolve(fn, "fn")
    cases = softmax_cases(dtype=torch.float64, max_size=max_size,
                          large_logits="large_logits" in chosen,
                          neg_inf_entries="masked_entries" in chosen,
                          neg_inf_rows="masked_rows" in chosen)
    spec = FunctionSpec(
        op="softmax", fn=impl, target=target, reference=softmax,
        reference_name="refllm.ops.softmax:softmax", cases=cases, grad_inputs={"input": 0},
        dtype=dtype, device=device, grads=grads, naive=softmax_naive if naive else None,
        default_calls=softmax_default_calls(max_size=max_size, long=c.long_axes),
    )
    spec.unsupported = c.unsupported
    return run(spec, target=target or repr(fn), dtype=dtype, device=device, examples=examples,
               seed=seed, raise_on_failure=raise_on_failure, threads=threads, timeout=timeout,
               features=chosen)
