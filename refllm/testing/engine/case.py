"""`Case`: one drawn input for an op, in the op's PyTorch calling convention.

Every strategy of :mod:`refllm.testing.strategies` draws `Case` objects, so that one value can be
fed to refllm's reference, to PyTorch's op and to a user's implementation alike
(``case.call(fn)``), converted (``case.to(dtype=torch.bfloat16)``) and printed as a runnable
Python snippet that rebuilds it exactly (``case.snippet()``).

>>> import torch
>>> c = Case(args=(torch.tensor([[1.0, 2.0]], dtype=torch.float64),), kwargs={"dim": -1})
>>> print(c.snippet("fn"))
import torch
args = (torch.tensor([[1.0, 2.0]], dtype=torch.float64),)
kwargs = {'dim': -1}
out = fn(*args, **kwargs)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch


def _tensor_literal(t: torch.Tensor) -> str:
    """Python source that rebuilds ``t`` exactly (values, dtype, shape, requires_grad, layout)."""
    data = t.detach().to("cpu")
    transposed = t.dim() >= 2 and not t.is_contiguous() and _is_t(t)
    stored = data.transpose(-1, -2) if transposed else data
    if data.numel() == 0:
        src = f"torch.empty({tuple(data.shape)}, dtype={data.dtype})"
    elif data.is_floating_point():
        src = f"torch.tensor({_float_list(stored.to(torch.float64).tolist())}, dtype={data.dtype})"
    else:
        src = f"torch.tensor({stored.tolist()!r}, dtype={data.dtype})"
    if transposed and data.numel():
        src += ".transpose(-1, -2)"  # the same non-contiguous layout as the drawn tensor
    if t.requires_grad:
        src += ".requires_grad_()"
    return src


def _is_t(t: torch.Tensor) -> bool:
    return t.transpose(-1, -2).is_contiguous()


def _float_list(x: Any) -> str:
    if isinstance(x, list):
        return "[" + ", ".join(_float_list(v) for v in x) + "]"
    if math.isnan(x):
        return "float('nan')"
    if math.isinf(x):
        return "float('inf')" if x > 0 else "float('-inf')"
    return repr(float(x))


def to_source(value: Any) -> str:
    """Python source for a case argument: tensors, generators, dtypes, containers and scalars."""
    if isinstance(value, torch.Tensor):
        return _tensor_literal(value)
    if isinstance(value, torch.dtype):
        return str(value)
    if isinstance(value, torch.Generator):
        return f"torch.Generator().manual_seed({value.initial_seed()})"
    if isinstance(value, tuple):
        inner = ", ".join(to_source(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(to_source(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {to_source(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float):
        return _float_list(value)
    return repr(value)


@dataclasses.dataclass
class Case:
    """Positional and keyword arguments for one call of an op, in PyTorch's convention."""

    args: tuple
    kwargs: dict = dataclasses.field(default_factory=dict)
    note: str = ""

    def call(self, fn: Callable[..., Any]) -> Any:
        return fn(*self.args, **self.kwargs)

    def map_tensors(self, f: Callable[[torch.Tensor], torch.Tensor]) -> Case:
        """A copy with ``f`` applied to every tensor argument (in tuples, lists and dicts too)."""

        def go(v: Any) -> Any:
            if isinstance(v, torch.Tensor):
                return f(v)
            if isinstance(v, tuple):
                return tuple(go(x) for x in v)
            if isinstance(v, list):
                return [go(x) for x in v]
            if isinstance(v, dict):
                return {k: go(x) for k, x in v.items()}
            return v

        return Case(go(self.args), go(self.kwargs), self.note)

    def to(self, dtype: torch.dtype | None = None,
           device: str | torch.device | None = None) -> Case:
        """Floating-point tensors cast to ``dtype``; every tensor moved to ``device``."""

        def conv(t: torch.Tensor) -> torch.Tensor:
            out = t.detach()
            if dtype is not None and out.is_floating_point():
                out = out.to(dtype)
            if device is not None:
                out = out.to(device)
            return out.requires_grad_(t.requires_grad)

        return self.map_tensors(conv)

    def describe(self) -> str:
        """One line: tensor shapes and dtypes, other values as written, e.g.
        ``(float32[2, 3, 5, 4], ...), is_causal=True``."""

        def show(v: Any) -> str:
            if isinstance(v, torch.Tensor):
                return f"{str(v.dtype).removeprefix('torch.')}{list(v.shape)}"
            if isinstance(v, (tuple, list)):
                return "(" + ", ".join(show(x) for x in v) + ")"
            return repr(v)

        parts = [show(a) for a in self.args] + [f"{k}={show(v)}" for k, v in self.kwargs.items()]
        return "(" + ", ".join(parts) + ")"

    def snippet(self, fn_name: str = "fn") -> str:
        """A runnable Python snippet that rebuilds this case and calls ``fn_name`` on it."""
        return (
            "import torch\n"
            f"args = {to_source(self.args)}\n"
            f"kwargs = {to_source(self.kwargs)}\n"
            f"out = {fn_name}(*args, **kwargs)"
        )
