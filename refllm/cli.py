"""The ``refllm`` command line (also ``python -m refllm``).

    refllm check sdpa mypkg.attn:flash_attention --dtype bf16 --device cuda --examples 500
    refllm check cross-entropy mypkg.losses:ce --reductions mean   (also: mse)
    refllm check optimizer mypkg.optim:AdamW --like adamw
    refllm check optimizer mypkg.optim:Adam --like adam --set maximize=false --set lr=0.01
    refllm check multihead mypkg.attn:MHA   (a torch.nn.MultiheadAttention-compatible class)
    refllm demo        # PyTorch's own ops checked against refllm in float32
    refllm train --config run.json [--resume]     # next-token training (refllm.train)
    refllm scaling --preset cpu                   # the scaling sweep, fit and verdict
    refllm fit RECORDS.jsonl                      # fit a scaling law to records or a CSV

``--seed N`` fixes the drawn examples (the same examples in any program and thread count).
The ops, their own options (``--features``, ``--reductions``, ``--like``) and the demo's rows come
from the op records, :mod:`refllm.testing.registry`; ``refllm check`` does not need pytest.

Exit status, the same for every subcommand (`EXIT`), so that a script can tell a result from a
crash:

    0    success: every check agrees, the run finished, the verdict passes
    1    a negative result: a disagreement (a timeout included), a run that diverged, a verdict
         that fails
    2    a usage, input or environment error: an unknown option, dtype, feature or reduction, a
         device this machine does not have, a target that cannot be imported, a bad config or
         records file, a missing file, a full disk; one line on stderr (``refllm: error: ...``)
    3    ``refllm check``: the target refused every drawn input as unsupported
         (NotImplementedError, or a contract's errors): nothing was judged, so nothing passed
    70   an internal error, a bug in refllm (EX_SOFTWARE): its traceback, then one line
    130  interrupted (Ctrl-C): one line
    141  the output pipe was closed (``refllm demo | head``): nothing on stderr; 128 + SIGPIPE,
         what the shell reports for a program ended by a closed pipe, since nothing went wrong
         with the input (not 2) and a script with ``pipefail`` sees the pipe, as for any tool

A ValueError or OSError reaching the top is the user's input or environment (every input check in
refllm raises ValueError, or TypeError converted at the command's parsing); anything else is a bug.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from refllm.testing.registry import RECORDS, OpRecord, choice_keywords

EXIT = {"ok": 0, "negative": 1, "usage": 2, "unsupported": 3, "internal": 70,
        "interrupted": 130, "broken_pipe": 141}
"""The exit statuses of every subcommand, defined once here (the module docstring says what
each means); a subcommand's ``run`` returns 0, 1 or 3, `main` gives the others."""


def demo_rows() -> list[tuple[str, OpRecord, str, dict[str, Any]]]:
    """``refllm demo``'s rows: PyTorch's own implementations listed in the op records."""
    return [(demo.label, record, demo.target, dict(demo.kwargs))
            for record in RECORDS.values() for demo in record.demos]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refllm", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="check an implementation against refllm")
    check.add_argument("op", choices=list(RECORDS))  # one per op record
    check.add_argument("target", help="module:name of the implementation: " + "; ".join(
        f"{r.name}: {r.metavar} ({r.signature})" for r in RECORDS.values()))
    from refllm.testing.engine.options import CheckOptions

    for field in CheckOptions.flags():  # every check's options, declared once
        repeat = {"action": "append", "metavar": "NAME=VALUE", "default": None} \
            if field.metadata["repeat"] else {"default": field.default}
        check.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name,
                           type=field.metadata["flag"], help=field.metadata["help"], **repeat)
    for keyword in choice_keywords():  # each op's own options: --features, --reductions, --like
        takers = [r for r in RECORDS.values() if r.choice(keyword)]
        helps = {str(getattr(r.choice(keyword), "help", "")) for r in takers}
        text = helps.pop() if len(helps) == 1 else (
            f"comma-separated {keyword} (default: each op's own; a wrong name lists the names)")
        check.add_argument(f"--{keyword}", default=None,
                           help=f"for {', '.join(r.name for r in takers)}: {text}")
    demo = sub.add_parser("demo", help="check PyTorch's own ops against refllm (float32)")
    demo.add_argument("--examples", type=int, default=200)
    demo.add_argument("--seed", type=int, default=0)
    for name, module, help_text in SUBCOMMANDS:
        _add_subcommand(sub, name, module, help_text)
    return parser


# Subcommands that live with their layer: each module has ``add_arguments(parser)`` and
# ``run(args) -> int`` and is imported only when the subcommand runs (``refllm check`` stays fast).
SUBCOMMANDS = [
    ("train", "refllm.train.cli", "train a GPT on next-token prediction"),
    ("scaling", "refllm.scaling.cli", "run a scaling sweep, fit L(N) and print the verdict"),
    ("fit", "refllm.scaling.fit_cli", "fit a scaling law to records (JSONL) or a CSV"),
]


def _add_subcommand(sub: Any, name: str, module: str, help_text: str) -> None:
    import importlib

    mod = importlib.import_module(module)
    parser = sub.add_parser(name, help=help_text, description=mod.__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    mod.add_arguments(parser)
    parser.set_defaults(_module=module)


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` (default ``sys.argv[1:]``); return its exit status (`EXIT`).

    A SystemExit raised inside a subcommand passes through unchanged."""
    try:
        try:
            args = _parser().parse_args(argv)
        except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
            return exc.code if isinstance(exc.code, int) else EXIT["usage"] if exc.code else 0
        status = _dispatch(args)
        sys.stdout.flush()  # a closed pipe found here, not in the interpreter's last flush
        return status
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT["broken_pipe"]
    except KeyboardInterrupt:
        print("refllm: interrupted", file=sys.stderr)
        return EXIT["interrupted"]
    except (ValueError, OSError) as exc:  # the input or the environment, not refllm
        print(f"refllm: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT["usage"]
    except Exception as exc:  # a bug: keep everything needed to find it
        traceback.print_exc()
        print(f"refllm: internal error (a bug in refllm, please report it): "
              f"{type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return EXIT["internal"]


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        return _demo(args)
    if getattr(args, "_module", None):
        import importlib

        return int(importlib.import_module(args._module).run(args))
    return _check(args)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) not in text:
        text += f": {exc.filename!r}"
    return text


def _quiet_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so the interpreter's last flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _check(args: argparse.Namespace) -> int:
    from refllm.testing.engine.options import CheckOptions
    from refllm.testing.engine.targets import load

    record = RECORDS[args.op]
    options = CheckOptions(**{f.name: getattr(args, f.name) for f in CheckOptions.flags()},
                           choices={k: getattr(args, k) for k in choice_keywords()})
    kwargs = options.kwargs(record)  # every bad option refused before the target is imported
    load(args.target)  # fail early, with the reason, when the target cannot be imported
    report = record.run(args.target, raise_on_failure=False, **kwargs)
    print(report)
    return EXIT[{"passed": "ok", "failed": "negative", "unsupported": "unsupported"}[
        report.verdict]]


def _demo(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    """Check PyTorch's own ops; one table row per op, the full report of any that disagrees."""
    import warnings

    import torch

    out(f"refllm demo: PyTorch {torch.__version__}'s own ops against refllm's float64 "
        f"references, in float32, {args.examples} examples each (seed {args.seed})\n")
    out(f"  {'op':<32} {'verdict':<10} {'examples':>8} {'properties':>10} {'time':>7}")
    failed = []
    rows = demo_rows()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny inputs: threads only cost time (and change nothing checked)
    try:
        for label, record, target, extra in rows:
            start = time.perf_counter()
            with warnings.catch_warnings():  # PyTorch's deprecation warnings on drawn masks
                warnings.simplefilter("ignore")
                report = record.run(target, dtype=torch.float32, examples=args.examples,
                                    seed=args.seed, raise_on_failure=False, **extra)
            took = time.perf_counter() - start
            verdict = "agrees" if report.passed else "DISAGREES"
            checked = sum(p.examples > 0 for p in report.properties)
            out(f"  {label:<32} {verdict:<10} {report.examples:>8} {checked:>10} {took:>6.1f}s")
            if not report.passed:
                failed.append((label, report))
    finally:
        torch.set_num_threads(threads)
    for label, report in failed:
        out(f"\n{label}:\n{report}")
    if failed:
        out(f"\n{len(failed)} of {len(rows)} ops DISAGREE with refllm")
        return EXIT["negative"]
    out(f"\nall {len(rows)} ops agree with refllm (values and gradients, float32)")
    return EXIT["ok"]


if __name__ == "__main__":
    raise SystemExit(main())
