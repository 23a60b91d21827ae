"""The names the ops take as choices, written once: loss reductions and optimizer kinds.

The losses validate ``reduction=`` against `REDUCTIONS`; the oracle's strategies draw from it
(PyTorch's default first, so Hypothesis draws it most often) and the CLI and the pytest plugin
offer it. `OPTIMIZER_KINDS` names the update rules of :mod:`refllm.ops.optim_sgd`,
:mod:`refllm.ops.optim_adam`, :mod:`refllm.ops.optim_muon` and :mod:`refllm.ops.optim_adafactor`
as the torch.optim class each one imitates ("gd" is ``torch.optim.SGD`` with lr only);
`update_rule` returns the rule for a kind.

>>> update_rule("adamw").__name__
'adamw'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from refllm._validation import require_choice

REDUCTIONS = ("mean", "sum", "none")
"""``reduction=`` of ``F.cross_entropy`` and ``F.mse_loss``; PyTorch's default first."""

OPTIMIZER_KINDS = ("gd", "sgd", "adam", "adamw", "muon", "adafactor")
"""The update rules, named after the torch.optim class each one imitates."""


def update_rule(kind: str, *, naive: bool = False) -> Callable[..., Any]:
    """The pure rule ``(params, grads, state, **hyper) -> (params, state)`` of ``kind``
    (its element-by-element twin with ``naive=True``); `ValueError` for an unknown kind.

    Muon's naive rule steps along the exact polar factor (``orthogonalize="svd"``), which its
    fast rule's Newton–Schulz only approximates (see :mod:`refllm.ops.optim_muon`)."""
    from refllm.ops import optim_adafactor, optim_adam, optim_muon, optim_sgd

    require_choice("optimizer kind", kind, OPTIMIZER_KINDS)
    module = {"gd": optim_sgd, "sgd": optim_sgd, "muon": optim_muon,
              "adafactor": optim_adafactor}.get(kind, optim_adam)
    return getattr(module, f"{kind}_naive" if naive else kind)
