"""`MultiheadAttention`: torch.nn.MultiheadAttention's module on `refllm.ops.multihead`.

    MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O
    head_i             = Attention(Q W_i^Q, K W_i^K, V W_i^V)

(Vaswani et al. 2017, §3.2.2.) Same constructor, forward, parameter names and shapes as
``torch.nn.MultiheadAttention`` (PyTorch 2.13), so ``load_state_dict`` works both ways:
``in_proj_weight`` (3c, c) when kdim = vdim = c, else ``q_proj_weight`` (c, c), ``k_proj_weight``
(c, kdim), ``v_proj_weight`` (c, vdim); ``in_proj_bias`` (3c,); ``bias_k``, ``bias_v`` (1, 1, c)
with ``add_bias_kv``; ``out_proj.weight`` (c, c), ``out_proj.bias`` (c,) (a plain ``nn.Linear``;
PyTorch uses its subclass ``NonDynamicallyQuantizableLinear``, which stores the same tensors).

Initialisation, as PyTorch and in PyTorch's order (so one seed gives PyTorch's parameters):
``out_proj`` keeps ``nn.Linear``'s default (Kaiming-uniform), in-projections are Xavier-uniform
(Glorot and Bengio 2010), ``in_proj_bias`` and ``out_proj.bias`` zeros, ``bias_k``/``bias_v``
Xavier-normal.

``backend="flash"`` (an addition to PyTorch's constructor) runs the heads through the tiled
`refllm.ops.flash_attention` (O(t·d) memory); it has no attention dropout and no weights, so it
needs ``dropout=0`` and ``need_weights=False`` in ``forward``.

Dropout on the attention weights happens in training mode only, with probability ``dropout``,
drawing from ``self.generator`` (a ``torch.Generator`` or None for the global one).

Deviation (from PyTorch): no "fast path" (PyTorch's eval-mode, no-grad, batch-first self-attention
kernel, which may return NaN or a NestedTensor); every mode computes the same maths, and fully
masked query rows give zeros. See `refllm.ops.multihead` for the other deviations (is_causal is a
checked hint, bad input raises ValueError/TypeError).

>>> import torch
>>> _ = torch.manual_seed(0); theirs = torch.nn.MultiheadAttention(4, 2, add_bias_kv=True)
>>> _ = torch.manual_seed(0); mine = MultiheadAttention(4, 2, add_bias_kv=True)
>>> mine_sd = mine.state_dict()
>>> all(torch.equal(w, mine_sd[name]) for name, w in theirs.state_dict().items())
True
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from refllm._validation import require_choice
from refllm.ops.multihead import BACKENDS, multi_head_attention


class MultiheadAttention(nn.Module):
    """Multi-head attention with ``torch.nn.MultiheadAttention``'s interface (see module docs)."""

    bias_k: nn.Parameter | None
    bias_v: nn.Parameter | None

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, device=None,
                 dtype=None, backend: str = "fast") -> None:
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim and num_heads must be greater than 0, got "
                             f"embed_dim={embed_dim} and num_heads={num_heads}")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads "
                             f"({num_heads})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        require_choice("backend", backend, BACKENDS)
        if backend == "flash" and dropout != 0.0:
            raise ValueError(f"backend='flash' has no attention dropout; dropout must be 0, got "
                             f"{dropout!r}")
        super().__init__()
        self.backend = backend
        factory = {"device": device, "dtype": dtype}
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.batch_first, self.head_dim = batch_first, embed_dim // num_heads
        self.add_zero_attn = add_zero_attn
        self.generator: torch.Generator | None = None
        c = embed_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight = nn.Parameter(torch.empty((3 * c, c), **factory))
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = nn.Parameter(torch.empty((c, c), **factory))
            self.k_proj_weight = nn.Parameter(torch.empty((c, self.kdim), **factory))
            self.v_proj_weight = nn.Parameter(torch.empty((c, self.vdim), **factory))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = nn.Parameter(torch.empty(3 * c, **factory))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = nn.Linear(c, c, bias=bias, **factory)
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.empty((1, 1, c), **factory))
            self.bias_v = nn.Parameter(torch.empty((1, 1, c), **factory))
        else:
            self.bias_k = self.bias_v = None
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """PyTorch's scheme and order: Xavier-uniform in-projections, zero biases."""
        if self._qkv_same_embed_dim:
            nn.init.xavier_uniform_(self.in_proj_weight)
        else:
            for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                nn.init.xavier_uniform_(w)
        if self.in_proj_bias is not None:
            nn.init.constant_(self.in_proj_bias, 0.0)
            nn.init.constant_(self.out_proj.bias, 0.0)
        if self.bias_k is not None and self.bias_v is not None:
            nn.init.xavier_normal_(self.bias_k)
            nn.init.xavier_normal_(self.bias_v)

    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                key_padding_mask: Tensor | None = None, need_weights: bool = True,
                attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
        """Attention output shaped as ``query``, and the weights (or None); see the ops docs."""
        return multi_head_attention(
            query, key, value, self.num_heads, in_proj_weight=self.in_proj_weight,
            in_proj_bias=self.in_proj_bias, q_proj_weight=self.q_proj_weight,
            k_proj_weight=self.k_proj_weight, v_proj_weight=self.v_proj_weight,
            bias_k=self.bias_k, bias_v=self.bias_v, add_zero_attn=self.add_zero_attn,
            out_proj_weight=self.out_proj.weight, out_proj_bias=self.out_proj.bias,
            key_padding_mask=key_padding_mask, attn_mask=attn_mask, need_weights=need_weights,
            average_attn_weights=average_attn_weights, is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0, generator=self.generator,
            batch_first=self.batch_first, backend=self.backend)

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"dropout={self.dropout}, batch_first={self.batch_first}"
                + ("" if self.backend == "fast" else f", backend={self.backend!r}"))


__all__ = ["MultiheadAttention"]
