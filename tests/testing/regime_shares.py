"""How often the strategies draw inputs out of unit scale, and attention's shape regimes.

    python -m tests.testing.regime_shares [--draws 2000] [--seed 0]

prints a Markdown table: per strategy (drawn as its check draws it), the share of cases in each
regime of `refllm.testing.engine.scales` and of the kernel-sized tier's rarer axes. Shapes and
logit conditions are read off the drawn tensors; a regime of one input's scale or offset is read
off the case's note, which tests/testing/test_regime_shares.py holds against the tensors.
docs/oracle.md ("Input scale and shape regimes") holds the table; test_regime_shares.py the
floors.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch

from refllm.testing.strategies import cross_entropy_cases, mse_cases, sdpa_cases
from tests.testing.feature_shares import Features, collect


def _logits(case: Any) -> torch.Tensor:
    q, k, _ = case.args
    if case.kwargs.get("enable_gqa") and k.shape[-3] != q.shape[-3]:
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
    scale = case.kwargs.get("scale", q.shape[-1] ** -0.5)
    return q @ k.transpose(-2, -1) * scale


def sdpa_regimes(case: Any) -> Features:
    q, k, v = case.args
    note, on = case.note, set()
    on |= {"values x 1e-3 to 1e-1"} if "values scale 1e-0" in note else set()
    on |= {"values x 10 to 1e3"} if "values scale 1e+0" in note else set()
    on |= {"values + offset"} if "values offset" in note else set()
    on |= {"logits x 1e-3 to 1e-1"} if "logits scale 1e-0" in note else set()
    s = _logits(case)
    spread = (s.amax(-1) - s.amin(-1)).max()
    on |= {"logit spread > 100"} if float(spread) > 100 else set()
    on |= {"logits shifted by > 1e3"} if "logits offset" in note else set()
    on |= {"a row's logits all < -1e4"} if bool((s.amax(-1) < -1e4).any()) else set()
    slices = math.prod(q.shape[:-2])
    on |= {f"b*h > {n}" for n in (64, 256, 65535) if slices > n}
    on |= {"d > 128"} if q.shape[-1] > 128 else set()
    on |= {"t or s >= 1000"} if max(q.shape[-2], k.shape[-2]) >= 1000 else set()
    return frozenset(on)


def cross_entropy_regimes(case: Any) -> Features:
    logits = case.args[0].to(torch.float64)
    rows = logits.reshape(1, -1) if logits.dim() == 1 else \
        logits.movedim(1, -1).reshape(-1, logits.shape[1])
    if rows.shape[-1] < 2 or rows.numel() == 0:  # one class: no spread to speak of
        return frozenset()
    spread = rows.amax(-1) - rows.amin(-1)
    centre = rows.mean(-1).abs()
    on = set()
    on |= {"rows near-uniform (spread < 0.1)"} if bool(((spread > 0) & (spread < 0.1)).any()) \
        else set()
    on |= {"ties (spread 0)"} if bool((spread == 0).all()) else set()
    on |= {"spread beyond float32's exp range (> 104)"} if float(spread.max()) > 104 else set()
    offset = (spread < 50) & (centre > 50)
    on |= {"common offset 1e2 to 1e3"} if bool((offset & (centre < 5e3)).any()) else set()
    on |= {"near +-1e4"} if bool((offset & (centre >= 5e3)).any()) else set()
    return frozenset(on)


def mse_regimes(case: Any) -> Features:
    note = case.note
    on = set()
    on |= {"x 1e-3 to 1e-1"} if "scale 1e-0" in note else set()
    on |= {"x 10 to 1e3"} if "scale 1e+0" in note else set()
    on |= {"common offset"} if "offset" in note else set()
    return frozenset(on)


STRATEGIES: dict[str, tuple[Callable[[], Any], Callable[[Any], Features], tuple[str, ...]]] = {
    # as check_sdpa draws by default (every feature)
    "sdpa_cases": (lambda: sdpa_cases(large_logits=True, non_contiguous=True), sdpa_regimes,
                   ("values x 1e-3 to 1e-1", "values x 10 to 1e3", "values + offset",
                    "logits x 1e-3 to 1e-1", "logit spread > 100", "logits shifted by > 1e3",
                    "a row's logits all < -1e4", "b*h > 64", "b*h > 256", "b*h > 65535",
                    "d > 128", "t or s >= 1000")),
    "cross_entropy_cases": (lambda: cross_entropy_cases(write_defaults=False),
                            cross_entropy_regimes,
                            ("rows near-uniform (spread < 0.1)", "ties (spread 0)",
                             "spread beyond float32's exp range (> 104)",
                             "common offset 1e2 to 1e3", "near +-1e4")),
    "mse_cases": (lambda: mse_cases(write_defaults=False), mse_regimes,
                  ("x 1e-3 to 1e-1", "x 10 to 1e3", "common offset")),
}


def regime_shares(name: str, draws: int, seed: int = 0) -> dict[str, float]:
    """The share of ``draws`` cases of strategy ``name`` in each of its regimes."""
    make, classify, labels = STRATEGIES[name]
    seen: Counter[Features] = collect(make, classify, draws, seed)
    total = sum(seen.values())
    return {label: sum(n for fs, n in seen.items() if label in fs) / total for label in labels}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0, help="0: derandomised (as under CI)")
    args = parser.parse_args(argv)
    print(f"| strategy | regime | share |  <!-- {args.draws} draws, seed {args.seed} -->")
    print("|---|---|---|")
    for name in STRATEGIES:
        for label, share in regime_shares(name, args.draws, args.seed).items():
            print(f"| `{name}` | {label} | {100 * share:.1f}% |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
