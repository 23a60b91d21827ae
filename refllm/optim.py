"""Optimizers and learning-rate schedules, where users look for them: ``refllm.optim.AdamW``.

Re-exports :mod:`refllm.nn.optim` (SGD, Adam, AdamW, Muon, Adafactor: ``torch.optim.Optimizer``
subclasses built on the update rules of :mod:`refllm.ops.optim_sgd`, :mod:`refllm.ops.optim_adam`,
:mod:`refllm.ops.optim_muon` and :mod:`refllm.ops.optim_adafactor`) and
:mod:`refllm.ops.schedules`.

>>> import torch, refllm.optim
>>> w = torch.nn.Parameter(torch.ones(2))
>>> opt = refllm.optim.AdamW([w], lr=refllm.optim.warmup_cosine(
...     0, max_lr=1e-3, min_lr=1e-4, warmup_steps=10, decay_steps=100))
"""

from refllm.nn.optim import SGD, Adafactor, Adam, AdamW, Muon
from refllm.ops.schedules import as_lr_lambda, cosine_decay, linear_warmup, warmup_cosine

__all__ = ["SGD", "Adafactor", "Adam", "AdamW", "Muon", "as_lr_lambda", "cosine_decay",
           "linear_warmup", "warmup_cosine"]
