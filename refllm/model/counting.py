"""Parameter and FLOP counts of refllm's GPT, in closed form (Kaplan et al. 2020, §2.1, Table 1).

With c = d_model, h = n_head, g = n_kv_head, d = c / h, f = d_ff, v = vocab_size, n = n_ctx,
L = n_layer, beta = 1 with biases, 0 without, lambda = 1 for LayerNorm (its bias follows beta), 0
for RMSNorm (a weight only), and m = 2 for GELU's MLP (c_fc, c_proj), 3 for SwiGLU's (gate, up,
c_proj):

    per block   = 2 (1 + lambda beta) c                ln_1, ln_2 (weight [, bias])
                + c (h + 2g) d + beta (h + 2g) d       attn.c_attn (fused q, k, v)
                + c c + beta c                         attn.c_proj
                + m c f + beta ((m - 1) f + c)         mlp.c_fc (gate and up for SwiGLU), c_proj
    total       = v c  [+ n c, learned positions]  + L * per block + (1 + lambda beta) c
                  [+ v c, untied]

The Llama block (RMSNorm, SwiGLU, no biases: lambda beta = 0, m = 3) has 2c + c (h + 2g) d + c^2
+ 3 c f per block.

Non-embedding N (Kaplan's N, "excluding all vocabulary and positional embeddings"): the total less
the token embedding, the position embedding and, when untied, the LM head. Kaplan's models tie the
two vocabulary matrices and Table 1 books the de-embedding apart from N; an untied LM head is a
second vocabulary-sized matrix, so we keep it out of N as well, which makes N depend on the trunk
only (L, c, f, h, g) and not on the tokenizer. LayerNorms and biases stay in N (Kaplan's Table 1
drops them as small; we count every parameter exactly).

Forward FLOPs per token (2 FLOPs per multiply-add):

    kaplan: C_forward = 2 N + 2 L n c                                   (Kaplan Table 1)
    exact:  L [2 c (h + 2g) d + 2 (2 h d n) + 2 c c + 2 m c f] + 2 c v

"exact" counts every matrix product of the forward pass (the projections, the scores q k^T, the
weighted values p v and the LM head; not the norms, GELU, SwiGLU's gate product, softmax, RoPE,
biases or embedding look-ups) for
a sequence of the full n_ctx tokens, with the full (b, h, n, n) score matrix that a dense kernel
(the MATH SDPA backend, refllm's reference) computes before masking. It is what
torch.utils.flop_counter.FlopCounterMode reports for one (b, n_ctx) forward, divided by b n_ctx.
Kaplan's attention term 2 L n c is half of our 4 L n c: it counts each causal query's average
context (about n / 2 keys) rather than the dense matrix.

GPT-2 small (L=12, h=12, c=768, v=50257, n=1024, tied): 124,439,808 parameters, N = 85,056,000.
>>> from refllm.model.config import GPTConfig
>>> parameter_count(GPTConfig(vocab_size=50257, n_ctx=1024, n_layer=12, n_head=12, d_model=768))
124439808
"""

from __future__ import annotations

from refllm._validation import describe, require_bool
from refllm.model.config import GPTConfig


def _check_config(config: object) -> GPTConfig:
    if not isinstance(config, GPTConfig):
        raise TypeError(f"config must be a GPTConfig, got {describe(config)}")
    return config


def block_parameter_count(config: GPTConfig) -> int:
    """Parameters of one decoder block (two norms, attention, MLP)."""
    c, f, beta, m = config.d_model, config.d_ff_, int(config.bias), _mlp_matrices(config)
    qkv = (config.n_head + 2 * config.n_kv_head_) * config.d_head
    norms = 2 * _norm_parameters(config)
    attention = c * qkv + beta * qkv + c * c + beta * c
    mlp = m * c * f + beta * ((m - 1) * f + c)
    return norms + attention + mlp


def _norm_parameters(config: GPTConfig) -> int:
    """(1 + lambda beta) c: LayerNorm's weight and (with biases) bias, or RMSNorm's weight."""
    return (1 + int(config.bias and config.norm == "layernorm")) * config.d_model


def _mlp_matrices(config: GPTConfig) -> int:
    """m: the MLP's c x f matrices, 2 for GELU (c_fc, c_proj), 3 for SwiGLU (gate, up, c_proj)."""
    return 3 if config.mlp == "swiglu" else 2


def embedding_parameter_count(config: GPTConfig) -> int:
    """Vocabulary- and position-sized matrices: wte, wpe (learned positions), lm_head (untied)."""
    c = config.d_model
    learned = config.positions == "learned"
    return config.vocab_size * c * (1 if config.tie_embeddings else 2) + learned * config.n_ctx * c


def parameter_count(config: GPTConfig, non_embedding: bool = False) -> int:
    """Exact number of distinct parameters of ``GPT(config)``; ``non_embedding``: Kaplan's N."""
    config = _check_config(config)
    require_bool("non_embedding", non_embedding)
    trunk = config.n_layer * block_parameter_count(config) + _norm_parameters(config)
    return trunk if non_embedding else trunk + embedding_parameter_count(config)


def flops_per_token(config: GPTConfig, method: str = "kaplan") -> int:
    """Forward FLOPs per token: ``"kaplan"`` (2N + 2 L n c) or ``"exact"`` (see the module)."""
    config = _check_config(config)
    c, n, L = config.d_model, config.n_ctx, config.n_layer
    if method == "kaplan":
        return 2 * parameter_count(config, non_embedding=True) + 2 * L * n * c
    if method == "exact":
        h, g, d, f = config.n_head, config.n_kv_head_, config.d_head, config.d_ff_
        m = _mlp_matrices(config)
        per_layer = 2 * c * (h + 2 * g) * d + 4 * h * d * n + 2 * c * c + 2 * m * c * f
        return L * per_layer + 2 * c * config.vocab_size
    raise ValueError(f"method must be 'kaplan' or 'exact', got {method!r}")


__all__ = ["parameter_count", "flops_per_token", "block_parameter_count",
           "embedding_parameter_count"]
