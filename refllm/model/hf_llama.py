"""Hugging Face interop for the Llama block: refllm's GPT <-> ``transformers.LlamaForCausalLM``.

A refllm config with ``GPTConfig.llama``'s fields (RMSNorm, SwiGLU, RoPE, no biases) is the
decoder of Hugging Face's Llama (Touvron et al. 2023, §2.2); converting renames every weight and
has two traps:

* RoPE's pairs: refllm rotates interleaved pairs (2i, 2i + 1) (`refllm.model.rope`), Hugging
  Face the two halves (i, i + d/2) (``rotate_half``). Rotating the features of a head in one
  layout equals rotating them, permuted, in the other: per head, Hugging Face's feature j is
  refllm's ``2 j`` for j < d/2 and ``2 (j - d/2) + 1`` after. So the rows of q_proj and k_proj
  are permuted head by head (`HALVES_FROM_PAIRS`); v and o_proj are not rotated and are copied.
* Fusion: refllm's c_attn is q_proj, k_proj, v_proj stacked (in that order) and mlp.c_fc is
  gate_proj then up_proj; they are split and stacked on the way.

Config fields: ``max_position_embeddings`` is n_ctx, ``intermediate_size`` d_ff,
``num_key_value_heads`` n_kv_head, ``rms_norm_eps`` layer_norm_eps, ``rope_parameters`` (or older
transformers' ``rope_theta`` and ``rope_scaling``) rope_base and rope_scaling,
``tie_word_embeddings`` tie_embeddings. What one side cannot express is refused with a ValueError
naming the field: biases (``attention_bias``, ``mlp_bias``, refllm's ``bias``), an activation other
than silu, a ``head_dim`` other than hidden_size / num_attention_heads, a RoPE type refllm lacks
("dynamic", "longrope", partial rotary factors), dropout, and from refllm the GPT-2 block's parts.
"""

from __future__ import annotations

from typing import Any

import torch

from refllm._validation import describe
from refllm.model.config import ROPE_SCALINGS, GPTConfig
from refllm.model.gpt import GPT
from refllm.model.hf import _full_state, _param_dtype_device, _transformers


def halves_from_pairs(d: int) -> torch.Tensor:
    """The permutation p of a head's d features with ``halves = pairs[p]``: Hugging Face's
    feature j is refllm's ``p[j]`` (0, 2, ..., d - 2, then 1, 3, ..., d - 1).

    >>> halves_from_pairs(6).tolist()
    [0, 2, 4, 1, 3, 5]
    """
    return torch.cat([torch.arange(0, d, 2), torch.arange(1, d, 2)])


def _permute_heads(w: torch.Tensor, heads: int, perm: torch.Tensor) -> torch.Tensor:
    """Permute the rows of ``w`` (heads * d, c) within each head by ``perm``."""
    d = perm.numel()
    return w.reshape(heads, d, -1)[:, perm].reshape(heads * d, -1).contiguous()


def refllm_config_to_llama(config: GPTConfig, attn_implementation: str = "eager") -> Any:
    """The ``transformers.LlamaConfig`` of a refllm config; ValueError for what Llama lacks."""
    if not isinstance(config, GPTConfig):
        raise TypeError(f"config must be a GPTConfig, got {describe(config)}")
    wanted = {"positions": "rope", "norm": "rmsnorm", "mlp": "swiglu", "bias": False,
              "dropout": 0.0}
    for name, want in wanted.items():
        if getattr(config, name) != want:
            raise ValueError(f"Llama needs config.{name}={want!r} (GPTConfig.llama's block), got "
                             f"config.{name}={getattr(config, name)!r}: cannot be converted")
    scaling = dict(config.rope_scaling or {})
    kind = scaling.pop("rope_type", None) or scaling.pop("type", "default")  # "type": older HF
    scaling.pop("type", None)
    rope = {**scaling, "rope_type": kind, "rope_theta": config.rope_base}
    return _transformers().LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.d_model,
        intermediate_size=config.d_ff_, num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head, num_key_value_heads=config.n_kv_head_,
        head_dim=config.d_head, hidden_act="silu", max_position_embeddings=config.n_ctx,
        initializer_range=config.init_std, rms_norm_eps=config.layer_norm_eps,
        tie_word_embeddings=config.tie_embeddings, rope_parameters=rope, attention_bias=False,
        mlp_bias=False, attention_dropout=0.0, bos_token_id=None, eos_token_id=None,
        pad_token_id=None, attn_implementation=attn_implementation)


def _hf_rope(c: Any) -> dict[str, Any]:
    """The RoPE dict of a LlamaConfig: ``rope_parameters`` (transformers 5), or ``rope_theta``
    with ``rope_scaling`` (4.x)."""
    params = getattr(c, "rope_parameters", None)
    if isinstance(params, dict) and params:
        return dict(params)
    scaling = dict(getattr(c, "rope_scaling", None) or {})
    return {**scaling, "rope_theta": getattr(c, "rope_theta", 10000.0)}


def llama_config_to_refllm(hf_config: Any, **overrides: Any) -> GPTConfig:
    """The refllm config of a ``LlamaConfig``; ``overrides`` set other fields (e.g. attention)."""
    c = hf_config
    if getattr(c, "model_type", None) != "llama":
        raise TypeError(f"hf_config must be a LlamaConfig, got {describe(c)}")
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    refused = {"hidden_act": (c.hidden_act != "silu", "'silu'"),
               "attention_bias": (bool(c.attention_bias), "False"),
               "mlp_bias": (bool(getattr(c, "mlp_bias", False)), "False"),
               "attention_dropout": (bool(c.attention_dropout), "0.0"),
               "head_dim": (head_dim * c.num_attention_heads != c.hidden_size,
                            f"hidden_size / num_attention_heads = "
                            f"{c.hidden_size / c.num_attention_heads}")}
    for name, (bad, want) in refused.items():
        if bad:
            raise ValueError(f"hf_config.{name}={getattr(c, name)!r} has no refllm equivalent "
                             f"(refllm's GPT needs {want})")
    rope = _hf_rope(c)
    base = float(rope.pop("rope_theta", 10000.0))
    kind = rope.get("rope_type", rope.get("type", "default"))
    if float(rope.pop("partial_rotary_factor", 1.0)) != 1.0:
        raise ValueError("hf_config.rope_parameters['partial_rotary_factor'] must be 1.0 (refllm "
                         "rotates every feature of a head)")
    if kind not in ("default", *ROPE_SCALINGS):
        raise ValueError(f"hf_config.rope_parameters['rope_type']={kind!r} has no refllm "
                         f"equivalent (refllm's GPT takes 'default' or one of "
                         f"{list(ROPE_SCALINGS)})")
    if kind == "yarn" and not rope.get("original_max_position_embeddings"):
        rope["original_max_position_embeddings"] = c.max_position_embeddings  # HF's fallback
    fields: dict[str, Any] = dict(
        vocab_size=c.vocab_size, n_ctx=c.max_position_embeddings, n_layer=c.num_hidden_layers,
        n_head=c.num_attention_heads, d_model=c.hidden_size,
        n_kv_head=c.num_key_value_heads or c.num_attention_heads,
        d_ff=None if c.intermediate_size == 8 * c.hidden_size // 3 else c.intermediate_size,
        tie_embeddings=bool(c.tie_word_embeddings), rope_base=base,
        rope_scaling=None if kind == "default" else rope, layer_norm_eps=c.rms_norm_eps,
        init_std=c.initializer_range)
    return GPTConfig.llama(**{**fields, **overrides})


def _names(i: int) -> tuple[str, str]:
    return f"transformer.h.{i}.", f"model.layers.{i}."


def refllm_state_to_llama(state: dict[str, torch.Tensor], config: GPTConfig) -> dict[
        str, torch.Tensor]:
    """refllm state dict (Llama block) -> LlamaForCausalLM's: rename, split, permute q and k."""
    h, g, d = config.n_head, config.n_kv_head_, config.d_head
    perm = halves_from_pairs(d)
    out = {"model.embed_tokens.weight": state["transformer.wte.weight"],
           "model.norm.weight": state["transformer.ln_f.weight"],
           "lm_head.weight": state["lm_head.weight"]}
    for i in range(config.n_layer):
        ours, theirs = _names(i)
        q, k, v = state[ours + "attn.c_attn.weight"].split([h * d, g * d, g * d])
        gate, up = state[ours + "mlp.c_fc.weight"].chunk(2)
        out |= {theirs + "self_attn.q_proj.weight": _permute_heads(q, h, perm),
                theirs + "self_attn.k_proj.weight": _permute_heads(k, g, perm),
                theirs + "self_attn.v_proj.weight": v.contiguous(),
                theirs + "self_attn.o_proj.weight": state[ours + "attn.c_proj.weight"],
                theirs + "mlp.gate_proj.weight": gate.contiguous(),
                theirs + "mlp.up_proj.weight": up.contiguous(),
                theirs + "mlp.down_proj.weight": state[ours + "mlp.c_proj.weight"],
                theirs + "input_layernorm.weight": state[ours + "ln_1.weight"],
                theirs + "post_attention_layernorm.weight": state[ours + "ln_2.weight"]}
    return out


def llama_state_to_refllm(state: dict[str, torch.Tensor], config: GPTConfig) -> dict[
        str, torch.Tensor]:
    """LlamaForCausalLM's state dict -> refllm's (Llama block): the inverse of
    `refllm_state_to_llama`."""
    h, g = config.n_head, config.n_kv_head_
    back = torch.argsort(halves_from_pairs(config.d_head))  # pairs = halves[back]
    out = {"transformer.wte.weight": state["model.embed_tokens.weight"],
           "transformer.ln_f.weight": state["model.norm.weight"],
           "lm_head.weight": state["lm_head.weight"]}
    for i in range(config.n_layer):
        ours, theirs = _names(i)
        attn = theirs + "self_attn."
        out |= {ours + "attn.c_attn.weight": torch.cat([
                    _permute_heads(state[attn + "q_proj.weight"], h, back),
                    _permute_heads(state[attn + "k_proj.weight"], g, back),
                    state[attn + "v_proj.weight"]]),
                ours + "attn.c_proj.weight": state[attn + "o_proj.weight"],
                ours + "mlp.c_fc.weight": torch.cat([state[theirs + "mlp.gate_proj.weight"],
                                                     state[theirs + "mlp.up_proj.weight"]]),
                ours + "mlp.c_proj.weight": state[theirs + "mlp.down_proj.weight"],
                ours + "ln_1.weight": state[theirs + "input_layernorm.weight"],
                ours + "ln_2.weight": state[theirs + "post_attention_layernorm.weight"]}
    return out


def to_hf_llama(model: GPT, attn_implementation: str = "eager") -> Any:
    """A ``LlamaForCausalLM`` with ``model``'s weights, dtype, device and train/eval mode."""
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a refllm GPT, got {describe(model)}")
    hf_config = refllm_config_to_llama(model.config, attn_implementation)
    dtype, device = _param_dtype_device(model)
    hf = _transformers().LlamaForCausalLM(hf_config).to(dtype=dtype)
    state = refllm_state_to_llama(_full_state(model), model.config)
    hf.load_state_dict({k: v.detach().cpu() for k, v in state.items()}, strict=True)
    _check_tying(hf, model.config.tie_embeddings)
    return hf.to(device).train(model.training)


def from_hf_llama(hf_model: Any, **overrides: Any) -> GPT:
    """refllm's GPT with a ``LlamaForCausalLM``'s weights, dtype, device and mode.

    ``overrides`` set GPTConfig fields that Llama does not fix (e.g. ``attention="reference"``).
    """
    if type(hf_model).__name__ != "LlamaForCausalLM":
        raise TypeError(f"hf_model must be a transformers LlamaForCausalLM, got "
                        f"{describe(hf_model)}")
    config = llama_config_to_refllm(hf_model.config, **overrides)
    _check_tying(hf_model, config.tie_embeddings)
    dtype, device = _param_dtype_device(hf_model)
    model = GPT(config).to(dtype=dtype)
    state = llama_state_to_refllm(_full_state(hf_model), config)
    model.load_state_dict({k: v.detach().cpu() for k, v in state.items()}, strict=True)
    return model.to(device).train(hf_model.training)


def _check_tying(hf: Any, tied: bool) -> None:
    """The LM head shares the embedding's tensor iff the config says tied."""
    shared = hf.lm_head.weight is hf.model.embed_tokens.weight
    if shared != tied:
        raise ValueError(f"the model's lm_head {'is' if shared else 'is not'} the embedding "
                         f"matrix but tie_word_embeddings={tied}: the weights and the config "
                         f"disagree")


__all__ = ["from_hf_llama", "halves_from_pairs", "llama_config_to_refllm",
           "llama_state_to_refllm", "refllm_config_to_llama", "refllm_state_to_llama",
           "to_hf_llama"]
