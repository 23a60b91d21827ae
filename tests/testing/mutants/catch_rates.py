"""How often the oracle catches each mutant: one check per seed, default features, no shrinking.

    python -m tests.testing.mutants.catch_rates --seeds 16 --examples 40 [--defaults] [name ...]

prints a Markdown table: per mutant, in how many of the seeds 0..N-1 the check failed on one of
the properties the bug breaks (``caught``), and in how many it failed at all (``failed``), and the
median number of examples the failing checks drew. ``--defaults`` also runs the focused mutants
of test_mutants.py with the default features. Seeds give independent Hypothesis runs, so
``caught / seeds`` estimates the chance that one run of the default size finds the bug.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys

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
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
