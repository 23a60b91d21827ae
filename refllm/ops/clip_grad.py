"""Gradient clipping by the global norm, with ``torch.nn.utils``'s signatures.

Global-norm clipping (Pascanu, Mikolov & Bengio 2013, "On the difficulty of training recurrent
neural networks", §3.2, Algorithm 1), in PyTorch's form, over the gradients g_1..g_K of the
parameters that have one:

    N   = ||(g_1, ..., g_K)||_p         the p-norm of all their elements as one vector
        = ||(||g_1||_p, ..., ||g_K||_p)||_p      (how the fast version computes it)
    g_j <- g_j * min(max_norm / (N + 1e-6), 1)

and ``clip_grad_norm_`` returns N, the norm before clipping. For p = inf, N = max |g|: the largest
magnitude of any element, not 1 (a real kernel returned 1.0 for every inf-norm).

The fast version groups the gradients by device and dtype, takes the per-tensor norms with
``torch._foreach_norm`` (or one ``vector_norm`` each with ``foreach=False``), the norm of those in
their promoted dtype, and the coefficient in that dtype, as PyTorch does, so it matches
``torch.nn.utils.clip_grad_norm_`` bit for bit when the gradients share one dtype (with several,
PyTorch's grouping order, a hash map's, can change the last bit of the sum). The naive version
sums every element in Python floats (``math.fsum`` of (|g| / max|g|)^p, so no power overflows)
and rounds N once.

``error_if_nonfinite=True`` raises if N is NaN or infinite; otherwise an infinite N scales every
gradient by 0 (an infinite element becomes NaN) and a NaN N makes every gradient NaN, as PyTorch.

Deviations from PyTorch: an empty gradient has norm 0 for every p (PyTorch raises for the
inf-norm: "the operation does not have an identity"). ``norm_type`` must be positive (or inf);
PyTorch also accepts 0, negative values and -inf, for which the norm of the per-tensor norms is
not the norm of the elements (for 0 it counts the tensors with a nonzero gradient). ``max_norm``
must be >= 0 (a negative one would flip the gradients); inf is allowed and never clips.

Found (float16): the per-tensor norms are rounded to float16, so gradients whose norm passes 65504
(each element finite) get N = inf and a coefficient of 0, in PyTorch and in the fast version; the
naive version clips them by the exact norm.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

from refllm._validation import describe, require_bool, require_float

EPS = 1e-6
"""Added to N before dividing, as PyTorch."""
FOREACH_DEVICES = ("cpu", "cuda", "xpu", "mtia", "privateuseone")
"""Device types with the foreach kernels (``torch._foreach_*``), as PyTorch lists them."""

Parameters = Tensor | Iterable[Tensor]


def _as_list(name: str, tensors: object) -> list[Tensor]:
    items = [tensors] if isinstance(tensors, Tensor) else None
    if items is None:
        if isinstance(tensors, (str, bytes)) or not isinstance(tensors, Iterable):
            raise TypeError(f"{name} must be a tensor or an iterable of tensors, got "
                            f"{describe(tensors)}")
        items = list(tensors)
    for i, t in enumerate(items):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}[{i}] must be a torch.Tensor, got {describe(t)}")
    return items


def _check_norm_type(norm_type: object) -> float:
    if norm_type == "inf":
        return math.inf
    if isinstance(norm_type, bool) or not isinstance(norm_type, (int, float)):
        raise TypeError(f"norm_type must be a real number or 'inf', got {describe(norm_type)}")
    p = float(norm_type)
    if not p > 0:  # also NaN
        raise ValueError(f"norm_type must be positive or inf (the norm of the per-tensor norms is "
                         f"the norm of all elements only then), got {norm_type!r}")
    return p


def _check_common(norm_type: object, error_if_nonfinite: object, foreach: object) -> float:
    p = _check_norm_type(norm_type)
    require_bool("error_if_nonfinite", error_if_nonfinite)
    if foreach is not None:
        require_bool("foreach", foreach)
    return p


def _check_max_norm(max_norm: object) -> float:
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)):
        raise TypeError(f"max_norm must be a real number, got {describe(max_norm)}")
    if not max_norm >= 0:  # also NaN
        raise ValueError(f"max_norm must be >= 0 (or inf: no clipping), got {max_norm!r}")
    return float(max_norm)


def _grads(parameters: object) -> list[Tensor]:
    params = _as_list("parameters", parameters)
    grads = [p.grad for p in params if p.grad is not None]
    for i, g in enumerate(grads):
        require_float(f"the gradient of parameters[{i}]", g)
    return grads


def _raise_nonfinite(p: float) -> None:
    raise RuntimeError(f"the total norm of order {p} of the gradients is not finite, so they "
                       f"cannot be clipped; pass error_if_nonfinite=False to scale them by it")


def _use_foreach(foreach: bool | None, device: torch.device) -> bool:
    supported = device.type in FOREACH_DEVICES
    if foreach and not supported:
        raise RuntimeError(f"foreach=True needs the foreach kernels, which {device.type} tensors "
                           f"lack (they exist on {list(FOREACH_DEVICES)}); pass foreach=None")
    return supported if foreach is None else foreach


def _groups(tensors: list[Tensor]) -> dict[tuple[torch.device, torch.dtype], list[Tensor]]:
    groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype), []).append(t)
    return groups


def _exact_norm(items: list[Tensor], p: float) -> float:
    """||all elements||_p in Python floats: NaN if any is NaN, else scaled by max |g| so that no
    power overflows or underflows to 0."""
    values = [abs(v) for t in items for v in t.detach().double().reshape(-1).tolist()]
    biggest = max(values, default=0.0)
    if any(math.isnan(v) for v in values):
        return math.nan
    if p == math.inf or biggest in (0.0, math.inf):
        return biggest
    return biggest * math.fsum((v / biggest) ** p for v in values) ** (1.0 / p)


def _promoted(items: list[Tensor]) -> torch.dtype:
    dtype = items[0].dtype
    for t in items[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _naive_norm(items: list[Tensor], p: float, error_if_nonfinite: bool) -> tuple[float, Tensor]:
    """The exact N as a float, and rounded once to the items' promoted dtype (0.0 for none)."""
    if not items:
        return 0.0, torch.tensor(0.0)
    n = _exact_norm(items, p)
    if error_if_nonfinite and not math.isfinite(n):
        _raise_nonfinite(p)
    return n, torch.tensor(n, dtype=torch.float64).to(_promoted(items)).to(items[0].device)


def get_total_norm_naive(tensors: Parameters, norm_type: float = 2.0,
                         error_if_nonfinite: bool = False, foreach: bool | None = None) -> Tensor:
    """N = ||all elements||_p in Python floats, rounded once to the tensors' promoted dtype.

    >>> get_total_norm_naive([torch.tensor([3.0]), torch.tensor([-4.0])])
    tensor(5.)
    """
    items = _as_list("tensors", tensors)
    p = _check_common(norm_type, error_if_nonfinite, foreach)
    return _naive_norm(items, p, error_if_nonfinite)[1]


def _total_norm(items: list[Tensor], p: float, error_if_nonfinite: bool,
                foreach: bool | None) -> Tensor:
    if not items:
        return torch.tensor(0.0)
    norms: list[Tensor] = []
    for (device, _), group in _groups(items).items():
        full = [t for t in group if t.numel()]  # an empty tensor's norm is 0, for p = inf too
        if _use_foreach(foreach, device):
            got = iter(torch._foreach_norm(full, p) if full else ())
        else:
            got = (torch.linalg.vector_norm(t, p) for t in full)
        norms.extend(next(got) if t.numel() else t.new_zeros(()) for t in group)
    first = items[0].device
    n = torch.linalg.vector_norm(torch.stack([v.to(first) for v in norms]), p)
    if error_if_nonfinite and not bool(n.isfinite()):
        _raise_nonfinite(p)
    return n


def get_total_norm(tensors: Parameters, norm_type: float = 2.0,
                   error_if_nonfinite: bool = False, foreach: bool | None = None) -> Tensor:
    """N as the norm of the per-tensor norms; ``torch.nn.utils.get_total_norm``'s values.

    >>> get_total_norm([torch.tensor([3.0, -7.0]), torch.tensor([5.0])], norm_type=math.inf)
    tensor(7.)
    """
    items = _as_list("tensors", tensors)
    p = _check_common(norm_type, error_if_nonfinite, foreach)
    with torch.no_grad():
        return _total_norm(items, p, error_if_nonfinite, foreach)


def _clip_with_norm(grads: list[Tensor], max_norm: float, total_norm: Tensor,
                    foreach: bool | None) -> None:
    if not grads:
        return
    coef = (max_norm / (total_norm + EPS)).clamp(max=1.0)  # in N's dtype, as PyTorch
    for (device, _), group in _groups(grads).items():
        if _use_foreach(foreach, device):
            torch._foreach_mul_(group, coef.to(device))
        else:
            for g in group:
                g.mul_(coef.to(device))


def clip_grads_with_norm_(parameters: Parameters, max_norm: float, total_norm: Tensor,
                          foreach: bool | None = None) -> None:
    """g_j <- g_j min(max_norm / (N + 1e-6), 1) for a given N, in place;
    ``torch.nn.utils.clip_grads_with_norm_``'s values."""
    grads = _grads(parameters)
    limit = _check_max_norm(max_norm)
    n = require_float("total_norm", total_norm)
    if foreach is not None:
        require_bool("foreach", foreach)
    with torch.no_grad():
        _clip_with_norm(grads, limit, n, foreach)


def clip_grad_norm_naive_(parameters: Parameters, max_norm: float, norm_type: float = 2.0,
                          error_if_nonfinite: bool = False, foreach: bool | None = None) -> Tensor:
    """Clip in place, element by element in Python floats (N and the coefficient in float64,
    each product rounded once to the gradient's dtype); return N as `get_total_norm_naive`.

    >>> w = torch.zeros(2, requires_grad=True); w.grad = torch.tensor([3.0, 4.0])
    >>> clip_grad_norm_naive_([w], 1.0), w.grad
    (tensor(5.), tensor([0.6000, 0.8000]))
    """
    grads = _grads(parameters)
    limit = _check_max_norm(max_norm)
    p = _check_common(norm_type, error_if_nonfinite, foreach)
    exact, n = _naive_norm(grads, p, error_if_nonfinite)
    coef = min(limit / (exact + EPS), 1.0)  # NaN stays NaN
    with torch.no_grad():
        for g in grads:
            scaled = [v * coef for v in g.double().reshape(-1).tolist()]
            g.copy_(torch.tensor(scaled, dtype=torch.float64).reshape(g.shape))
    return n


def clip_grad_norm_(parameters: Parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: bool | None = None) -> Tensor:
    """Clip in place; return N. The values of ``torch.nn.utils.clip_grad_norm_``.

    >>> w = torch.zeros(2, requires_grad=True); w.grad = torch.tensor([3.0, 4.0])
    >>> clip_grad_norm_(w, 1.0), w.grad
    (tensor(5.), tensor([0.6000, 0.8000]))
    """
    grads = _grads(parameters)  # a generator is read once
    limit = _check_max_norm(max_norm)
    p = _check_common(norm_type, error_if_nonfinite, foreach)
    with torch.no_grad():
        n = _total_norm(grads, p, error_if_nonfinite, foreach)
        _clip_with_norm(grads, limit, n, foreach)
    return n


__all__ = ["EPS", "FOREACH_DEVICES", "clip_grad_norm_", "clip_grad_norm_naive_",
           "clip_grads_with_norm_", "get_total_norm", "get_total_norm_naive"]
