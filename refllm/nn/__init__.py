"""Thin `torch.nn.Module` and `torch.optim.Optimizer` wrappers that own parameters and call ops."""

from refllm.nn.multihead import MultiheadAttention
from refllm.nn.optim import SGD, Adafactor, Adam, AdamW, Muon

__all__ = ["MultiheadAttention", "SGD", "Adafactor", "Adam", "AdamW", "Muon"]
