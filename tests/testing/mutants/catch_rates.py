"""How often the oracle catches each mutant: one check per seed, default features, no shrinking.

    python -m tests.testing.mutants.catch_rates --seeds 16 --examples 40 [--defaults]
        [--random-only] [name ...]

prints a Markdown table: per mutant, in how many of the seeds 0..N-1 the check failed on one of
the properties the bug breaks (``caught``), and in how many it failed at all (``failed``), and the
median number of examples the failing checks drew. ``--defaults`` also runs the focused mutants
of test_mutants.py with the default features. ``--random-only`` leaves out the fixed
kernel-sized default calls (`long=False`), so that the rates measure the random kernel-sized tier
alone. Seeds give independent Hypothesis runs, so ``caught / seeds`` estimates the chance that
one run of the default size finds the bug.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from typing import Any

import torch

from refllm.testing import load_profile
from tests.testing.mutants.test_mutants import MUTANTS, caught, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="only mutants whose name contains one of these")
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--examples", type=int, default=40)
    parser.add_argument("--defaults", action="store_true",
                        help="check focused mutants with the default features too")
    parser.add_argument("--random-only", action="store_true",
                        help="leave out the fixed kernel-sized default calls")
    args = parser.parse_args(argv)
    if args.random_only:
        _without_fixed_kernel_sized_calls()
    load_profile("ci")  # the corpus test's settings under CI (seeds make every run reproducible)
    torch.set_num_threads(1)
    print(f"| mutant | caught | failed | median examples to failure |  "
          f"<!-- {args.seeds} seeds x {args.examples} examples -->")
    print("|---|---|---|---|")
    for m in MUTANTS:
        if args.names and not any(n in m.name for n in args.names):
            continue
        if args.defaults:
            m = dataclasses.replace(m, kwargs={k: v for k, v in m.kwargs.items()
                                               if k not in ("features", "reductions")})
        n_caught = n_failed = 0
        used = []
        for seed in range(args.seeds):
            report = run(m, seed, examples=args.examples)
            n_caught += caught(m, report)
            n_failed += not report.passed
            if not report.passed:
                used.append(report.examples)
        median = statistics.median(used) if used else "-"
        print(f"| `{m.name}` | {n_caught}/{args.seeds} | {n_failed}/{args.seeds} | {median} |",
              flush=True)
    return 0


def _without_fixed_kernel_sized_calls() -> None:
    """Make every op's fixed default calls leave out their kernel-sized ones (``long=False``)."""
    from refllm.testing.cross_entropy import strategy as cross_entropy
    from refllm.testing.mse import strategy as mse
    from refllm.testing.multihead import strategy as multihead
    from refllm.testing.optimizer import strategy as optimizer
    from refllm.testing.sdpa import strategy as sdpa

    def short(f: Any) -> Any:
        return lambda *a, **k: f(*a, **{**k, "long": False})

    for module, name in ((sdpa, "sdpa_default_calls"),
                         (cross_entropy, "cross_entropy_default_calls"),
                         (mse, "mse_default_calls"), (multihead, "multihead_default_calls"),
                         (optimizer, "optimizer_default_problems")):
        setattr(module, name, short(getattr(module, name)))


if __name__ == "__main__":
    sys.exit(main())
