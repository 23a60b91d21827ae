"""Planted bugs in RMSNorm and LayerNorm, each in a plausible user kernel.

    RMSNorm    y_i = x_i / sqrt(eps + mean_j x_j^2) * w_i
    LayerNorm  y_i = (x_i - mu) / sqrt(var + eps) * w_i + b_i

Every function has the signature of ``F.rms_norm`` / ``F.layer_norm`` (RMSNorm's also takes
refllm's ``weight_offset``). Correct versions come first (an autograd one and one with a
hand-written backward, as fused kernels have), then the mutants, each ONE bug away from one of
them; the bugs are the ones real norm kernels shipped.
"""

from __future__ import annotations

import torch

# ----------------------------------------------------------------------------------- RMSNorm


def _dims(normalized_shape):
    n = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    return tuple(range(-len(n), 0))


def _opmath(x):
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _eps(x, eps):
    return torch.finfo(_opmath(x)).eps if eps is None else eps


def rms_norm(input, normalized_shape, weight=None, eps=None, *, weight_offset=0.0):
    """RMSNorm by autograd, in float32 for low-precision inputs, rounded once."""
    h = input.to(_opmath(input))
    y = h * torch.rsqrt(h.square().mean(_dims(normalized_shape), keepdim=True)
                        + _eps(input, eps))
    if weight is not None:
        y = y * (weight.to(h.dtype) + weight_offset)
    return y.to(input.dtype)


class _FusedRMSNorm(torch.autograd.Function):
    """A fused kernel's RMSNorm: the forward saves 1/rms, the backward is written out,

        dx = r (w g - y_hat mean(y_hat w g)),  dw = sum over rows of g y_hat,

    both in float32, with the weight gradient's row sum ``reduce`` (correct: in float32)."""

    @staticmethod
    def forward(ctx, input, weight, dims, eps, offset, reduce):
        h = input.to(_opmath(input))
        r = torch.rsqrt(h.square().mean(dims, keepdim=True) + eps)
        y_hat = h * r
        w = None if weight is None else weight.to(h.dtype) + offset
        ctx.save_for_backward(h, r, w)
        ctx.dims, ctx.reduce = dims, reduce
        return (y_hat if w is None else y_hat * w).to(input.dtype)

    @staticmethod
    def backward(ctx, g):
        h, r, w = ctx.saved_tensors
        g32 = g.to(h.dtype)
        y_hat = h * r
        wg = g32 if w is None else g32 * w
        dx = r * (wg - y_hat * (wg * y_hat).mean(ctx.dims, keepdim=True))
        dw = None
        if w is not None:
            dw = ctx.reduce(g32 * y_hat, len(ctx.dims), g.dtype)
        return dx.to(g.dtype), dw, None, None, None, None


def _row_sum(t, norm_ndim, dtype):
    """Sum over every axis but the normalised ones, in float32, then rounded to ``dtype``."""
    return t.reshape(-1, *t.shape[t.dim() - norm_ndim:]).sum(0).to(dtype)


def rms_norm_fused(input, normalized_shape, weight=None, eps=None, *, weight_offset=0.0):
    """RMSNorm with a hand-written backward (correct)."""
    return _FusedRMSNorm.apply(input, weight, _dims(normalized_shape), _eps(input, eps),
                               weight_offset, _row_sum)


def rms_eps_outside_sqrt(input, normalized_shape, weight=None, eps=None, *, weight_offset=0.0):
    """BUG: ``x / (sqrt(mean x^2) + eps)``: invisible at unit scale, wrong where the mean square
    is near eps (small-variance inputs)."""
    h = input.to(_opmath(input))
    rms = h.square().mean(_dims(normalized_shape), keepdim=True).sqrt()
    y = h / (rms + _eps(input, eps))
    if weight is not None:
        y = y * (weight.to(h.dtype) + weight_offset)
    return y.to(input.dtype)


def rms_default_eps_of_the_input_dtype(input, normalized_shape, weight=None, eps=None, *,
                                       weight_offset=0.0):
    """BUG: ``eps=None`` taken as the machine epsilon of the *input's* dtype (bfloat16's 2^-7,
    not float32's 2^-23): small-variance bfloat16 rows are shrunk."""
    return rms_norm(input, normalized_shape, weight,
                    torch.finfo(input.dtype).eps if eps is None else eps,
                    weight_offset=weight_offset)


def rms_variance_in_low_precision(input, normalized_shape, weight=None, eps=None, *,
                                  weight_offset=0.0):
    """BUG: the mean square accumulated in the input's dtype, 32 elements at a time (a kernel
    that forgot to upcast): its rounding errors compound over a long row."""
    dims = _dims(normalized_shape)
    flat = input.reshape(*input.shape[:input.dim() - len(dims)], -1)
    acc = torch.zeros(flat.shape[:-1], dtype=input.dtype, device=input.device)
    for start in range(0, flat.shape[-1], 32):
        acc = acc + flat[..., start:start + 32].square().sum(-1).to(input.dtype)
    ms = (acc / flat.shape[-1]).reshape(*acc.shape, *(1,) * len(dims))
    h = input.to(_opmath(input))
    y = h * torch.rsqrt(ms.to(h.dtype) + _eps(input, eps))
    if weight is not None:
        y = y * (weight.to(h.dtype) + weight_offset)
    return y.to(input.dtype)


def _row_sum_in_dtype(t, norm_ndim, dtype):
    """BUG: the rows summed one at a time in the gradient's dtype (bfloat16 for a bfloat16
    kernel): after a few hundred rows each addition rounds away most of the new row."""
    rows = t.reshape(-1, *t.shape[t.dim() - norm_ndim:]).to(dtype)
    acc = torch.zeros_like(rows[0])
    for row in rows:
        acc = acc + row
    return acc


def rms_weight_grad_reduced_in_low_precision(input, normalized_shape, weight=None, eps=None, *,
                                             weight_offset=0.0):
    """BUG: the weight gradient's sum over rows accumulated in the input's dtype."""
    return _FusedRMSNorm.apply(input, weight, _dims(normalized_shape), _eps(input, eps),
                               weight_offset, _row_sum_in_dtype)


def rms_gemma_offset_forgotten(input, normalized_shape, weight=None, eps=None, *,
                               weight_offset=0.0):
    """BUG: Gemma's ``1 + w`` read as ``w`` (the offset dropped)."""
    return rms_norm(input, normalized_shape, weight, eps)


CORRECT_RMS = [rms_norm, rms_norm_fused]


# --------------------------------------------------------------------------------- LayerNorm


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """LayerNorm by autograd, two-pass variance, in float32 for low-precision inputs."""
    dims = _dims(normalized_shape)
    h = input.to(_opmath(input))
    centred = h - h.mean(dims, keepdim=True)
    y = centred * torch.rsqrt(centred.square().mean(dims, keepdim=True) + eps)
    if weight is not None:
        y = y * weight.to(h.dtype)
    if bias is not None:
        y = y + bias.to(h.dtype)
    return y.to(input.dtype)


def _affine(y, weight, bias):
    if weight is not None:
        y = y * weight.to(y.dtype)
    return y if bias is None else y + bias.to(y.dtype)


def ln_one_pass_variance(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """BUG: ``var = E[x^2] - E[x]^2`` in one pass: it cancels on rows with a large common offset
    (1e2 on a spread of 1 loses four digits of float32's seven)."""
    dims = _dims(normalized_shape)
    h = input.to(_opmath(input))
    mu = h.mean(dims, keepdim=True)
    var = (h.square().mean(dims, keepdim=True) - mu.square()).clamp_min(0)
    return _affine((h - mu) * torch.rsqrt(var + eps), weight, bias).to(input.dtype)


def ln_unbiased_variance(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """BUG: the variance divided by n - 1 (``torch.var``'s default), not n."""
    dims = _dims(normalized_shape)
    h = input.to(_opmath(input))
    mu = h.mean(dims, keepdim=True)
    n = h[(0,) * (h.dim() - len(dims))].numel() if h.dim() > len(dims) else h.numel()
    var = (h - mu).square().sum(dims, keepdim=True) / max(n - 1, 1)
    return _affine((h - mu) * torch.rsqrt(var + eps), weight, bias).to(input.dtype)


class _BiasGradMean(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, bias, norm_ndim):
        ctx.norm_ndim = norm_ndim
        return y + bias.to(y.dtype)

    @staticmethod
    def backward(ctx, g):
        rows = g.reshape(-1, *g.shape[g.dim() - ctx.norm_ndim:])
        return g, rows.mean(0), None  # BUG: the mean over rows, not the sum


def ln_bias_grad_averaged_over_rows(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """BUG: the bias gradient averaged over the rows instead of summed (right for one row)."""
    y = layer_norm(input, normalized_shape, weight, None, eps).to(_opmath(input))
    if bias is not None:
        y = _BiasGradMean.apply(y, bias, len(_dims(normalized_shape)))
    return y.to(input.dtype)


CORRECT_LN = [layer_norm]


# ------------------------------------------------------------------ RMSNorm, fused residual add
#
#     h = input + residual (one rounding in the input's dtype),  returns (rms_norm(h), h)
#
# The signature of ``refllm.ops.norms.rms_norm`` with ``residual=``, checked with
# ``check_rms_norm(fn, residual="fused")``; vLLM's, Liger-Kernel's and Unsloth's fused kernels.


def fused_add_rms_norm(input, normalized_shape, weight=None, eps=None, *, residual,
                       weight_offset=0.0):
    """The fused residual add by autograd: the sum rounded to the input's dtype, normalised."""
    h = input + residual
    return rms_norm(h, normalized_shape, weight, eps, weight_offset=weight_offset), h


def fused_add_rms_norm_float32_sum(input, normalized_shape, weight=None, eps=None, *, residual,
                                   weight_offset=0.0):
    """Correct too: the sum formed in float32 and normalised before it is rounded (the norm sees
    the unrounded sum); the new residual is that sum rounded once to the input's dtype."""
    h = input.to(_opmath(input)) + residual.to(_opmath(input))
    y = h * torch.rsqrt(h.square().mean(_dims(normalized_shape), keepdim=True)
                        + _eps(input, eps))
    if weight is not None:
        y = y * (weight.to(h.dtype) + weight_offset)
    return y.to(input.dtype), h.to(input.dtype)


class _FusedAddRMSNorm(torch.autograd.Function):
    """A fused kernel with a written-out backward: the residual stream's upstream gradient
    ``g_h`` joins the norm's input gradient, ``dx = dr = rms_backward(g_y) + g_h`` (correct with
    ``keep_residual_grad=True``)."""

    @staticmethod
    def forward(ctx, input, residual, weight, dims, eps, offset, keep_residual_grad):
        h = input + residual
        y = _FusedRMSNorm.forward(ctx, h, weight, dims, eps, offset, _row_sum)
        ctx.keep_residual_grad = keep_residual_grad
        return y, h

    @staticmethod
    def backward(ctx, g_y, g_h):
        dx, dw = _FusedRMSNorm.backward(ctx, g_y)[:2]
        if ctx.keep_residual_grad:
            dx = dx + g_h
        return dx, dx, dw, None, None, None, None


def fused_add_rms_norm_written_backward(input, normalized_shape, weight=None, eps=None, *,
                                        residual, weight_offset=0.0):
    """The fused residual add with a hand-written backward (correct)."""
    return _FusedAddRMSNorm.apply(input, residual, weight, _dims(normalized_shape),
                                  _eps(input, eps), weight_offset, True)


def rms_residual_returns_the_old_residual(input, normalized_shape, weight=None, eps=None, *,
                                          residual, weight_offset=0.0):
    """BUG: the output is right, but the residual handed back is the one passed in, not the
    sum (the next block's residual stream loses this block's branch)."""
    return fused_add_rms_norm(input, normalized_shape, weight, eps, residual=residual,
                              weight_offset=weight_offset)[0], residual


def rms_residual_normalises_the_input(input, normalized_shape, weight=None, eps=None, *,
                                      residual, weight_offset=0.0):
    """BUG: the new residual is the sum, but the norm is taken of the input alone."""
    h = input + residual
    return rms_norm(input, normalized_shape, weight, eps, weight_offset=weight_offset), h


def rms_residual_added_in_bfloat16(input, normalized_shape, weight=None, eps=None, *,
                                   residual, weight_offset=0.0):
    """BUG: the add done in bfloat16 whatever the input's dtype (a kernel written for bfloat16
    models, called on a float32 residual stream): the sum and its norm lose 16 bits."""
    h = (input.to(torch.bfloat16) + residual.to(torch.bfloat16)).to(input.dtype)
    return rms_norm(h, normalized_shape, weight, eps, weight_offset=weight_offset), h


class _AddIntoResidual(torch.autograd.Function):
    """vLLM's calling convention inside an autograd function: the sum written into the caller's
    residual buffer, the norm computed from it; the backward is the correct one."""

    @staticmethod
    def forward(ctx, input, residual, weight, dims, eps, offset):
        residual.add_(input)  # BUG: the caller's tensor is overwritten
        h = residual.clone()
        y = _FusedRMSNorm.forward(ctx, h, weight, dims, eps, offset, _row_sum)
        return y, h

    @staticmethod
    def backward(ctx, g_y, g_h):
        dx, dw = _FusedRMSNorm.backward(ctx, g_y)[:2]
        dx = dx + g_h
        return dx, dx, dw, None, None, None


def rms_residual_added_in_place(input, normalized_shape, weight=None, eps=None, *, residual,
                                weight_offset=0.0):
    """BUG: the new residual written into the caller's ``residual`` (vLLM's in-place op called
    where a function is expected): values and gradients are right, the caller's tensor is not."""
    return _AddIntoResidual.apply(input, residual, weight, _dims(normalized_shape),
                                  _eps(input, eps), weight_offset)


def rms_residual_backward_drops_the_residual_grad(input, normalized_shape, weight=None,
                                                  eps=None, *, residual, weight_offset=0.0):
    """BUG: the backward returns the norm's input gradient alone; the upstream gradient of the
    new residual (the rest of the residual stream) is dropped."""
    return _FusedAddRMSNorm.apply(input, residual, weight, _dims(normalized_shape),
                                  _eps(input, eps), weight_offset, False)


CORRECT_RESIDUAL = [fused_add_rms_norm, fused_add_rms_norm_float32_sum,
                    fused_add_rms_norm_written_backward]
