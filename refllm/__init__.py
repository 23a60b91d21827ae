"""refllm: a testing-first reference implementation of the building blocks of large language models.

Layers (each imports only the ones before it): ``refllm.ops`` (pure functions, naive and fast
side by side) -> ``refllm.nn`` (modules and optimizers that own parameters) -> model -> train ->
scaling; ``refllm.testing`` is the public correctness oracle built on ``refllm.ops``.

>>> import torch, refllm
>>> q = k = v = torch.randn(1, 2, 3, 4)
>>> refllm.scaled_dot_product_attention(q, k, v).shape
torch.Size([1, 2, 3, 4])
"""

from refllm.nn import SGD, Adam, AdamW, MultiheadAttention
from refllm.ops import (
    cross_entropy,
    log_softmax,
    logsumexp,
    mse_loss,
    multi_head_attention,
    scaled_dot_product_attention,
    softmax,
)

__version__ = "0.1.0"

__all__ = [
    "__version__", "softmax", "log_softmax", "logsumexp", "scaled_dot_product_attention",
    "multi_head_attention", "cross_entropy", "mse_loss", "MultiheadAttention",
    "SGD", "Adam", "AdamW",
]
