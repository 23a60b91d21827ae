"""Hypothesis strategies for tiny GPT configurations, shared by the model tests."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from refllm.model import GPT, GPTConfig


@st.composite
def configs(draw, *, attention: str | None = None, dropout: bool = False, n_ctx_min: int = 1):
    """A tiny GPTConfig with every option drawn: GQA, RoPE, untied, no bias, d_ff, backend."""
    g = draw(st.integers(1, 2))
    h = g * draw(st.integers(1, 2))
    positions = draw(st.sampled_from(["learned", "rope"]))
    d = draw(st.sampled_from([2, 4]) if positions == "rope" else st.integers(1, 4))
    return GPTConfig(
        vocab_size=draw(st.integers(2, 13)), n_ctx=draw(st.integers(max(n_ctx_min, 1), 12)),
        n_layer=draw(st.integers(1, 2)), n_head=h, d_model=h * d,
        n_kv_head=draw(st.sampled_from([None, g])), d_ff=draw(st.sampled_from([None, 3, 7])),
        dropout=draw(st.sampled_from([0.0, 0.1])) if dropout else 0.0,
        bias=draw(st.booleans()), tie_embeddings=draw(st.booleans()), positions=positions,
        attention=attention or draw(st.sampled_from(["fused", "reference"])),
        init_std=draw(st.sampled_from([0.02, 0.5])),
    )


def build(config: GPTConfig, seed: int = 0, dtype: torch.dtype = torch.float64) -> GPT:
    """The model of ``config``, seeded, in ``dtype``, in eval mode."""
    torch.manual_seed(seed)
    return GPT(config).to(dtype).eval()


def token_ids(draw, config: GPTConfig, b: int, t: int) -> torch.Tensor:
    """Drawn token ids (b, t) in the vocabulary of ``config``."""
    flat = draw(st.lists(st.integers(0, config.vocab_size - 1), min_size=b * t, max_size=b * t))
    return torch.tensor(flat, dtype=torch.int64).reshape(b, t)
