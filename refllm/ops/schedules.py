"""Learning-rate schedules as pure functions of the step: linear warmup, cosine decay, both.

Linear warmup (Goyal et al. 2017, "Accurate, Large Minibatch SGD", §2.2 "gradual warmup")::

    η(t) = η_max · (t + 1) / T_w            for t < T_w, else η_max

Cosine decay to a floor (Loshchilov & Hutter 2017, "SGDR", Eq. 5, one period, no restart)::

    η(t) = η_min + ½ (η_max − η_min) (1 + cos(π · t / T))        for 0 ≤ t ≤ T, η_min after

Warmup then cosine, as nanoGPT's ``get_lr`` (Karpathy 2022, train.py) — the schedule of GPT-3
(Brown et al. 2020, Appendix B) and Chinchilla::

    η(t) = η_max · (t + 1) / (T_w + 1)                           for t < T_w
    η(t) = η_min + ½ (η_max − η_min) (1 + cos(π r)), r = (t − T_w)/(T_d − T_w)   for T_w ≤ t ≤ T_d
    η(t) = η_min                                                  for t > T_d

Notation map: t is the optimizer step counted from 0 (the number of ``step()`` calls made so far, as
``torch.optim.lr_scheduler.LambdaLR`` passes it); T_w is ``warmup_steps``, T_d (or T) is
``decay_steps``, η_max ``max_lr``, η_min ``min_lr``.

Rounding: :func:`cosine_decay` computes η_max − (1 − c)(η_max − η_min) so that t = 0 gives η_max
exactly; :func:`warmup_cosine` keeps nanoGPT's η_min + c (η_max − η_min) so that it equals
``get_lr`` bit for bit (its peak may then differ from η_max in the last bit).

Deviation: nanoGPT's warmup is ``max_lr * (t + 1) / (warmup_steps + 1)`` so that step 0 does not
train at lr 0; :func:`warmup_cosine` keeps that form; :func:`linear_warmup` alone uses
``(t + 1) / warmup_steps`` so that it reaches η_max exactly at t = T_w − 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from refllm._validation import require_int, require_real


def _check_step(step: object) -> int:
    return require_int("step", step, low=0)


def _check_count(name: str, value: object, *, low: int) -> None:
    require_int(name, value, low=low)


def _check_lrs(max_lr: float, min_lr: float) -> None:
    require_real("max_lr", max_lr, low=0.0)
    require_real("min_lr", min_lr, low=0.0)
    if min_lr > max_lr:
        raise ValueError(f"min_lr must be <= max_lr, got min_lr={min_lr!r} > max_lr={max_lr!r}")


def linear_warmup(step: int, *, max_lr: float, warmup_steps: int) -> float:
    """η_max · (t + 1) / T_w for t < T_w, η_max after.

    >>> [linear_warmup(t, max_lr=1.0, warmup_steps=4) for t in range(6)]
    [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    """
    step = _check_step(step)
    _check_count("warmup_steps", warmup_steps, low=0)
    _check_lrs(max_lr, 0.0)
    if step >= warmup_steps:
        return float(max_lr)
    return max_lr * ((step + 1) / warmup_steps)  # the ratio first: exactly η_max at t = T_w − 1


def cosine_decay(step: int, *, max_lr: float, min_lr: float, decay_steps: int) -> float:
    """η_min + ½ (η_max − η_min)(1 + cos(π t / T)) for t ≤ T, η_min after.

    >>> [cosine_decay(t, max_lr=1.0, min_lr=0.0, decay_steps=2) for t in range(4)]
    [1.0, 0.5, 0.0, 0.0]
    """
    step = _check_step(step)
    _check_count("decay_steps", decay_steps, low=1)
    _check_lrs(max_lr, min_lr)
    if step >= decay_steps:
        return float(min_lr)
    coeff = 0.5 * (1.0 + math.cos(math.pi * step / decay_steps))
    return max_lr - (1.0 - coeff) * (max_lr - min_lr)  # anchored at η_max: exact at t = 0


def _cosine(ratio: float, max_lr: float, min_lr: float) -> float:
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # nanoGPT's order of operations
    return min_lr + coeff * (max_lr - min_lr)


def warmup_cosine(step: int, *, max_lr: float, min_lr: float, warmup_steps: int,
                  decay_steps: int) -> float:
    """nanoGPT's ``get_lr``: linear warmup to η_max, cosine decay to η_min at T_d, η_min after.

    >>> [round(warmup_cosine(t, max_lr=1.0, min_lr=0.1, warmup_steps=1, decay_steps=3), 6)
    ...  for t in range(5)]
    [0.5, 1.0, 0.55, 0.1, 0.1]
    """
    step = _check_step(step)
    _check_count("warmup_steps", warmup_steps, low=0)
    _check_count("decay_steps", decay_steps, low=warmup_steps + 1)
    _check_lrs(max_lr, min_lr)
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    if step > decay_steps:
        return float(min_lr)
    return _cosine((step - warmup_steps) / (decay_steps - warmup_steps), max_lr, min_lr)


def as_lr_lambda(schedule: Callable[..., float], *, base_lr: float,
                 **kwargs: float) -> Callable[[int], float]:
    """A ``lr_lambda`` for ``torch.optim.lr_scheduler.LambdaLR``: the schedule divided by base_lr.

    LambdaLR sets lr = base_lr · lr_lambda(t), where base_lr is the optimizer's initial lr, so the
    optimizer then follows ``schedule(t, **kwargs)``.

    >>> f = as_lr_lambda(linear_warmup, base_lr=0.5, max_lr=0.5, warmup_steps=2)
    >>> [f(t) for t in range(3)]
    [0.5, 1.0, 1.0]
    """
    require_real("base_lr", base_lr, low=0.0, low_open=True)
    schedule(0, **kwargs)  # validate the arguments now, not at the first step

    def lr_lambda(step: int) -> float:
        return schedule(step, **kwargs) / base_lr

    return lr_lambda
