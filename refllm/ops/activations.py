"""GELU, and the gated linear units of modern decoders: SwiGLU and GeGLU.

GELU (Hendrycks & Gimpel 2016, "Gaussian Error Linear Units", §2), exact and in its tanh form:

    gelu(x)      = x Phi(x) = x (1 + erf(x / sqrt 2)) / 2
    gelu_tanh(x) = x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) / 2

Gated linear units (Shazeer 2020, "GLU Variants Improve Transformer", Eq. 5-6), elementwise on a
gate and an up projection of the same shape, as fused kernels take them:

    swiglu(gate, up) = silu(gate) * up,     silu(a) = a sigmoid(a)      (Llama, Mistral, Qwen)
    geglu(gate, up)  = gelu(gate) * up                                   (Gemma: the tanh form)

and the whole feed-forward block of those decoders (Hugging Face's LlamaMLP, no biases), with the
weights in ``nn.Linear``'s (out, in) layout:

    gated_mlp(x) = (act(x W_gate^T) * (x W_up^T)) W_down^T     x (..., c), W_gate, W_up (f, c),
                                                                W_down (c, f)

Both silu and gelu satisfy act(-a) = act(a) - a (as Phi(-a) = 1 - Phi(a) and
sigmoid(-a) = 1 - sigmoid(a)), a property the tests use.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from refllm._validation import (
    describe,
    require_choice,
    require_float,
    require_ndim,
    require_same_device,
    require_same_dtype,
)

APPROXIMATIONS = ("none", "tanh")
"""GELU's forms, with ``F.gelu``'s names."""
ACTIVATIONS = ("silu", "gelu", "gelu_tanh")
"""The gate activations of ``gated_mlp``: SwiGLU, GeGLU exact, GeGLU in the tanh form."""

_TANH_C = math.sqrt(2.0 / math.pi)


def _gelu_scalar(a: float, approximate: str) -> float:
    if approximate == "tanh":
        return 0.5 * a * (1.0 + math.tanh(_TANH_C * (a + 0.044715 * a ** 3)))
    return 0.5 * a * (1.0 + math.erf(a / math.sqrt(2.0)))


def _silu_scalar(a: float) -> float:
    # a sigmoid(a), written so that neither branch overflows exp
    return a / (1.0 + math.exp(-a)) if a >= 0 else a * math.exp(a) / (1.0 + math.exp(a))


def _map(fn, *tensors: Tensor) -> Tensor:  # type: ignore[no-untyped-def]
    """Apply a scalar function elementwise in Python floats (float64); the first tensor's dtype."""
    first = tensors[0]
    columns = [t.detach().double().reshape(-1).tolist() for t in tensors]
    out = [fn(*vals) for vals in zip(*columns)]
    return torch.tensor(out, dtype=torch.float64).reshape(first.shape).to(first.dtype)


def _check_gelu(x: object, approximate: object) -> Tensor:
    t = require_float("input", x)
    require_choice("approximate", approximate, APPROXIMATIONS)
    return t


def _check_pair(gate: object, up: object) -> None:
    g, u = require_float("gate", gate), require_float("up", up)
    if g.shape != u.shape:
        raise ValueError(f"gate and up must have one shape (no broadcasting), got gate "
                         f"{describe(g)} and up {describe(u)}")
    require_same_dtype(("gate", "up"), (g, u))
    require_same_device(("gate", "up"), (g, u))


def gelu_naive(input: Float[Tensor, "*shape"], approximate: str = "none") -> Tensor:
    """GELU elementwise in Python floats (``math.erf`` / ``math.tanh``).

    >>> gelu_naive(torch.tensor([0.0, 1.0], dtype=torch.float64)).tolist()
    [0.0, 0.8413447460685429]
    """
    x = _check_gelu(input, approximate)
    return _map(lambda a: _gelu_scalar(a, approximate), x)


def gelu(input: Float[Tensor, "*shape"], approximate: str = "none") -> Tensor:
    """GELU, vectorised from the formula; the values and gradients of ``F.gelu``.

    >>> gelu(torch.tensor([1.0], dtype=torch.float64), approximate="tanh").tolist()
    [0.8411919906082768]
    """
    x = _check_gelu(input, approximate)
    if approximate == "tanh":
        return 0.5 * x * (1.0 + torch.tanh(_TANH_C * (x + 0.044715 * x.pow(3))))
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def swiglu_naive(gate: Float[Tensor, "*shape"], up: Float[Tensor, "*shape"]) -> Tensor:
    """silu(gate) * up elementwise in Python floats.

    >>> swiglu_naive(torch.tensor([0.0, 2.0]), torch.tensor([5.0, 3.0]))  # 2 sigmoid(2) 3
    tensor([0.0000, 5.2848])
    """
    _check_pair(gate, up)
    return _map(lambda a, b: _silu_scalar(a) * b, gate, up)


def swiglu(gate: Float[Tensor, "*shape"], up: Float[Tensor, "*shape"]) -> Tensor:
    """silu(gate) * up, vectorised (``F.silu(gate) * up``).

    >>> swiglu(torch.tensor([2.0]), torch.tensor([3.0]))
    tensor([5.2848])
    """
    _check_pair(gate, up)
    return gate * torch.sigmoid(gate) * up


def geglu_naive(gate: Float[Tensor, "*shape"], up: Float[Tensor, "*shape"],
                approximate: str = "none") -> Tensor:
    """gelu(gate) * up elementwise in Python floats.

    >>> geglu_naive(torch.tensor([1.0], dtype=torch.float64), torch.tensor([2.0],
    ...             dtype=torch.float64)).tolist()
    [1.6826894921370859]
    """
    _check_pair(gate, up)
    require_choice("approximate", approximate, APPROXIMATIONS)
    return _map(lambda a, b: _gelu_scalar(a, approximate) * b, gate, up)


def geglu(gate: Float[Tensor, "*shape"], up: Float[Tensor, "*shape"],
          approximate: str = "none") -> Tensor:
    """gelu(gate) * up, vectorised.

    >>> geglu(torch.tensor([1.0], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64))
    tensor([1.6827], dtype=torch.float64)
    """
    _check_pair(gate, up)
    return gelu(gate, approximate) * up


def _check_mlp(x: object, w_gate: object, w_up: object, w_down: object,
               activation: object) -> None:
    t = require_float("input", x)
    require_ndim("input", t, at_least=1, layout="(..., c)")
    ws = [require_float(n, w) for n, w in (("w_gate", w_gate), ("w_up", w_up),
                                          ("w_down", w_down))]
    for name, w in zip(("w_gate", "w_up", "w_down"), ws):
        require_ndim(name, w, exact=2, layout="(out, in)")
    c = t.shape[-1]
    f = ws[0].shape[0]
    for name, w, want in (("w_gate", ws[0], (f, c)), ("w_up", ws[1], (f, c)),
                          ("w_down", ws[2], (c, f))):
        if tuple(w.shape) != want:
            raise ValueError(f"{name} must have shape {want} (nn.Linear's (out, in), for an input "
                             f"of width c={c} and a hidden width f={f} from w_gate), got "
                             f"{describe(w)}")
    require_same_dtype(("input", "w_gate", "w_up", "w_down"), (t, *ws))
    require_same_device(("input", "w_gate", "w_up", "w_down"), (t, *ws))
    require_choice("activation", activation, ACTIVATIONS)


def _gate(a: float, activation: str) -> float:
    if activation == "silu":
        return _silu_scalar(a)
    return _gelu_scalar(a, "tanh" if activation == "gelu_tanh" else "none")


def gated_mlp_naive(input: Float[Tensor, "*batch c"], w_gate: Float[Tensor, "f c"],
                    w_up: Float[Tensor, "f c"], w_down: Float[Tensor, "c f"],
                    activation: str = "silu") -> Tensor:
    """The gated feed-forward block by explicit loops over rows and units, in Python floats."""
    _check_mlp(input, w_gate, w_up, w_down, activation)
    c, f = input.shape[-1], w_gate.shape[0]
    wg, wu, wd = (w.detach().double().tolist() for w in (w_gate, w_up, w_down))
    rows = input.detach().double().reshape(-1, c).tolist() if input.numel() else []
    out = []
    for row in rows:
        hidden = [_gate(math.fsum(wg[j][i] * row[i] for i in range(c)), activation)
                  * math.fsum(wu[j][i] * row[i] for i in range(c)) for j in range(f)]
        out.append([math.fsum(wd[k][j] * hidden[j] for j in range(f)) for k in range(c)])
    return torch.tensor(out, dtype=torch.float64).reshape(input.shape).to(input.dtype)


def gated_mlp(input: Float[Tensor, "*batch c"], w_gate: Float[Tensor, "f c"],
              w_up: Float[Tensor, "f c"], w_down: Float[Tensor, "c f"],
              activation: str = "silu") -> Tensor:
    """The gated feed-forward block, vectorised; Hugging Face's LlamaMLP for ``"silu"``.

    >>> x = torch.ones(1, 2)
    >>> gated_mlp(x, torch.ones(3, 2), torch.ones(3, 2), torch.ones(2, 3)).shape
    torch.Size([1, 2])
    """
    _check_mlp(input, w_gate, w_up, w_down, activation)
    gate, up = F.linear(input, w_gate), F.linear(input, w_up)  # (..., f) each
    if activation == "silu":
        hidden = swiglu(gate, up)
    else:
        hidden = geglu(gate, up, "tanh" if activation == "gelu_tanh" else "none")
    return F.linear(hidden, w_down)


__all__ = ["ACTIVATIONS", "APPROXIMATIONS", "gated_mlp", "gated_mlp_naive", "geglu",
           "geglu_naive", "gelu", "gelu_naive", "swiglu", "swiglu_naive"]
