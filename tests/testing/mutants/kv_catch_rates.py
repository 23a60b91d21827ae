"""How often check_kv_cache catches each KV-cache mutant: a check per seed, defaults, no shrinking.

    python -m tests.testing.mutants.kv_catch_rates --seeds 16 --examples 40

prints a Markdown table like catch_rates.py: per mutant, in how many of the seeds 0..N-1 the check
failed on "incremental logits" (``caught``) or at all (``failed``), and the median number of
examples the failing checks drew; then the false alarms of the correct decoders over the same
seeds (refllm's GPT, SteppedGPT, and GPT-2 through the adapter when transformers is installed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch

from refllm.model import GPT
from refllm.testing import check_kv_cache, load_profile
from tests.testing.mutants import kv_cache_mutants as K
from tests.testing.mutants.test_mutants import settings_profile
from tests.testing.test_check_kv_cache import NO_SHRINK


def rate(model, seeds: int, examples: int) -> tuple[int, int, list[int]]:
    caught = failed = 0
    used = []
    for seed in range(seeds):
        with settings_profile(**NO_SHRINK):
            report = check_kv_cache(model, seed=seed, examples=examples, raise_on_failure=False)
        caught += "incremental logits" in report.failed_properties
        failed += not report.passed
        if not report.passed:
            used.append(report.examples)
    return caught, failed, used


def gpt2():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from refllm.model.hf import to_hf
    except ImportError:
        return None
    try:
        return to_hf(K.build(GPT))
    except ImportError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--examples", type=int, default=40)
    args = parser.parse_args(argv)
    load_profile("ci")
    torch.set_num_threads(1)
    print(f"| mutant | caught | failed | median examples to failure |  "
          f"<!-- {args.seeds} seeds x {args.examples} examples -->")
    print("|---|---|---|---|")
    for cls in K.MUTANTS:
        caught, failed, used = rate(K.build(cls), args.seeds, args.examples)
        median = statistics.median(used) if used else "-"
        print(f"| `{cls.__name__}` | {caught}/{args.seeds} | {failed}/{args.seeds} | {median} |",
              flush=True)
    correct = {"GPT": K.build(GPT), "SteppedGPT": K.build(K.SteppedGPT), "GPT2LMHeadModel": gpt2()}
    for name, model in correct.items():
        if model is not None:
            _, failed, _ = rate(model, args.seeds, args.examples)
            print(f"| `{name}` (correct) | - | {failed}/{args.seeds} (false alarms) | - |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
