"""Hugging Face interop: refllm's GPT <-> ``transformers.GPT2LMHeadModel`` (extra ``refllm[hf]``).

The Llama block (``GPTConfig.llama``) converts to and from ``LlamaForCausalLM`` in
`refllm.model.hf_llama`; `to_hf` and `from_hf` pick it for a RoPE model and a Llama model.

Both are the same pre-LayerNorm decoder (Radford et al. 2019, §2.3; see refllm.model.gpt), and
refllm's parameter names are GPT-2's, so converting is a renaming-free copy with three traps:

* GPT-2's linear layers are ``Conv1D``: ``y = x W + b`` with W stored (in, out), where
  ``nn.Linear`` stores (out, in). Every c_attn, c_proj and c_fc weight is transposed.
* ``c_attn`` is one fused projection whose 3 c outputs are q, then k, then v, each laid out
  ``(h d)``: the same as refllm's (with n_kv_head = n_head), so it is copied whole.
* ``lm_head.weight`` is ``transformer.wte.weight`` when tied (``tie_word_embeddings``); older
  transformers also keep the causal mask as buffers ``attn.bias`` / ``attn.masked_bias``, which
  are not weights and are dropped.

GPT-2 uses ``gelu_new`` (GELU's tanh approximation, refllm's MLP) and LayerNorm eps
``layer_norm_epsilon`` (1e-5). What GPT-2 cannot express is refused with a clear error: RoPE,
grouped-query attention (n_kv_head != n_head), layers without biases. A d_ff other than 4 d_model
goes to GPT2Config's ``n_inner``.

transformers is imported inside the functions only (it is an optional extra). Nothing is ever
downloaded: :func:`load_gpt2` reads a local directory written by ``save_pretrained`` with
``local_files_only=True``; set ``HF_HUB_OFFLINE=1`` to keep every other transformers call offline.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from refllm._io import write_folder_atomically
from refllm._validation import describe
from refllm.model.config import GPTConfig
from refllm.model.gpt import GPT

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
"""Suffixes of the weights GPT-2 stores as Conv1D (in, out): transposed on the way."""
BUFFERS = (".attn.bias", ".attn.masked_bias")
"""Causal-mask buffers of older transformers versions: not weights, never copied. The leading dot
matters: ``attn.c_attn.bias`` ends with ``attn.bias`` and is a weight."""
GELU_TANH = ("gelu_new", "gelu_pytorch_tanh")
"""transformers' names of GELU's tanh form 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - the extra is installed in CI
        raise ImportError("Hugging Face interop needs transformers: pip install 'refllm[hf]'") \
            from exc
    return transformers


def refllm_config_to_gpt2(config: GPTConfig, attn_implementation: str = "eager") -> Any:
    """The ``transformers.GPT2Config`` of a refllm config; ValueError for what GPT-2 lacks."""
    if not isinstance(config, GPTConfig):
        raise TypeError(f"config must be a GPTConfig, got {describe(config)}")
    if config.positions != "learned":
        raise ValueError(f"GPT-2 has learned positions only; config.positions="
                         f"{config.positions!r} (RoPE) cannot be converted")
    if config.n_kv_head_ != config.n_head:
        raise ValueError(f"GPT-2 has no grouped-query attention; config.n_kv_head="
                         f"{config.n_kv_head} differs from n_head={config.n_head}")
    if not config.bias:
        raise ValueError("GPT-2 has biases in every linear layer and LayerNorm; config.bias=False "
                         "cannot be converted")
    special = 50256 if config.vocab_size > 50256 else None  # GPT-2's <|endoftext|>, if in range
    return _transformers().GPT2Config(
        vocab_size=config.vocab_size, n_positions=config.n_ctx, n_embd=config.d_model,
        n_layer=config.n_layer, n_head=config.n_head,
        n_inner=None if config.d_ff_ == 4 * config.d_model else config.d_ff_,
        activation_function="gelu_new", layer_norm_epsilon=config.layer_norm_eps,
        resid_pdrop=config.dropout, embd_pdrop=config.dropout, attn_pdrop=config.dropout,
        initializer_range=config.init_std, tie_word_embeddings=config.tie_embeddings,
        bos_token_id=special, eos_token_id=special, attn_implementation=attn_implementation)


def gpt2_config_to_refllm(hf_config: Any, **overrides: Any) -> GPTConfig:
    """The refllm config of a ``GPT2Config``; ``overrides`` set other fields (e.g. attention)."""
    c = hf_config
    if getattr(c, "model_type", None) != "gpt2":
        raise TypeError(f"hf_config must be a GPT2Config, got {describe(c)}")
    refused = {"activation_function": (c.activation_function not in GELU_TANH,
                                       f"one of {list(GELU_TANH)}"),
               "scale_attn_weights": (not c.scale_attn_weights, "True"),
               "scale_attn_by_inverse_layer_idx": (c.scale_attn_by_inverse_layer_idx, "False"),
               "add_cross_attention": (c.add_cross_attention, "False")}
    for name, (bad, want) in refused.items():
        if bad:
            raise ValueError(f"hf_config.{name}={getattr(c, name)!r} has no refllm equivalent "
                             f"(refllm's GPT needs {want})")
    drops = {c.resid_pdrop, c.embd_pdrop, c.attn_pdrop}
    if len(drops) > 1 and "dropout" not in overrides:
        raise ValueError(f"refllm has one dropout rate; hf_config has resid_pdrop={c.resid_pdrop}"
                         f", embd_pdrop={c.embd_pdrop}, attn_pdrop={c.attn_pdrop}: pass "
                         f"dropout=... to choose")
    fields: dict[str, Any] = dict(
        vocab_size=c.vocab_size, n_ctx=c.n_positions, n_layer=c.n_layer, n_head=c.n_head,
        d_model=c.n_embd, d_ff=c.n_inner, dropout=float(drops.pop()), bias=True,
        tie_embeddings=bool(c.tie_word_embeddings), positions="learned",
        layer_norm_eps=c.layer_norm_epsilon, init_std=c.initializer_range)
    return GPTConfig(**{**fields, **overrides})


def hf_state_to_refllm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """GPT-2 state dict -> refllm's: drop mask buffers, transpose Conv1D weights."""
    out = {}
    for name, tensor in state.items():
        if name.endswith(BUFFERS):
            continue
        out[name] = tensor.t().contiguous() if name.endswith(CONV1D) else tensor
    return out


def refllm_state_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """refllm state dict -> GPT-2's: transpose the weights GPT-2 stores as Conv1D (in, out)."""
    return {name: tensor.t().contiguous() if name.endswith(CONV1D) else tensor
            for name, tensor in state.items()}


def _full_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """state_dict with the tied lm_head.weight present (some versions omit tied entries)."""
    state = dict(module.state_dict())
    if "lm_head.weight" not in state:
        state["lm_head.weight"] = module.get_submodule("lm_head").weight
    return state


def _param_dtype_device(module: torch.nn.Module) -> tuple[torch.dtype, torch.device]:
    p = next(module.parameters())
    return p.dtype, p.device


def to_hf(model: GPT, attn_implementation: str = "eager") -> Any:
    """A ``GPT2LMHeadModel`` with ``model``'s weights, dtype, device and train/eval mode (a
    ``LlamaForCausalLM`` for a RoPE model: `refllm.model.hf_llama.to_hf_llama`)."""
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a refllm GPT, got {describe(model)}")
    if model.config.positions == "rope":
        from refllm.model.hf_llama import to_hf_llama

        return to_hf_llama(model, attn_implementation)
    transformers = _transformers()
    hf_config = refllm_config_to_gpt2(model.config, attn_implementation)
    dtype, device = _param_dtype_device(model)
    hf = transformers.GPT2LMHeadModel(hf_config).to(dtype=dtype)
    state = refllm_state_to_hf(_full_state(model))
    hf.load_state_dict({k: v.detach().cpu() for k, v in state.items()}, strict=True)
    if model.config.tie_embeddings and hf.lm_head.weight is not hf.transformer.wte.weight:
        raise RuntimeError("transformers did not tie lm_head to wte for tie_word_embeddings=True")
    return hf.to(device).train(model.training)


def from_hf(hf_model: Any, **overrides: Any) -> GPT:
    """refllm's GPT with a ``GPT2LMHeadModel``'s weights, dtype, device and mode.

    ``overrides`` set GPTConfig fields that GPT-2 does not fix (e.g. ``attention="reference"``).
    A ``LlamaForCausalLM`` goes to `refllm.model.hf_llama.from_hf_llama`.
    """
    if type(hf_model).__name__ == "LlamaForCausalLM":
        from refllm.model.hf_llama import from_hf_llama

        return from_hf_llama(hf_model, **overrides)
    if type(hf_model).__name__ != "GPT2LMHeadModel":
        raise TypeError(f"hf_model must be a transformers GPT2LMHeadModel or LlamaForCausalLM, "
                        f"got {describe(hf_model)}")
    config = gpt2_config_to_refllm(hf_model.config, **overrides)
    dtype, device = _param_dtype_device(hf_model)
    model = GPT(config).to(dtype=dtype)
    state = hf_state_to_refllm(_full_state(hf_model))
    model.load_state_dict({k: v.detach().cpu() for k, v in state.items()}, strict=True)
    return model.to(device).train(hf_model.training)


def load_gpt2(path: str | os.PathLike[str], **overrides: Any) -> GPT:
    """refllm's GPT from a local directory written by ``GPT2LMHeadModel.save_pretrained``.

    Never downloads: the path must be an existing directory holding ``config.json``, and it is
    read with ``local_files_only=True`` (a missing directory is a ValueError, never a hub lookup).
    """
    directory = os.fspath(path)
    if not os.path.isdir(directory):
        what = "is not a directory" if os.path.exists(directory) else "does not exist"
        raise ValueError(f"path must be a local directory saved with save_pretrained, got "
                         f"{directory!r}, which {what} (refllm never downloads weights)")
    if not os.path.isfile(os.path.join(directory, "config.json")):
        raise ValueError(f"path {directory!r} holds no config.json: not a save_pretrained "
                         f"directory")
    hf = _transformers().GPT2LMHeadModel.from_pretrained(directory, local_files_only=True,
                                                         attn_implementation="eager")
    return from_hf(hf.eval(), **overrides)


def save_gpt2(model: GPT, path: str | os.PathLike[str]) -> None:
    """Write ``model`` as a GPT-2 directory (``save_pretrained``) that transformers can load.

    Atomic: written to a temporary sibling directory, then renamed to ``path``, which must not
    exist yet or be an empty directory (nothing the user made is overwritten).
    """
    directory = os.path.abspath(os.fspath(path))
    if os.path.exists(directory) and (not os.path.isdir(directory) or os.listdir(directory)):
        raise ValueError(f"path {directory!r} exists and is not an empty directory; choose a new "
                         f"one (save_gpt2 never overwrites)")
    hf = to_hf(model)
    write_folder_atomically(directory, hf.save_pretrained)


__all__ = ["to_hf", "from_hf", "load_gpt2", "save_gpt2", "gpt2_config_to_refllm",
           "refllm_config_to_gpt2", "hf_state_to_refllm", "refllm_state_to_hf"]
