"""The configuration of refllm's GPT decoder: one frozen record, validated once, on construction.

Sizes use the names of the config (``n_layer, n_head, d_model``) and the axis alphabet of the docs
(``c = d_model``, ``d = d_head = d_model / n_head``, ``g = n_kv_head``, ``v = vocab_size``).
GPT-2 small (Radford et al. 2019) is ``GPTConfig(vocab_size=50257, n_ctx=1024, n_layer=12,
n_head=12, d_model=768)``.

>>> cfg = GPTConfig(vocab_size=11, n_ctx=8, n_layer=2, n_head=4, d_model=16, n_kv_head=2)
>>> cfg.d_head, cfg.d_ff_, cfg.n_kv_head_
(4, 64, 2)
>>> GPTConfig.from_dict(cfg.to_dict()) == cfg
True

A Llama-style block (Touvron et al. 2023, "LLaMA", §2.2: RMSNorm, SwiGLU, RoPE; no biases and an
untied LM head, as Hugging Face's LlamaForCausalLM) is one constructor away; its MLP width
defaults to Llama's floor(8 c / 3), which keeps the MLP at about the 8 c^2 weights of GELU's 4 c:

>>> llama = GPTConfig.llama(vocab_size=11, n_ctx=8, n_layer=2, n_head=4, d_model=24, n_kv_head=2)
>>> llama.norm, llama.mlp, llama.positions, llama.bias, llama.tie_embeddings, llama.d_ff_
('rmsnorm', 'swiglu', 'rope', False, False, 64)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from refllm._validation import describe, require_bool, require_choice, require_int, require_real

POSITIONS = ("learned", "rope")
ATTENTIONS = ("fused", "reference", "flash")
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu")
ROPE_SCALINGS = ("linear", "yarn", "llama3")
"""The ``rope_type`` values of ``rope_scaling`` (Hugging Face's names; `refllm.ops.rope_scaling`).
HF's "dynamic" is refused: its frequencies change with the sequence length, so no one table
serves a prompt and its cached continuation."""
BLOCKS: dict[str, dict[str, Any]] = {
    "gpt2": dict(norm="layernorm", mlp="gelu", positions="learned", bias=True,
                 tie_embeddings=True),
    "llama": dict(norm="rmsnorm", mlp="swiglu", positions="rope", bias=False,
                  tie_embeddings=False),
}
"""The fields that make a block GPT-2-style (the defaults) or Llama-style."""


@dataclass(frozen=True)
class GPTConfig:
    """Hyper-parameters of a pre-norm decoder, GPT-2-style by default (see docs/model.md)."""

    vocab_size: int
    n_ctx: int  # context length (window): at most n_ctx keys per sequence, cache included
    n_layer: int
    n_head: int
    d_model: int
    n_kv_head: int | None = None  # None -> n_head; fewer -> grouped-query attention
    d_ff: int | None = None  # None -> 4 * d_model (gelu), floor(8 * d_model / 3) (swiglu)
    dropout: float = 0.0
    bias: bool = True  # biases of every linear layer (but the LM head) and of every LayerNorm
    tie_embeddings: bool = True
    positions: str = "learned"  # "learned" | "rope"
    rope_base: float = 10000.0
    # HF's rope_scaling dict: {"rope_type": "linear" | "yarn" | "llama3", its keys} (no rope_theta:
    # that is rope_base); positions="rope" only
    rope_scaling: dict[str, Any] | None = None
    norm: str = "layernorm"  # "layernorm" | "rmsnorm" (no bias, whatever ``bias`` says)
    mlp: str = "gelu"  # "gelu" (tanh form, GPT-2) | "swiglu" (Llama: silu(x W_gate) * x W_up)
    # "fused" (torch F.scaled_dot_product_attention) | "reference" (refllm.ops SDPA) | "flash"
    # (refllm.ops.flash_attention: tiled, O(t·d) memory; needs dropout=0)
    attention: str = "fused"
    layer_norm_eps: float = 1e-5  # the eps of every norm, LayerNorm or RMSNorm (HF's rms_norm_eps)
    init_std: float = 0.02

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_ctx", "n_layer", "n_head", "d_model"):
            require_int(name, getattr(self, name), low=1)
        if self.n_kv_head is not None:
            require_int("n_kv_head", self.n_kv_head, low=1)
        if self.d_ff is not None:
            require_int("d_ff", self.d_ff, low=1)
        require_real("dropout", self.dropout, low=0.0, high=1.0, high_open=True)
        require_bool("bias", self.bias)
        require_bool("tie_embeddings", self.tie_embeddings)
        require_real("rope_base", self.rope_base, low=1.0, low_open=True)
        require_real("layer_norm_eps", self.layer_norm_eps, low=0.0, low_open=True)
        require_real("init_std", self.init_std, low=0.0, low_open=True)
        self._check_choices()
        self._check_shapes()

    def _check_choices(self) -> None:
        for name, allowed in (("positions", POSITIONS), ("attention", ATTENTIONS),
                              ("norm", NORMS), ("mlp", MLPS)):
            require_choice(name, getattr(self, name), allowed)
        if self.attention == "flash" and self.dropout != 0.0:
            raise ValueError(f"attention='flash' has no attention dropout; dropout must be 0, got "
                             f"{self.dropout!r} (use attention='reference' or 'fused')")
        if self.rope_scaling is not None:
            object.__setattr__(self, "rope_scaling", self._checked_rope_scaling())

    def _checked_rope_scaling(self) -> dict[str, Any]:
        """A copy of ``rope_scaling`` once its type, keys and values are checked."""
        from refllm.ops.rope_scaling import _HF_KEYS, scaling_from_hf

        d = self.rope_scaling
        if not isinstance(d, dict):
            raise TypeError(f"rope_scaling must be None or a dict (Hugging Face's rope_scaling), "
                            f"got {describe(d)}")
        if self.positions != "rope":
            raise ValueError(f"rope_scaling needs positions='rope', got positions="
                             f"{self.positions!r}")
        kind = d.get("rope_type", d.get("type"))
        if kind not in ROPE_SCALINGS:
            raise ValueError(f"rope_scaling['rope_type'] must be one of {list(ROPE_SCALINGS)} "
                             f"(HF's 'dynamic' depends on the sequence length), got {kind!r}")
        allowed = {"rope_type", "type", *_HF_KEYS[kind]}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise ValueError(f"rope_scaling has keys {unknown} that rope_type {kind!r} does not "
                             f"take (the base is rope_base); allowed: {sorted(allowed)}")
        try:
            scaling_from_hf({**d, "rope_type": kind, "rope_theta": self.rope_base})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"rope_scaling {d!r}: {exc}") from None
        return dict(d)

    @property
    def rope_scaling_(self) -> Any:
        """``rope_scaling`` as a `refllm.ops.rope_scaling` rule (None when unscaled)."""
        from refllm.ops.rope_scaling import scaling_from_hf

        if self.rope_scaling is None:
            return None
        kind = self.rope_scaling.get("rope_type", self.rope_scaling.get("type"))
        return scaling_from_hf({**self.rope_scaling, "rope_type": kind,
                                "rope_theta": self.rope_base})[1]

    def _check_shapes(self) -> None:
        if self.d_model % self.n_head:
            raise ValueError(f"d_model must be divisible by n_head, got d_model={self.d_model}, "
                             f"n_head={self.n_head} (remainder {self.d_model % self.n_head})")
        if self.n_head % self.n_kv_head_:
            raise ValueError(f"n_head must be a multiple of n_kv_head (grouped-query attention), "
                             f"got n_head={self.n_head}, n_kv_head={self.n_kv_head}")
        if self.positions == "rope" and self.d_head % 2:
            raise ValueError(f"positions='rope' needs an even head width d_model / n_head, got "
                             f"d_model={self.d_model} / n_head={self.n_head} = {self.d_head}")

    @property
    def d_head(self) -> int:
        """The per-head query/key/value width d = d_model / n_head."""
        return self.d_model // self.n_head

    @property
    def n_kv_head_(self) -> int:
        """The number of key/value heads g (``n_kv_head`` with None resolved to ``n_head``)."""
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def d_ff_(self) -> int:
        """The MLP's hidden width f: ``d_ff``, or with None, ``4 * d_model`` for GELU and Llama's
        ``floor(8 * d_model / 3)`` for SwiGLU (its 3 c f weights then stay near GELU's 8 c^2;
        Llama rounds this up to a multiple of 256, which tiny models cannot afford: pass d_ff)."""
        if self.d_ff is not None:
            return self.d_ff
        return 4 * self.d_model if self.mlp == "gelu" else max(1, 8 * self.d_model // 3)

    @classmethod
    def llama(cls, **fields: Any) -> GPTConfig:
        """A Llama-style config: ``BLOCKS["llama"]`` (RMSNorm, SwiGLU, RoPE, no biases, untied
        head), then ``fields`` (sizes; ``n_kv_head`` for grouped-query attention; any other)."""
        return cls(**{**BLOCKS["llama"], **fields})

    def to_dict(self) -> dict[str, Any]:
        """Every field as a plain (JSON-serialisable) dict; ``from_dict`` inverts it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        """Build from a dict; unknown keys are an error that names them (no silent typo)."""
        if not isinstance(d, dict):
            raise TypeError(f"d must be a dict, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"d has unknown GPTConfig keys {unknown}; known keys: {sorted(known)}")
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.default is dataclasses.MISSING and f.name not in d)
        if missing:
            raise ValueError(f"d lacks required GPTConfig keys {missing}")
        return cls(**d)
