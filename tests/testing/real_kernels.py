"""Adapters that point refllm's oracle at implementations refllm did not write.

Each one is what a user would write to check a real kernel: a few lines that translate PyTorch's
signature (SDPA's, ``F.linear_cross_entropy``'s, ``F.rms_norm``'s) or refllm's (``rope``) to the
kernel's own. Inputs a kernel does not support raise `NotImplementedError`,
which the oracle reports as "unsupported" rather than as a wrong answer (docs/oracle.md, "Real
kernels"). Used by tests/testing/test_real_kernels.py and by the case studies in the docs.
"""

from __future__ import annotations

import torch


def _four_d(*tensors: torch.Tensor) -> None:
    if any(t.dim() != 4 for t in tensors):
        raise NotImplementedError("only 4-D (B, H, T, D) inputs")


def flex_sdpa(query, key, value, attn_mask=None, is_causal=False, scale=None,
              enable_gqa=False, flex=None):
    """PyTorch's `flex_attention` (eager) behind SDPA's signature: masks become a ``score_mod``
    that reads the mask tensor (captured by the closure)."""
    from torch.nn.attention.flex_attention import flex_attention

    flex_attention = flex or flex_attention

    _four_d(query, key, value)
    t, s = query.shape[-2], key.shape[-2]
    score_mod = None
    if is_causal:
        def score_mod(score, b, h, q_idx, kv_idx):  # top-left aligned, as PyTorch's SDPA
            return torch.where(q_idx >= kv_idx, score, float("-inf"))
    elif attn_mask is not None:
        mask = attn_mask.expand(query.shape[0], query.shape[1], t, s)
        if mask.dtype == torch.bool:
            def score_mod(score, b, h, q_idx, kv_idx):
                return torch.where(mask[b, h, q_idx, kv_idx], score, float("-inf"))
        else:
            def score_mod(score, b, h, q_idx, kv_idx):
                return score + mask[b, h, q_idx, kv_idx]
    return flex_attention(query, key, value, score_mod=score_mod, scale=scale,
                          enable_gqa=enable_gqa)


class _HFModule(torch.nn.Module):
    """The few attributes HF's attention functions read from their attention module."""

    def __init__(self, groups: int, is_causal: bool):
        super().__init__()
        self.num_key_value_groups, self.is_causal = groups, is_causal
        self.training = False


def _hf_mask(attn_mask, is_causal, query, key):
    """HF passes an additive float mask (0 or the dtype's minimum) of shape (b, 1 or h, t, s)."""
    t, s = query.shape[-2], key.shape[-2]
    if is_causal:
        attn_mask = torch.ones(t, s, dtype=torch.bool, device=query.device).tril()
    if attn_mask is None:
        return None
    if attn_mask.dtype == torch.bool:
        attn_mask = torch.zeros(attn_mask.shape, dtype=query.dtype,
                                device=query.device).masked_fill(~attn_mask, float("-inf"))
    return attn_mask.to(query.dtype).expand(query.shape[0], -1, t, s) if attn_mask.dim() == 4 \
        else attn_mask.to(query.dtype).expand(query.shape[0], query.shape[1], t, s)


def _hf(forward, query, key, value, attn_mask, is_causal, scale, enable_gqa, extra=None):
    _four_d(query, key, value)
    groups = query.shape[1] // key.shape[1]
    if groups != 1 and not enable_gqa:
        raise ValueError("query and key heads differ without enable_gqa")
    module = _HFModule(groups, is_causal)
    mask = _hf_mask(attn_mask, is_causal, query, key)
    scaling = query.shape[-1] ** -0.5 if scale is None else scale
    out, _ = forward(module, query, key, value, mask, scaling=scaling, dropout=0.0,
                     **(extra or {}))
    return out.transpose(1, 2)  # HF returns (b, t, h, e); SDPA's convention is (b, h, t, e)


def hf_eager_attention(query, key, value, attn_mask=None, is_causal=False, scale=None,
                       enable_gqa=False):
    """transformers' Llama ``eager_attention_forward`` (matmul, softmax in float32, matmul)."""
    from transformers.models.llama.modeling_llama import eager_attention_forward

    return _hf(eager_attention_forward, query, key, value, attn_mask, is_causal, scale,
               enable_gqa)


def hf_sdpa_attention(query, key, value, attn_mask=None, is_causal=False, scale=None,
                      enable_gqa=False):
    """transformers' ``sdpa_attention_forward`` (its wrapper of PyTorch's SDPA)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if is_causal:  # HF's wrapper takes causality from the module and drops the mask
        return _hf(sdpa_attention_forward, query, key, value, None, True, scale, enable_gqa,
                   {"is_causal": True})
    return _hf(sdpa_attention_forward, query, key, value, attn_mask, False, scale, enable_gqa,
               {"is_causal": False})




def compiled_optimizer(cls: type[torch.optim.Optimizer], backend: str = "inductor"):
    """``cls`` whose ``step`` runs under ``torch.compile`` (as a training script compiles it)."""

    class Compiled(cls):  # type: ignore[misc, valid-type]
        def __init__(self, params, **hyper):
            super().__init__(params, **hyper)
            self._compiled_step = torch.compile(super().step, backend=backend)

        def step(self, closure=None):
            return self._compiled_step(closure)

    Compiled.__name__ = Compiled.__qualname__ = f"Compiled{cls.__name__}"
    return Compiled


def _memory_efficient_attention():
    """``efficient_dot_product_attention`` of the PyPI package memory-efficient-attention, whose
    ``__init__`` imports its JAX version too: load the PyTorch module alone (None if absent)."""
    import importlib.util
    import sys
    import types

    if "memory_efficient_attention" not in sys.modules:
        spec = importlib.util.find_spec("memory_efficient_attention")
        if spec is None or not spec.submodule_search_locations:
            return None
        package = types.ModuleType("memory_efficient_attention")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["memory_efficient_attention"] = package
    from memory_efficient_attention.attention_torch import efficient_dot_product_attention

    return efficient_dot_product_attention


def chunked_sdpa(query, key, value, attn_mask=None, is_causal=False, scale=None,
                 enable_gqa=False, query_chunk_size=1024, key_chunk_size=4096):
    """memory-efficient-attention 0.1.3 (Rabe & Staats' chunked attention) behind SDPA's
    signature: its layout is (..., t, h, d), its mask a boolean, its scale 1/sqrt(d)."""
    attention = _memory_efficient_attention()
    if attention is None:
        raise NotImplementedError("memory-efficient-attention is not installed")
    if query.dim() < 3 or scale is not None or enable_gqa or is_causal:
        raise NotImplementedError("(..., h, t, d) inputs, default scale, no GQA, no is_causal")
    mask = None
    if attn_mask is not None:
        if attn_mask.dtype != torch.bool:
            raise NotImplementedError("boolean masks only")
        mask = attn_mask.expand(*query.shape[:-1], key.shape[-2])
    out = attention(query.transpose(-2, -3), key.transpose(-2, -3), value.transpose(-2, -3),
                    mask=mask, query_chunk_size=query_chunk_size,
                    key_chunk_size=key_chunk_size)
    return out.transpose(-2, -3)



def xt_attend(query, key, value, attn_mask=None, is_causal=False, scale=None, enable_gqa=False,
              flash=False, causal_more_queries=False):
    """x-transformers' ``Attend`` (its attention core) behind SDPA's signature: a boolean mask is
    its ``mask`` (True = take part), an additive one its ``attn_bias``, both expanded to
    (b, h, t, s); ``flash`` picks its path through PyTorch's SDPA. Causal calls with more queries
    than keys are refused unless ``causal_more_queries`` (a finding: docs/oracle-kernels.md)."""
    from x_transformers.attend import Attend

    _four_d(query, key, value)
    if query.shape[1] != key.shape[1] and not enable_gqa:
        raise ValueError("query and key heads differ without enable_gqa")
    if is_causal and query.shape[2] > key.shape[2] and not causal_more_queries:
        raise NotImplementedError("causal with more queries than keys (t > s)")
    mask = bias = None
    if attn_mask is not None:
        full = attn_mask.expand(*query.shape[:3], key.shape[2])
        mask, bias = (full, None) if attn_mask.dtype == torch.bool else (None, full)
    out, _ = Attend(causal=is_causal, scale=scale, flash=flash)(query, key, value, mask=mask,
                                                                attn_bias=bias)
    return out


def local_sdpa(query, key, value, attn_mask=None, is_causal=False, scale=None, enable_gqa=False,
               window_size=None, autopad=False):
    """lucidrains' ``LocalAttention`` with a look-around that covers the whole sequence (every
    window sees every other one: windows - 1 back and, unless causal, as many forward), so that it
    computes full attention through its windowed code: bucketing, look-around, padding masks.
    The window defaults to the largest divisor of t up to sqrt(t) (several windows); with
    ``window_size`` that does not divide t, ``autopad`` pads the sequence (a finding). Self-
    attention only (t == s, as many key as query heads), no ``attn_mask`` (it takes a key padding
    mask, which SDPA's drawn per-query masks are not)."""
    import math

    from local_attention import LocalAttention

    t = query.shape[-2]
    if key.shape[-2] != t or key.shape[:-2] != query.shape[:-2]:
        raise NotImplementedError("self-attention only: t == s, as many key as query heads")
    if attn_mask is not None:
        raise NotImplementedError("no attn_mask (LocalAttention takes a key padding mask)")
    w = window_size or max(n for n in range(1, math.isqrt(t) + 1) if t % n == 0)
    windows = -(-t // w)
    attention = LocalAttention(window_size=w, causal=is_causal, look_backward=windows - 1,
                               look_forward=0 if is_causal else windows - 1, scale=scale,
                               autopad=autopad)
    return attention(query, key, value)


def _cut_cross_entropy_torch():
    """The torch path of cut-cross-entropy (``cut_cross_entropy.torch_compile``) without the
    package's ``__init__``, which imports its Triton kernels (Triton is not installed on CPU)."""
    import importlib.util
    import sys
    import types

    if "cut_cross_entropy" not in sys.modules:
        spec = importlib.util.find_spec("cut_cross_entropy")
        if spec is None or not spec.submodule_search_locations:
            raise NotImplementedError("cut-cross-entropy is not installed")
        package = types.ModuleType("cut_cross_entropy")
        package.__path__, package.__spec__ = list(spec.submodule_search_locations), spec
        sys.modules["cut_cross_entropy"] = package
    from cut_cross_entropy import torch_compile

    return torch_compile


_cce_compiled: dict[str, object] = {}


def cce_linear_cross_entropy(input, linear_weight, target, linear_bias=None, weight=None,
                             reduction="mean", ignore_index=-100, label_smoothing=0.0,
                             backend="inductor", cast_loss=True):
    """cut-cross-entropy's ``linear_cross_entropy(e, c, targets, impl="torch_compile")`` behind
    ``F.linear_cross_entropy``'s signature. Its ``torch.compile(fullgraph=True, dynamic=True)``
    runs with ``backend`` (its own, inductor, by default; "aot_eager" skips the C++ build). It
    returns a float32 loss for any input dtype: ``cast_loss`` casts it to the input's, as
    PyTorch's op returns it. No bias, class weights or label smoothing."""
    if linear_bias is not None or weight is not None or label_smoothing:
        raise NotImplementedError("no linear_bias, class weight or label_smoothing")
    module = _cut_cross_entropy_torch()
    if backend not in _cce_compiled:
        apply = module.torch_compile_linear_cross_entropy_apply
        _cce_compiled["inductor"] = apply
        if backend != "inductor":
            plain = apply._torchdynamo_orig_callable
            _cce_compiled[backend] = torch.compile(plain, fullgraph=True, dynamic=True,
                                                   backend=backend)
    saved = module.torch_compile_linear_cross_entropy_apply
    module.torch_compile_linear_cross_entropy_apply = _cce_compiled[backend]
    try:
        loss = module.torch_compile_linear_cross_entropy(input, linear_weight, target,
                                                         ignore_index=ignore_index,
                                                         reduction=reduction)
    finally:
        module.torch_compile_linear_cross_entropy_apply = saved
    return loss.to(input.dtype) if cast_loss else loss


def _torchtune_rms_norm_module(shape, eps):
    from torchtune.modules import RMSNorm

    if len(shape) != 1:
        raise NotImplementedError("torchtune's RMSNorm normalises the last axis only")
    return RMSNorm(shape[0], eps=torch.finfo(torch.float32).eps if eps is None else eps)


def torchtune_rms_norm(input, normalized_shape, weight=None, eps=None):
    """torchtune's ``RMSNorm`` (in float32, rounded once at the end) with ``F.rms_norm``'s
    signature; its parameter ``scale`` is the case's weight (ones when none is given)."""
    from refllm.testing.rms_norm.adapters import module_rms_norm

    return module_rms_norm(_torchtune_rms_norm_module, weight_name="scale")(
        input, normalized_shape, weight, eps)


def torchtune_rope(x, positions=None, *, offset=0, base=10000.0, layout="neox", rotary_dim=None,
                   scaling=None):
    """torchtune's ``RotaryPositionalEmbeddings`` (interleaved pairs, float32 tables) as refllm's
    ``rope``: x (..., t, d) goes in as (batch, t, 1, d) with one row of positions per batch
    element; the half-split layout is the same rotation after interleaving the halves (an exact
    permutation, undone after). No partial rotary dims, no scaling."""
    from torchtune.modules import RotaryPositionalEmbeddings

    t, d = x.shape[-2:]
    if scaling is not None or rotary_dim not in (None, d):
        raise NotImplementedError("no scaling, no partial rotary dims")
    pos = torch.arange(offset, offset + t) if positions is None else positions
    if pos.dim() == 2:  # one row of positions per element of x's first axis
        pos = pos.reshape(pos.shape[0], *[1] * (x.dim() - 3), t)
    pos = pos.to(x.device).expand(*x.shape[:-1]).reshape(-1, t)
    rope = RotaryPositionalEmbeddings(d, max_seq_len=int(pos.max()) + 1, base=base)
    y = x.reshape(-1, t, 1, d)
    if layout == "neox":
        y = torch.stack((y[..., : d // 2], y[..., d // 2:]), dim=-1).flatten(-2)
    out = rope.to(x.device)(y, input_pos=pos)
    if layout == "neox":
        out = torch.cat((out[..., 0::2], out[..., 1::2]), dim=-1)
    return out.reshape(x.shape)


def compiled_flex_sdpa(query, key, value, attn_mask=None, is_causal=False, scale=None,
                       enable_gqa=False):
    """`flex_sdpa` with ``flex_attention`` compiled (inductor), as its docs recommend."""
    global _compiled_flex
    if _compiled_flex is None:
        from torch.nn.attention.flex_attention import flex_attention

        _compiled_flex = torch.compile(flex_attention)
    return flex_sdpa(query, key, value, attn_mask, is_causal, scale, enable_gqa,
                     flex=_compiled_flex)


_compiled_flex = None




def timm_adamw_legacy():
    """timm's ``AdamWLegacy`` (``timm.optim.adamw``; timm's own ``timm.optim.AdamW`` is
    torch.optim.AdamW re-exported), or None when timm is not installed.

    ``import timm`` imports torchvision (timm's layers), whose PyPI wheel does not load beside
    torch 2.13's CPU wheel; ``timm/optim/adamw.py`` needs only torch, so its folder is loaded as
    a package of its own, ``timm.optim``'s ``__init__`` and timm's left unrun."""
    import importlib
    import importlib.util
    import pathlib
    import sys
    import types

    name = "_refllm_timm_optim"
    if name not in sys.modules:
        spec = importlib.util.find_spec("timm")
        if spec is None or not spec.submodule_search_locations:
            return None
        package = types.ModuleType(name)
        package.__path__ = [str(pathlib.Path(spec.submodule_search_locations[0]) / "optim")]
        sys.modules[name] = package
    return importlib.import_module(f"{name}.adamw").AdamWLegacy


class TorchoptAdamW:
    """``torchopt.AdamW``, torchopt's torch.optim-like class, behind torch.optim's constructor.

    torchopt's class takes a flat list of tensors with one set of hyper-parameters, keeps its
    state as a pytree (``mu``, ``nu``, ``count``) outside any ``self.state`` and has no
    ``amsgrad``: one torchopt optimizer per param group, and its state shown under torch.optim's
    names (``exp_avg``, ``exp_avg_sq``, ``step``). ``amsgrad=True`` is refused as unsupported.
    ``use_accelerated_op=True``: torchopt's fused C++ Adam update.
    """

    HYPER = ("lr", "betas", "eps", "weight_decay", "maximize")
    KIND = "AdamW"  # the torchopt class

    def __init__(self, params, use_accelerated_op: bool = False, **defaults):
        import torchopt

        params = list(params)
        groups = params if params and isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = [{**defaults, **g, "params": list(g["params"])} for g in groups]
        if any(g.get("amsgrad") for g in self.param_groups):
            raise NotImplementedError("torchopt.AdamW has no amsgrad")
        make = getattr(torchopt, self.KIND)
        self._inner = [make(g["params"], use_accelerated_op=use_accelerated_op,
                            **{k: g[k] for k in self.HYPER if k in g})
                       for g in self.param_groups]

    def step(self, closure=None):
        for inner in self._inner:
            inner.step()

    @property
    def state(self) -> dict:
        out = {}
        for group, inner in zip(self.param_groups, self._inner):
            adam = inner.state_groups[0]  # (ScaleByAdamState, weight decay's, lr's): a chain
            adam = next(s for s in _flat_states(adam) if hasattr(s, "mu"))
            for p, m, v, t in zip(group["params"], adam.mu, adam.nu, adam.count):
                out[p] = {"exp_avg": m, "exp_avg_sq": v, "step": t.to(torch.float32)}
        return out

    def state_dict(self):
        return [inner.state_dict() for inner in self._inner]

    def load_state_dict(self, state):
        for inner, s in zip(self._inner, state):
            inner.load_state_dict(s)


class TorchoptAdam(TorchoptAdamW):
    """``torchopt.Adam`` (weight decay as an L2 penalty, as torch.optim.Adam), adapted alike."""

    KIND = "Adam"


def _flat_states(state):
    """The states of a torchopt chain (nested tuples of named tuples), first to last."""
    if hasattr(state, "_fields") or not isinstance(state, tuple):
        return [state]
    return [s for part in state for s in _flat_states(part)]


def heavyball_eager(name: str = "AdamW"):
    """heavyball's optimizer ``name``, its steps run eagerly: heavyball compiles them with
    inductor by default (``heavyball.utils.compile_mode``), minutes of C++ builds on a CPU;
    ``None`` runs the same functions uncompiled. The setting is heavyball's, process-wide."""
    import heavyball
    import heavyball.utils

    heavyball.utils.compile_mode = None
    return getattr(heavyball, name)


__all__ = ["TorchoptAdam", "TorchoptAdamW", "chunked_sdpa", "compiled_flex_sdpa",
           "compiled_optimizer", "flex_sdpa", "heavyball_eager", "hf_eager_attention",
           "hf_sdpa_attention", "timm_adamw_legacy"]
__all__ = ["cce_linear_cross_entropy", "chunked_sdpa", "compiled_flex_sdpa", "compiled_optimizer",
           "flex_sdpa", "hf_eager_attention", "hf_sdpa_attention", "local_sdpa",
           "torchtune_rms_norm", "torchtune_rope", "xt_attend"]
