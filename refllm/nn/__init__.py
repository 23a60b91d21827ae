"""Thin `torch.nn.Module` and `torch.optim.Optimizer` wrappers that own parameters and call ops."""

from refllm.nn.multihead import MultiheadAttention
from refllm.nn.optim import SGD, Adam, AdamW

__all__ = ["MultiheadAttention", "SGD", "Adam", "AdamW"]
