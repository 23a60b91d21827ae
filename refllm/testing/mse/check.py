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

from refllm.ops.choices import REDUCTIONS
from refllm.testing.contract import Contract, apply
from refllm.testing.engine.calls import DEFAULT_TIMEOUT
from refllm.testing.engine.function import FunctionSpec
from refllm.testing.engine.options import parse_dtype
from refllm.testing.engine.report import Report
from refllm.testing.engine.search import DEFAULT_THREADS, run
from refllm.testing.engine.targets import resolve


def check_mse(fn: Callable[..., Any] | str, *, dtype: torch.dtype | str = torch.float32,
              device: str = "cpu", examples: int | None = None,
              reductions: Sequence[str] = REDUCTIONS, grads: bool = True, seed: int | None = None,
              max_size: int = 6, naive: bool = False, raise_on_failure: bool = True,
              threads: int | None = DEFAULT_THREADS,
              timeout: float | None = DEFAULT_TIMEOUT, contract: Contract | None = None) -> Report:
    """Check ``fn`` (or ``"module:name"``) against refllm's mean squared error.

    Gradients are compared wrt both ``input`` and ``target``; ``reductions`` picks the reductions
    drawn; ``contract``: a `refllm.testing.contract.Contract` (``sizes={"numel": (lo, hi)}``,
    ``dtypes``, ``long_axes``, ``budget``, ``unsupported``). The other parameters are those of
    `refllm.testing.checks.check_sdpa`.
    """
    dtype = parse_dtype(dtype)  # "bf16", "float32", torch.float32: as the CLI
    from refllm.ops.mse import mse_loss, mse_loss_naive
    from refllm.testing.mse.strategy import mse_cases, mse_default_calls

    c = apply(contract, "mse", dtype)
    impl, target = resolve(fn, "fn")
    spec = FunctionSpec(
        op="mse", fn=impl, target=target, reference=mse_loss,
        reference_name="refllm.ops.mse:mse_loss",
        cases=mse_cases(dtype=torch.float64, reductions=tuple(reductions), max_size=max_size,
                        write_defaults=False, long_axes=c.long_axes, budget=c.budget,
                        sizes=c.ranges("mse")),
        grad_inputs={"input": 0, "target": 1}, dtype=dtype, device=device, grads=grads,
        naive=mse_loss_naive if naive else None,
        default_calls=mse_default_calls(max_size=max_size, sizes=c.ranges("mse"),
                                        long=c.long_axes, budget=c.budget)
        if "mean" in reductions else [],
    )
    spec.unsupported = c.unsupported
    return run(spec, target=target or repr(fn), dtype=dtype, device=device, examples=examples,
               seed=seed, raise_on_failure=raise_on_failure, threads=threads, timeout=timeout,
               features=tuple(reductions))
