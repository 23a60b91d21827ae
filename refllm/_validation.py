"""Argument checks shared by every public function.

Every error names the argument, what was seen and what was expected, so that a user never has to
read a stack trace from deep inside torch. The helpers return nothing; they raise `TypeError` for a
wrong kind of object or dtype and `ValueError` for a wrong shape or value.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def describe(x: object) -> str:
    """A short description of ``x`` for error messages: shape and dtype for tensors."""
    if isinstance(x, torch.Tensor):
        return f"tensor of shape {tuple(x.shape)} and dtype {x.dtype} on {x.device}"
    return f"{type(x).__name__} {x!r}"[:200]


def require_tensor(name: str, x: object) -> torch.Tensor:
    """Raise `TypeError` unless ``x`` is a tensor; return it (typed) otherwise."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {describe(x)}")
    return x


def require_float(name: str, x: object) -> torch.Tensor:
    """Raise `TypeError` unless ``x`` is a float16/bfloat16/float32/float64 tensor."""
    t = require_tensor(name, x)
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be a floating-point tensor (float16, bfloat16, float32 or float64), "
            f"got {describe(t)}"
        )
    return t


def require_ndim(
    name: str, x: torch.Tensor, *, exact: int | Sequence[int] | None = None,
    at_least: int | None = None, layout: str = "",
) -> None:
    """Raise `ValueError` unless ``x.ndim`` is in ``exact`` or at least ``at_least``.

    ``layout`` is the expected shape in the axis alphabet (e.g. ``"(..., t, d)"``) for the message.
    """
    hint = f" {layout}" if layout else ""
    if exact is not None:
        allowed = (exact,) if isinstance(exact, int) else tuple(exact)
        if x.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"{name} must have {want} dimensions{hint}, got {describe(x)}")
    if at_least is not None and x.ndim < at_least:
        raise ValueError(
            f"{name} must have at least {at_least} dimensions{hint}, got {describe(x)}"
        )


def require_same_dtype(names: Sequence[str], tensors: Sequence[torch.Tensor]) -> None:
    """Raise `TypeError` unless all tensors share one dtype."""
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) > 1:
        seen = ", ".join(f"{n}: {t.dtype}" for n, t in zip(names, tensors))
        raise TypeError(f"{', '.join(names)} must share one dtype, got {seen}")


def require_same_device(names: Sequence[str], tensors: Sequence[torch.Tensor]) -> None:
    """Raise `ValueError` unless all tensors live on one device."""
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        seen = ", ".join(f"{n}: {t.device}" for n, t in zip(names, tensors))
        raise ValueError(f"{', '.join(names)} must be on one device, got {seen}")


def require_broadcastable(name: str, shape: Sequence[int], to: Sequence[int], *,
                          layout: str = "") -> None:
    """Raise `ValueError` unless ``shape`` broadcasts to ``to`` *without* growing ``to``."""
    shape, to = tuple(shape), tuple(to)
    ok = len(shape) <= len(to) and all(
        a == b or a == 1 for a, b in zip(reversed(shape), reversed(to))
    )
    if not ok:
        hint = f" {layout}" if layout else ""
        raise ValueError(f"{name} of shape {shape} cannot be broadcast to {to}{hint}")


def require_in_range(name: str, value: float, *, low: float | None = None,
                     high: float | None = None, low_open: bool = False,
                     high_open: bool = False) -> None:
    """Raise `ValueError` unless ``low <= value <= high`` (strict where ``*_open``)."""
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and (value >= high if high_open else value > high)
    if bad_low or bad_high:
        lo = "-inf" if low is None else repr(low)
        hi = "inf" if high is None else repr(high)
        interval = f"{'(' if low_open else '['}{lo}, {hi}{')' if high_open else ']'}"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")


def require_bool(name: str, value: object) -> bool:
    """Raise `TypeError` unless ``value`` is a Python bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {describe(value)}")
    return value


def require_int(name: str, value: object, *, low: int | None = None) -> int:
    """Raise `TypeError` unless ``value`` is an int (not a bool); `ValueError` if below ``low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {describe(value)}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return int(value)


def require_real(name: str, value: object, *, low: float | None = None,
                 high: float | None = None, low_open: bool = False,
                 high_open: bool = False) -> float:
    """Raise `TypeError` unless ``value`` is a real number (not a bool); `ValueError` if it is NaN,
    infinite, or outside ``[low, high]`` (open at either end where asked). Return it as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {describe(value)}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    require_in_range(name, float(value), low=low, high=high, low_open=low_open,
                     high_open=high_open)
    return float(value)


def require_choice(name: str, value: object, choices: Iterable[object], *,
                   also: str = "") -> None:
    """Raise `ValueError` unless ``value`` is one of ``choices`` (listed in the message, in the
    given order; ``also`` names what else is accepted, e.g. "or a JSON file")."""
    options = list(choices)
    try:
        ok = value in options
    except TypeError:  # a value that cannot be compared
        ok = False
    if not ok:
        raise choice_error(name, value, options, also=also)


def choice_error(name: str, value: object, choices: Iterable[object], *,
                 also: str = "") -> ValueError:
    """The `ValueError` of `require_choice`, for a caller that knows ``value`` is not a choice."""
    tail = f" {also}" if also else ""
    return ValueError(f"{name} must be one of {list(choices)}{tail}, got {value!r}")
