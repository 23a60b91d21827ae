"""Adapters: Hugging Face's RoPE conventions as refllm's ``rope(x, positions, ...)``, for
`check_rope`.

Hugging Face applies RoPE as ``apply_rotary_pos_emb(q, k, cos, sin)`` with ``cos`` and ``sin``
of the full head width (each half repeated: ``cat(freqs, freqs)``) made by the model's rotary
embedding module and cast to the activations' dtype. `hf_apply_rotary_pos_emb` builds those
tables from refllm's float64 ones (`refllm.ops.rope.rope_tables`), so the check judges the
rotation itself; `hf_llama_rotary_embedding` also uses the model's own tables
(``LlamaRotaryEmbedding``, built from a config, computing the angles in float32).

>>> import torch
>>> from refllm.ops.rope import rope
>>> x = torch.randn(2, 5, 8, dtype=torch.float64)
>>> torch.allclose(hf_apply_rotary_pos_emb(x), rope(x))
True
"""

from __future__ import annotations

from typing import Any

import torch

from refllm.ops.rope import _positions, rope_tables

__all__ = ["hf_apply_rotary_pos_emb", "hf_llama_rotary_embedding"]


def _apply(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, rotary_dim: int | None,
           layout: str) -> torch.Tensor:
    """Hugging Face's rotation of x (..., t, d) by (B, t, r) tables (B = 1 or x's first axis)."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    if layout != "neox":
        raise NotImplementedError("apply_rotary_pos_emb rotates the half-split (neox) layout")
    t, d = x.shape[-2:]
    r = d if rotary_dim is None else rotary_dim
    b = cos.shape[0]
    x4 = x.reshape(b, -1, t, d)  # (B, rest, t, d): the tables broadcast over rest
    rot, rest = x4[..., :r], x4[..., r:]
    q, _ = apply_rotary_pos_emb(rot, rot, cos.to(x.dtype), sin.to(x.dtype), unsqueeze_dim=1)
    return torch.cat((q, rest), dim=-1).reshape(x.shape)


def hf_apply_rotary_pos_emb(x: torch.Tensor, positions: torch.Tensor | None = None, *,
                            offset: int = 0, base: float = 10000.0, layout: str = "neox",
                            rotary_dim: int | None = None, scaling: Any = None) -> torch.Tensor:
    """Hugging Face's ``apply_rotary_pos_emb`` on refllm's float64 tables cast to x's dtype, as
    Hugging Face casts its own; partial rotary as its models do (the first ``rotary_dim``
    features rotated, the rest concatenated back). The "gptj" layout is refused with
    `NotImplementedError` (check it without that feature)."""
    d = x.shape[-1]
    r = d if rotary_dim is None else rotary_dim
    pos = _positions(x, positions, offset)
    cos, sin = rope_tables(pos, r, base=base, scaling=scaling)  # (t, r/2) or (b, t, r/2)
    cos, sin = (torch.cat((c, c), dim=-1).reshape(-1, x.shape[-2], r) for c in (cos, sin))
    return _apply(x, cos, sin, rotary_dim, layout)


def hf_llama_rotary_embedding(x: torch.Tensor, positions: torch.Tensor | None = None, *,
                              offset: int = 0, base: float = 10000.0, layout: str = "neox",
                              rotary_dim: int | None = None,
                              scaling: Any = None) -> torch.Tensor:
    """Hugging Face's whole path: ``LlamaRotaryEmbedding`` (from a ``LlamaConfig`` with
    ``rope_theta=base``, nothing downloaded) makes the tables, ``apply_rotary_pos_emb`` rotates.
    Scaling is refused with `NotImplementedError`."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    if scaling is not None:
        raise NotImplementedError("scaling: give Hugging Face's rope_parameters instead")
    d = x.shape[-1]
    r = d if rotary_dim is None else rotary_dim
    config = LlamaConfig(hidden_size=r, num_attention_heads=1, num_key_value_heads=1,
                         head_dim=r, rope_parameters={"rope_type": "default", "rope_theta": base})
    pos = _positions(x, positions, offset)
    pos = pos.reshape(-1, x.shape[-2])
    cos, sin = LlamaRotaryEmbedding(config)(x, pos)
    return _apply(x, cos, sin, rotary_dim, layout)
