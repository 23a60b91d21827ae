"""The checks' judgement of one example, for a user's own Hypothesis test.

The checks (`refllm.testing.check_sdpa`, ...) search with refllm's strategies. A user who writes
their own ``@given`` test, on refllm's public strategies or their own, gets the same verdict and
the same report from `judge`: the same float64 reference run on the same upcast inputs, the same
tolerance policy (:mod:`refllm.testing.engine.policy`: elementwise a-priori error bounds in
float32/float64, a same-dtype plain reference for bfloat16/float16), the same "unsupported" rule
and the same repro snippet::

    from hypothesis import given
    from refllm.testing import judge
    from refllm.testing.strategies import sdpa_cases

    @given(sdpa_cases())
    def test_my_attention(case):
        judge("sdpa", my_attention, case, dtype=torch.bfloat16)

`judge` raises `refllm.testing.OracleFailure` (an AssertionError, so Hypothesis shrinks the case
and pytest shows the report) or returns the passed `Report`. Only the example given is judged:
the checks' fixed default calls are not added, and nothing is drawn.
"""

from __future__ import annotations

from typing import Any

import torch

from refllm.testing.engine.report import Report


def judge(op: str, target: Any, case: Any, *, dtype: torch.dtype = torch.float32,
          device: str = "cpu", grad_seed: int = 0, raise_on_failure: bool = True,
          **options: Any) -> Report:
    """Judge ``target`` on one example exactly as the check of ``op`` would.

    Parameters:
        op: a check name: "sdpa", "cross-entropy", "mse", "multihead", "optimizer", "kv-cache",
            "softmax" (`refllm.testing.registry.RECORDS`).
        target: the implementation (function, class or ``"module:name"``), as for the check.
        case: what the op's strategy draws: a `refllm.testing.engine.case.Case` for the functions
            (any dtype: it is cast to ``dtype`` as the check casts it), a drawn MHA case, an
            `OptimizerProblem` for "optimizer", a `KVProblem` for "kv-cache".
        dtype, device: what the inputs are cast to before ``target`` sees them.
        grad_seed: seed of the random upstream gradient (functions and MHA).
        raise_on_failure: raise `OracleFailure` holding the report on a disagreement (and when
            the target refuses the input as unsupported).
        options: the check's other keywords (``grads=False``, ``like="adam"`` for optimizers,
            and ``contract=``: a `refllm.testing.contract.Contract` whose conventions the
            reference follows, e.g. ``Contract(fully_masked_rows="nan")``, and whose dtypes
            and fields are validated as the check validates them; the example itself is judged
            as given, not redrawn inside the contract).
    """
    from refllm.testing.engine.check import check
    from refllm.testing.registry import RECORDS

    if op not in RECORDS:
        raise ValueError(f"op must be one of {sorted(RECORDS)}, got {op!r}")
    if not isinstance(grad_seed, int) or isinstance(grad_seed, bool) or grad_seed < 0:
        raise ValueError(f"grad_seed must be a non-negative int, got {grad_seed!r}")
    record = RECORDS[op]
    drawn = case if record.drawn == "problem" else (case, grad_seed)
    return check(record, target, fixed=drawn, dtype=dtype, device=device,
                 raise_on_failure=raise_on_failure, **options)


__all__ = ["judge"]
