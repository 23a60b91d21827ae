"""Adapters: PyTorch's composition and Hugging Face's MLP modules as ``fn(gate, up)`` for
`check_swiglu`.

An MLP module computes ``down_proj(act_fn(gate_proj(x)) * up_proj(x))``. `hf_mlp` builds one
from its config (nothing downloaded) and replaces its three projections by modules that pick the
given ``gate`` and ``up`` and return the product as it is, so that the check sees exactly the
module's own forward and activation (``ACT2FN[config.hidden_act]``) on the case's gate and up,
with no matrix product of its own rounding added.

>>> import torch
>>> gate, up = torch.randn(2, 5), torch.randn(2, 5)
>>> torch.allclose(hf_mlp()(gate, up), torch.nn.functional.silu(gate) * up)
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["HF_ACTIVATIONS", "hf_mlp", "torch_swiglu"]

HF_ACTIVATIONS = {"silu": "silu", "gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}
"""Hugging Face's ``hidden_act`` name of each of refllm's activations."""


def torch_swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """PyTorch's own composition, ``F.silu(gate) * up`` (as Llama's MLP computes it)."""
    return torch.nn.functional.silu(gate) * up


class _Pick(torch.nn.Module):
    def __init__(self, index: int | None):
        super().__init__()
        self.index = index

    def forward(self, x: Any) -> Any:
        return x if self.index is None else x[self.index]


def hf_mlp(activation: str = "silu", *, module: str = "llama") -> Callable[..., torch.Tensor]:
    """``fn(gate, up)`` running Hugging Face's ``LlamaMLP`` (``module="llama"``) or
    ``GemmaMLP`` (``"gemma"``) with ``hidden_act`` for refllm's ``activation`` (check it with
    the same ``activation``)."""
    from transformers import GemmaConfig, LlamaConfig
    from transformers.models.gemma.modeling_gemma import GemmaMLP
    from transformers.models.llama.modeling_llama import LlamaMLP

    make, config = {"llama": (LlamaMLP, LlamaConfig), "gemma": (GemmaMLP, GemmaConfig)}[module]
    mlp = make(config(hidden_size=8, intermediate_size=8, num_attention_heads=1,
                      num_key_value_heads=1, head_dim=8,
                      hidden_act=HF_ACTIVATIONS[activation], hidden_activation=(
                          HF_ACTIVATIONS[activation])))
    mlp.gate_proj, mlp.up_proj, mlp.down_proj = _Pick(0), _Pick(1), _Pick(None)

    def call(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        return mlp((gate, up))

    call.__name__ = call.__qualname__ = f"hf_{module}_mlp_{activation}"
    return call
