"""Pure functions on tensors. Each module holds the equation, a naive version and a fast version."""

from refllm.ops.activations import (
    gated_mlp,
    gated_mlp_naive,
    geglu,
    geglu_naive,
    gelu,
    gelu_naive,
    swiglu,
    swiglu_naive,
)
from refllm.ops.attention import (
    scaled_dot_product_attention,
    scaled_dot_product_attention_naive,
    scaled_dot_product_attention_with_weights,
    scaled_dot_product_attention_with_weights_naive,
)
from refllm.ops.choices import OPTIMIZER_KINDS, REDUCTIONS, update_rule
from refllm.ops.clip_grad import (
    clip_grad_norm_,
    clip_grad_norm_naive_,
    get_total_norm,
    get_total_norm_naive,
)
from refllm.ops.cross_entropy import (
    cross_entropy,
    cross_entropy_grad,
    cross_entropy_grad_naive,
    cross_entropy_naive,
)
from refllm.ops.flash_attention import flash_attention
from refllm.ops.grad_accumulation import (
    accumulate_token_weighted,
    accumulate_token_weighted_naive,
    accumulation_scale,
)
from refllm.ops.linear_cross_entropy import linear_cross_entropy, linear_cross_entropy_naive
from refllm.ops.mse import mse_loss, mse_loss_naive
from refllm.ops.multihead import multi_head_attention, multi_head_attention_naive
from refllm.ops.norms import layer_norm, layer_norm_naive, rms_norm, rms_norm_naive
from refllm.ops.optim_adafactor import adafactor, adafactor_naive
from refllm.ops.optim_adam import adam, adam_naive, adamw, adamw_naive
from refllm.ops.optim_muon import muon, muon_naive
from refllm.ops.optim_sgd import gd, gd_naive, sgd, sgd_naive
from refllm.ops.rope import rope, rope_naive
from refllm.ops.rope_scaling import (
    LinearScaling,
    Llama3Scaling,
    NTKScaling,
    YarnScaling,
    rope_frequencies,
    rope_frequencies_naive,
)
from refllm.ops.schedules import as_lr_lambda, cosine_decay, linear_warmup, warmup_cosine
from refllm.ops.softmax import (
    log_softmax,
    log_softmax_naive,
    logsumexp,
    logsumexp_naive,
    softmax,
    softmax_naive,
)

__all__ = [
    "scaled_dot_product_attention", "scaled_dot_product_attention_naive",
    "scaled_dot_product_attention_with_weights", "scaled_dot_product_attention_with_weights_naive",
    "flash_attention",
    "cross_entropy", "cross_entropy_naive", "cross_entropy_grad", "cross_entropy_grad_naive",
    "linear_cross_entropy", "linear_cross_entropy_naive",
    "mse_loss", "mse_loss_naive", "multi_head_attention", "multi_head_attention_naive",
    "gd", "gd_naive", "sgd", "sgd_naive", "adam", "adam_naive", "adamw", "adamw_naive",
    "muon", "muon_naive", "adafactor", "adafactor_naive",
    "OPTIMIZER_KINDS", "REDUCTIONS", "update_rule",
    "linear_warmup", "cosine_decay", "warmup_cosine", "as_lr_lambda",
    "rms_norm", "rms_norm_naive", "layer_norm", "layer_norm_naive",
    "gelu", "gelu_naive", "swiglu", "swiglu_naive", "geglu", "geglu_naive",
    "gated_mlp", "gated_mlp_naive",
    "rope", "rope_naive", "rope_frequencies", "rope_frequencies_naive",
    "LinearScaling", "NTKScaling", "YarnScaling", "Llama3Scaling",
    "clip_grad_norm_", "clip_grad_norm_naive_", "get_total_norm", "get_total_norm_naive",
    "accumulate_token_weighted", "accumulate_token_weighted_naive", "accumulation_scale",
    "softmax", "softmax_naive", "log_softmax", "log_softmax_naive", "logsumexp", "logsumexp_naive",
]
