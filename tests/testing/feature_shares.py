"""How often each strategy draws each combination of a call's optional features.

    python -m tests.testing.feature_shares [--draws 2000] [--seed 0]

For each public strategy (SDPA, cross-entropy, MSE, SGD, Adam, AdamW, multi-head attention) it
draws ``--draws`` cases, names the optional features each case uses (a keyword PyTorch would
otherwise default, or a non-default input layout; drawn as the checks draw them, with
``write_defaults=False``) and prints a Markdown table: the share of the
default call (no feature at all), of each feature alone, of each pair of features alone, and the
smallest share of any on/off combination of any pair (pairwise coverage: both off, each alone
with the other off, both on). docs/testing.md holds the table; test_feature_shares.py holds the
floors.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from refllm.testing.engine.search import hermetic_generation
from refllm.testing.layer_norm.check import LAYER_NORM_FEATURES
from refllm.testing.optimizer.strategy import TORCH_DEFAULTS
from refllm.testing.rms_norm.check import RMS_NORM_FEATURES
from refllm.testing.rope.check import ROPE_FEATURES
from refllm.testing.strategies import (
    cross_entropy_cases,
    layer_norm_cases,
    linear_cross_entropy_cases,
    mse_cases,
    multihead_cases,
    optimizer_problems,
    rms_norm_cases,
    rope_cases,
    sdpa_cases,
    swiglu_cases,
)
from refllm.testing.swiglu.check import SWIGLU_FEATURES

Features = frozenset[str]


def sdpa_features(case: Any) -> Features:
    kw = case.kwargs
    names = {"mask": "attn_mask", "causal": "is_causal", "scale": "scale", "gqa": "enable_gqa"}
    return frozenset(n for n, k in names.items() if k in kw)


def cross_entropy_features(case: Any) -> Features:
    logits, target = case.args
    on = {n for n in ("weight", "ignore_index", "label_smoothing", "reduction") if n in case.kwargs}
    on |= {"prob_targets"} if target.is_floating_point() else set()
    on |= {"layout"} if logits.dim() != 2 else set()
    return frozenset(on)


def mse_features(case: Any) -> Features:
    return frozenset({"reduction"} & set(case.kwargs))


def optimizer_features(problem: Any) -> Features:
    defaults = TORCH_DEFAULTS[problem.like]
    return frozenset(k for k, v in defaults.items()
                     if any(tuple(h[k]) != v if k == "betas" else h[k] != v
                            for h in problem.hyper))


def multihead_features(case: Any) -> Features:
    init, kw = case.init_kwargs, case.forward.kwargs
    c = init["embed_dim"]
    on = {n for n in ("key_padding_mask", "attn_mask", "need_weights") if n in kw}
    on |= {n for n in ("add_bias_kv", "add_zero_attn", "batch_first") if init[n]}
    on |= {"bias"} if not init["bias"] else set()
    on |= {"kdim_vdim"} if (init["kdim"], init["vdim"]) != (c, c) else set()
    return frozenset(on)


def norm_features(case: Any) -> Features:
    x, shape, *params = case.args
    on = {n for n in ("eps", "weight_offset") if n in case.kwargs}
    on |= {"no_weight"} if params[0] is None else set()
    on |= {"no_bias"} if len(params) > 1 and params[1] is None else set()
    on |= {"multi_dim"} if len(shape) > 1 else set()
    on |= {n for n in ("small_variance", "large_offset") if n in case.note}
    return frozenset(on)


def glu_features(case: Any) -> Features:
    return frozenset(f for f in SWIGLU_FEATURES if f in case.note)


def rope_features(case: Any) -> Features:
    kw = case.kwargs
    names = {"offset": "offset", "gptj": "layout", "partial_rotary": "rotary_dim",
             "base": "base", "scaling": "scaling"}
    on = {n for n, k in names.items() if k in kw}
    on |= {"positions"} if len(case.args) > 1 else set()
    on |= {"long_positions"} if "long positions" in case.note else set()
    return frozenset(on)


def lce_features(case: Any) -> Features:
    names = {"bias": "linear_bias", "weights": "weight", "ignore_index": "ignore_index",
             "label_smoothing": "label_smoothing", "reduction": "reduction"}
    on = {n for n, k in names.items() if k in case.kwargs}
    h = case.args[0]
    on |= {"large_logits"} if float(h.abs().max()) > 20 else set()
    return frozenset(on)


STRATEGIES: dict[str, tuple[Callable[[], st.SearchStrategy], Callable[[Any], Features],
                            tuple[str, ...]]] = {
    "sdpa_cases": (sdpa_cases, sdpa_features, ("mask", "causal", "scale", "gqa")),
    "cross_entropy_cases": (lambda: cross_entropy_cases(write_defaults=False),
                            cross_entropy_features,
                            ("layout", "prob_targets", "weight", "ignore_index",
                             "label_smoothing", "reduction")),
    "mse_cases": (lambda: mse_cases(write_defaults=False), mse_features, ("reduction",)),
    "optimizer_problems(like='sgd')": (lambda: optimizer_problems(like="sgd", steps=(1, 2)),
                                       optimizer_features, tuple(TORCH_DEFAULTS["sgd"])),
    "optimizer_problems(like='adam')": (lambda: optimizer_problems(like="adam", steps=(1, 2)),
                                        optimizer_features, tuple(TORCH_DEFAULTS["adam"])),
    "optimizer_problems(like='adamw')": (lambda: optimizer_problems(like="adamw", steps=(1, 2)),
                                         optimizer_features, tuple(TORCH_DEFAULTS["adamw"])),
    "multihead_cases": (lambda: multihead_cases(write_defaults=False), multihead_features,
                        ("kdim_vdim", "bias", "add_bias_kv", "add_zero_attn",
                         "key_padding_mask", "attn_mask", "need_weights", "batch_first")),
    "rms_norm_cases": (lambda: rms_norm_cases(features=RMS_NORM_FEATURES), norm_features,
                       RMS_NORM_FEATURES),
    "layer_norm_cases": (layer_norm_cases, norm_features, LAYER_NORM_FEATURES),
    "swiglu_cases": (swiglu_cases, glu_features, SWIGLU_FEATURES),
    "rope_cases": (rope_cases, rope_features, ROPE_FEATURES),
    "linear_cross_entropy_cases": (linear_cross_entropy_cases, lce_features,
                                   ("bias", "weights", "ignore_index", "label_smoothing",
                                    "large_logits", "reduction")),
}
EXCLUSIVE = {("mask", "causal"), ("prob_targets", "ignore_index"), ("dampening", "nesterov"),
             ("small_variance", "large_offset"), ("no_weight", "weight_offset"),
             ("positions", "offset")}
"""Pairs that cannot be on together (SDPA refuses a mask with is_causal; soft targets have
nothing to ignore; torch's Nesterov requires zero dampening; a norm's input is drawn either small
or offset; Gemma's offset applies to a weight)."""
IMPLIES = {"nesterov": "momentum", "long_positions": "offset"}
"""A feature that brings another with it (torch's Nesterov requires momentum): "nesterov alone"
is counted as nesterov with momentum, and "nesterov on, momentum off" is not a combination."""


def _with_implied(features: set[str] | tuple[str, ...]) -> Features:
    return frozenset(features) | {IMPLIES[f] for f in features if f in IMPLIES}


def draw_features(name: str, draws: int, seed: int = 0) -> Counter[Features]:
    """The feature sets of ``draws`` cases of strategy ``name`` (reproducible per seed)."""
    make, classify, _ = STRATEGIES[name]
    return collect(make, classify, draws, seed)


def collect(make: Callable[[], st.SearchStrategy], classify: Callable[[Any], Features],
            draws: int, seed: int = 0) -> Counter[Features]:
    """How often ``classify`` gives each label set over ``draws`` cases drawn as a check draws
    them (generate phase only; seed 0: derandomised, as under CI)."""
    seen: Counter[Features] = Counter()

    @settings(max_examples=draws, database=None, deadline=None, derandomize=seed == 0,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(make())
    def each(drawn: Any) -> None:
        seen[classify(drawn)] += 1

    if seed:
        from hypothesis import seed as hypothesis_seed
        each = hypothesis_seed(seed)(each)
    with hermetic_generation():
        each()
    return seen


def shares(seen: Counter[Features], names: tuple[str, ...]) -> dict[str, Any]:
    """Default, each feature alone, each pair alone, and each pair's on/off coverage."""
    total = sum(seen.values())
    share = lambda n: n / total  # noqa: E731
    alone = {f: share(seen[_with_implied({f})]) for f in names}
    pairs = [p for p in itertools.combinations(names, 2)
             if p not in EXCLUSIVE and IMPLIES.get(p[0]) != p[1] and IMPLIES.get(p[1]) != p[0]]
    pair_alone = {p: share(seen[_with_implied(p)]) for p in pairs}
    coverage = {}
    for a, b in itertools.combinations(names, 2):
        for on_a, on_b in itertools.product((False, True), repeat=2):
            if (on_a and on_b and ((a, b) in EXCLUSIVE or (b, a) in EXCLUSIVE)) or (
                    on_a and not on_b and IMPLIES.get(a) == b) or (
                    on_b and not on_a and IMPLIES.get(b) == a):
                continue  # a combination no valid call has
            coverage[(a, on_a, b, on_b)] = share(sum(
                n for fs, n in seen.items() if (a in fs) == on_a and (b in fs) == on_b))
    return {"draws": total, "default": share(seen[frozenset()]), "alone": alone,
            "pair_alone": pair_alone, "coverage": coverage}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0, help="0: derandomised (as under CI)")
    args = parser.parse_args(argv)
    print(f"| strategy | default call | each feature alone (lowest) | each pair alone (lowest) "
          f"| pairwise on/off coverage (lowest) |  <!-- {args.draws} draws, seed {args.seed} -->")
    print("|---|---|---|---|---|")
    for name, (_, _, names) in STRATEGIES.items():
        r = shares(draw_features(name, args.draws, args.seed), names)
        low = min(r["alone"], key=r["alone"].get)
        alone = f"{_pct(r['alone'][low])} (`{low}`)"
        pair, cover = "-", "-"
        if r["pair_alone"]:
            p = min(r["pair_alone"], key=r["pair_alone"].get)
            pair = f"{_pct(r['pair_alone'][p])} (`{p[0]}` + `{p[1]}`)"
            c = min(r["coverage"], key=r["coverage"].get)
            state = lambda on: "on" if on else "off"  # noqa: E731
            cover = (f"{_pct(r['coverage'][c])} (`{c[0]}` {state(c[1])}, "
                     f"`{c[2]}` {state(c[3])})")
        print(f"| `{name}` | {_pct(r['default'])} | {alone} | {pair} | {cover} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
