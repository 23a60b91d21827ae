"""Hypothesis strategies for tiny GPT configurations, shared by the model tests."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from refllm.model import GPT, GPTConfig
from refllm.model.config import BLOCKS

ROPE_SCALINGS = [None, {"rope_type": "linear", "factor": 2.0},
                 {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4},
                 {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 4}]


@st.composite
def configs(draw, *, attention: str | None = None, dropout: bool = False, n_ctx_min: int = 1,
            block: str | None = None):
    """A tiny GPTConfig with every option drawn: GQA, RoPE (and its scaling), untied, no bias,
    d_ff, backend, the norm and the MLP; ``block`` ("gpt2" or "llama") fixes BLOCKS' fields."""
    g = draw(st.integers(1, 2))
    h = g * draw(st.integers(1, 2))
    fixed = BLOCKS[block] if block else {}
    positions = fixed.get("positions") or draw(st.sampled_from(["learned", "rope"]))
    d = draw(st.sampled_from([2, 4]) if positions == "rope" else st.integers(1, 4))
    drawn = dict(
        bias=draw(st.booleans()), tie_embeddings=draw(st.booleans()),
        norm=draw(st.sampled_from(["layernorm", "rmsnorm"])),
        mlp=draw(st.sampled_from(["gelu", "swiglu"])))
    scaling = draw(st.sampled_from(ROPE_SCALINGS)) if positions == "rope" else None
    return GPTConfig(
        vocab_size=draw(st.integers(2, 13)), n_ctx=draw(st.integers(max(n_ctx_min, 1), 12)),
        n_layer=draw(st.integers(1, 2)), n_head=h, d_model=h * d,
        n_kv_head=draw(st.sampled_from([None, g])), d_ff=draw(st.sampled_from([None, 3, 7])),
        dropout=draw(st.sampled_from([0.0, 0.1])) if dropout else 0.0,
        rope_scaling=scaling,
        attention=attention or draw(st.sampled_from(["fused", "reference"])),
        init_std=draw(st.sampled_from([0.02, 0.5])), **{**drawn, **fixed, "positions": positions},
    )


def build(config: GPTConfig, seed: int = 0, dtype: torch.dtype = torch.float64) -> GPT:
    """The model of ``config``, seeded, in ``dtype``, in eval mode."""
    torch.manual_seed(seed)
    return GPT(config).to(dtype).eval()


def token_ids(draw, config: GPTConfig, b: int, t: int) -> torch.Tensor:
    """Drawn token ids (b, t) in the vocabulary of ``config``."""
    flat = draw(st.lists(st.integers(0, config.vocab_size - 1), min_size=b * t, max_size=b * t))
    return torch.tensor(flat, dtype=torch.int64).reshape(b, t)
