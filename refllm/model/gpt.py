"""A pre-LayerNorm GPT-2-style decoder (Radford et al. 2019, "Language Models are Unsupervised
Multitask Learners", §2.3; the block of Vaswani et al. 2017 with LayerNorm moved to the input of
each sub-block, as GPT-2 and nanoGPT).

    x_0 = W_te[idx] + W_pe[pos]                 (W_pe only with positions="learned")
    x_l = x_{l-1} + Attn(LN_1(x_{l-1}))           for l = 1 .. n_layer
    x_l = x_l     + MLP(LN_2(x_l))
    logits = LN_f(x_L) W_te^T                   (W_te^T replaced by W_head when untied)

    Attn(x) = concat_h softmax(q_h k_g^T / sqrt(d) + M) v_g  W_O,   q, k, v = x W_QKV (fused)
    MLP(x)  = GELU(x W_fc + b_fc) W_proj + b_proj,   GELU by its tanh approximation
              (Hendrycks & Gimpel 2016, Eq. 2; GPT-2's ``gelu_new``)

The Llama-style block (Touvron et al. 2023, "LLaMA", §2.2; ``GPTConfig.llama``) swaps two parts
and keeps the rest:

    LN(x)   = x / sqrt(eps + mean_i x_i^2) * w        RMSNorm (norm="rmsnorm", refllm.ops.rms_norm;
              Zhang & Sennrich 2019, Eq. 4), no bias
    MLP(x)  = (silu(x W_gate) * (x W_up)) W_proj       SwiGLU (mlp="swiglu", refllm.ops.swiglu;
              Shazeer 2020, Eq. 6); W_gate and W_up are one fused c_fc, the gate first

With positions="rope", q and k are rotated (refllm.model.rope) and there is no W_pe. With
n_kv_head = g < n_head = h, head i reads the key/value head i // (h / g) (grouped-query attention,
Ainslie et al. 2023). M is the causal mask and the padding mask (refllm.model.kv_cache).
Attention runs on PyTorch's fused SDPA (attention="fused"), refllm's SDPA ("reference") or
refllm's tiled FlashAttention-2 reference with O(t·d) memory ("flash", refllm.ops.flash_attention).

Initialisation as GPT-2 / nanoGPT: every weight ~ N(0, init_std^2), biases 0, norms (1, 0);
the projections that write into the residual stream (attn.c_proj, mlp.c_proj) get std
init_std / sqrt(2 n_layer) (GPT-2 §2.3: "scale the weights of residual layers by 1/sqrt(N)",
N = 2 n_layer residual layers; nanoGPT's choice, which we copy).

Parameter names follow Hugging Face's GPT2LMHeadModel (transformer.wte, transformer.wpe,
transformer.h.{i}.ln_1, .attn.c_attn, .attn.c_proj, .ln_2, .mlp.c_fc, .mlp.c_proj, transformer.ln_f,
lm_head); ours are ``nn.Linear`` (weight (out, in)) where GPT-2's Conv1D stores (in, out).
c_attn is one fused projection of width (h + 2 g) d: the q, then the k, then the v heads.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

import refllm.ops
from refllm._validation import describe
from refllm.model.config import GPTConfig
from refllm.model.kv_cache import KVCache, commit, plan_step
from refllm.model.rope import rope_angles, rotate

Rope = tuple[Tensor, Tensor] | None


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.h, self.g, self.d = config.n_head, config.n_kv_head_, config.d_head
        self.c_attn = nn.Linear(config.d_model, (self.h + 2 * self.g) * self.d, bias=config.bias)
        self.c_proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.dropout, self.backend = config.dropout, config.attention

    def forward(self, x: Tensor, rope: Rope, allowed: Tensor | None,
                cache: KVCache | None, layer: int) -> Tensor:
        q, k, v = self.c_attn(x).split([self.h * self.d, self.g * self.d, self.g * self.d], dim=-1)
        q = rearrange(q, "b t (h d) -> b h t d", h=self.h)
        k = rearrange(k, "b t (g d) -> b g t d", g=self.g)
        v = rearrange(v, "b t (g e) -> b g t e", g=self.g)
        if rope is not None:
            q, k = rotate(q, *rope), rotate(k, *rope)
        if cache is not None:
            k, v = cache.append(layer, k, v)  # (b g s d): all keys so far
        sdpa = {"fused": F.scaled_dot_product_attention, "flash": refllm.ops.flash_attention,
                "reference": refllm.ops.scaled_dot_product_attention}[self.backend]
        y = sdpa(q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0,
                 is_causal=allowed is None, enable_gqa=self.g != self.h)  # (b h t e)
        return self.resid_dropout(self.c_proj(rearrange(y, "b h t e -> b t (h e)")))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.d_model, config.d_ff_, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's gelu_new
        self.c_proj = nn.Linear(config.d_ff_, config.d_model, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class SwiGLUMLP(nn.Module):
    """silu(x W_gate) * (x W_up), then W_proj; c_fc holds W_gate and W_up (the gate first)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.d_model, 2 * config.d_ff_, bias=config.bias)
        self.c_proj = nn.Linear(config.d_ff_, config.d_model, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.c_fc(x).chunk(2, dim=-1)  # (b t f) each
        return self.dropout(self.c_proj(refllm.ops.swiglu(gate, up)))


class RMSNorm(nn.Module):
    """RMSNorm over the last axis with a weight (ones at init), by `refllm.ops.rms_norm`."""

    def __init__(self, d_model: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return cast(Tensor, refllm.ops.rms_norm(x, self.weight.shape, self.weight, self.eps))


def make_norm(config: GPTConfig) -> nn.Module:
    """The norm of ``config.norm``: LayerNorm (with a bias iff config.bias) or RMSNorm."""
    if config.norm == "rmsnorm":
        return RMSNorm(config.d_model, config.layer_norm_eps)
    return nn.LayerNorm(config.d_model, eps=config.layer_norm_eps, bias=config.bias)


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config)
        self.mlp = SwiGLUMLP(config) if config.mlp == "swiglu" else MLP(config)

    def forward(self, x: Tensor, rope: Rope, allowed: Tensor | None,
                cache: KVCache | None, layer: int) -> Tensor:
        x = x + self.attn(self.ln_1(x), rope, allowed, cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """The decoder. ``model(idx)`` maps int64 token ids (b, t) to logits (b, t, v)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {describe(config)}")
        self.config = config
        wte = nn.Embedding(config.vocab_size, config.d_model)
        parts: dict[str, nn.Module] = dict(wte=wte)
        if config.positions == "learned":
            parts["wpe"] = nn.Embedding(config.n_ctx, config.d_model)
        self.transformer = nn.ModuleDict(dict(
            **parts, drop=nn.Dropout(config.dropout),
            h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
            ln_f=make_norm(config)))
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = wte.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 / nanoGPT initialisation (see the module docstring)."""
        std = self.config.init_std
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * self.config.n_layer))
            elif ".ln_" in name or name.startswith("transformer.ln_f"):
                nn.init.ones_(p) if name.endswith("weight") else nn.init.zeros_(p)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
            else:
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx: Tensor, *, attention_mask: Tensor | None = None,
                cache: KVCache | None = None, position_ids: Tensor | None = None) -> Tensor:
        """Logits (b, t, v) for ``idx`` (b, t); with ``cache``, for the new positions only.

        ``attention_mask``: bool (b, cached + t), True = real token (left padding); see
        refllm.model.kv_cache for the step protocol, positions and the masking rule.
        """
        check_idx(idx, self.config.vocab_size)
        if cache is not None and not isinstance(cache, KVCache):
            raise TypeError(f"cache must be a KVCache or None, got {describe(cache)}")
        step = plan_step(idx, attention_mask, cache, position_ids, self.config.n_ctx)
        if cache is not None:
            commit(cache, step)
        tr: Any = self.transformer  # a ModuleDict: typed loosely for mypy
        x = tr.wte(idx)  # (b t c)
        rope: Rope = None
        if self.config.positions == "learned":
            x = x + tr.wpe(step.positions)
        else:
            rope = rope_angles(step.positions, self.config.d_head, self.config.rope_base, x.dtype,
                               self.config.rope_scaling_)
        x = tr.drop(x)
        for layer, block in enumerate(tr.h):
            x = block(x, rope, step.allowed, cache, layer)
        return self.lm_head(tr.ln_f(x))  # (b t v)


def check_idx(idx: object, vocab_size: int, name: str = "idx") -> None:
    """Raise unless ``idx`` is an int64 (b, t) tensor with t >= 1 and ids in [0, vocab_size)."""
    if not isinstance(idx, Tensor) or idx.dtype != torch.int64:
        raise TypeError(f"{name} must be an int64 tensor of token ids (b, t), got {describe(idx)}")
    if idx.ndim != 2:
        raise ValueError(f"{name} must have 2 dimensions (b, t), got {describe(idx)}")
    if idx.shape[0] < 1 or idx.shape[1] < 1:
        raise ValueError(f"{name} must hold at least one sequence of at least one token (an empty "
                         f"prompt has nothing to condition on), got {describe(idx)}")
    bad = (idx < 0) | (idx >= vocab_size)
    if bool(bad.any()):
        row, col = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{name} holds token id {int(idx[row, col])} at position ({row}, {col}), "
                         f"outside the vocabulary [0, vocab_size={vocab_size})")


__all__ = ["GPT", "Block", "CausalSelfAttention", "MLP", "RMSNorm", "SwiGLUMLP", "check_idx",
           "make_norm"]
