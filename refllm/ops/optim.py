"""Gradient-descent update rules as pure functions: gd, sgd, adam, adamw, each with a naive twin.

Every rule has one signature, ``(params, grads, state, **hyper) -> (new_params, new_state)``:
``params`` and ``grads`` are sequences of tensors of equal shapes, ``state`` is a list with one dict
per parameter keyed as torch.optim keys them (``'momentum_buffer'``; ``'step'``, ``'exp_avg'``,
``'exp_avg_sq'``, ``'max_exp_avg_sq'``) or ``None`` for a fresh start; the hyper-parameters are
keyword arguments named as torch.optim names them. No rule mutates its inputs; the in-place
twins ``sgd_``, ``adam_``, ``adamw_`` (what `refllm.nn.optim` calls) update params and state as
torch.optim does, and the pure rules are those same functions run on copies.

* ``gd``:    θ_{t+1} = θ_t − η ∇L(θ_t)                                  (refllm.ops.optim_sgd)
* ``sgd``:   momentum, dampening, Nesterov, weight decay, maximize     (Sutskever et al. 2013)
* ``adam``:  Kingma & Ba 2015, Algorithm 1, L2 weight decay, AMSGrad   (refllm.ops.optim_adam)
* ``adamw``: Loshchilov & Hutter 2019, Algorithm 2 (decoupled weight decay)

The ``*_naive`` versions transcribe the papers one element at a time in Python floats (float64;
the result is rounded to the parameters' dtype); the fast versions run PyTorch's for-loop
implementation operation for operation on whole tensors. See docs/ops/optim.md.

>>> import torch
>>> (p,), _ = gd([torch.tensor([1.0], dtype=torch.float64)],
...              [torch.tensor([2.0], dtype=torch.float64)], lr=0.25)
>>> p.item()
0.5
"""

from refllm.ops.optim_adam import (
    adam,
    adam_,
    adam_naive,
    adamw,
    adamw_,
    adamw_naive,
    check_adam_hyper,
)
from refllm.ops.optim_sgd import check_sgd_hyper, gd, gd_naive, sgd, sgd_, sgd_naive

__all__ = ["gd", "gd_naive", "sgd", "sgd_", "sgd_naive", "adam", "adam_", "adam_naive", "adamw",
           "adamw_", "adamw_naive",
           "check_sgd_hyper", "check_adam_hyper"]
