"""One comparator for every test and check, built on `torch.testing.assert_close`.

>>> import torch
>>> x = torch.tensor([1.0], dtype=torch.float64)
>>> assert_close(x, x + 1e-15)
"""

from __future__ import annotations

import torch

from refllm.testing.engine.tolerances import Tolerance, tolerance


def assert_close(actual: torch.Tensor, expected: torch.Tensor, *, kind: str = "exact",
                 tol: Tolerance | None = None, dtype: torch.dtype | None = None,
                 msg: str = "") -> None:
    """Assert ``actual`` matches ``expected`` elementwise under refllm's tolerance table.

    ``kind="exact"`` (default) is the bound for two float64 computations of one formula;
    ``kind="impl"`` is the per-dtype bound for an implementation against the float64 reference,
    taking the dtype from ``dtype`` or ``actual``. Both are compared in float64 on the CPU, so the
    reference is never rounded to the implementation's dtype. NaNs must
    match NaNs and infinities must match exactly; shapes must be equal (no broadcasting).
    """
    tol = tol or tolerance(dtype or actual.dtype, kind)
    if actual.shape != expected.shape:
        raise AssertionError(
            f"{msg + ': ' if msg else ''}shape mismatch: got {tuple(actual.shape)}, "
            f"expected {tuple(expected.shape)}"
        )
    a = actual.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    if torch.equal(a, e):  # bitwise equal, so within any tolerance (3 us against 330 us; most
        return             # calls in the test suite compare equal tensors)
    torch.testing.assert_close(
        a, e, rtol=tol.rtol, atol=tol.atol, equal_nan=True, check_dtype=False,
        msg=(lambda m: f"{msg}\n{m}") if msg else None,
    )
