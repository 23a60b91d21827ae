"""Train a small GPT to predict the next token, and record how it went.

A run is described by a JSON config (every key is optional; see the example below, or print the
full default config with --print-example-config). The run writes into its output folder:

  records.jsonl            one JSON object per line: "eval" records as it goes, one "run" record
                           at the end (config, versions, hardware, corpus hash, losses, time)
  checkpoint.safetensors   model, optimizer, schedule step, RNG states (for --resume)

Example (learns the built-in corpus of Python's standard library, bytes as tokens, ~1 minute):

  $ cat > run.json <<'EOF'
  {"model": {"n_layer": 2, "n_head": 2, "d_model": 64},
   "data": "stdlib", "tokenizer": "bytes", "max_bytes": 2000000,
   "batch_size": 16, "seq_len": 64, "max_steps": 500,
   "lr": 3e-3, "warmup_steps": 50, "eval_interval": 100, "checkpoint_interval": 100}
  EOF
  $ refllm train --config run.json --out runs/small
  $ refllm train --config run.json --out runs/small --resume     # continue after a crash
  $ refllm train --config run.json --set lr=1e-3 --set model.d_model=32 --out runs/narrow

Several processes (data parallel, gloo on CPU, NCCL on GPUs):

  $ torchrun --standalone --nproc_per_node=2 -m refllm train --config run.json --out runs/ddp

--resume continues an unfinished run from its checkpoint: bit-identical to a run never stopped
at the same intra-op thread count on the same machine (another thread count or device warns).
A run that already finished is refused; --resume --force trains it again from step 0.

Exit status: 0 when the run finished, 1 when it diverged (loss non-finite or exploding),
2 on a usage, input or environment error, with one line on stderr (an unknown key, a bad value,
a missing file, a checkpoint of another config or a damaged one, a finished run to --resume),
70 on an internal error (a bug: a traceback), 130 when interrupted (Ctrl-C).
See docs/training.md for the objective, the schedule, the record fields and what survives a kill.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="RUN.json",
                        help="the run's JSON config (default: the built-in defaults)")
    parser.add_argument("--out", metavar="DIR",
                        help="output folder for records and checkpoints "
                             "(default: runs/<config file name>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the unfinished run in --out from its checkpoint "
                             "(bit-identical at the same thread count and machine); a finished "
                             "run is refused")
    parser.add_argument("--force", action="store_true",
                        help="with --resume: train a run that already finished again from step "
                             "0, with the same config (its new records follow the old ones)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (JSON value; nested with dots: "
                             "model.d_model=64); repeatable")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--print-example-config", action="store_true",
                        help="print the full default config as JSON and exit")


def _read_config_file(name: str) -> dict:
    path = pathlib.Path(name)
    if path.is_dir():
        raise ValueError(f"--config {name!r} is a folder, not a JSON file")
    if not path.exists():
        raise ValueError(f"--config {name!r}: no such file")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"--config {name!r} is not UTF-8 text (byte {exc.start}): expected a "
                         f"JSON file") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"--config {name!r} is not valid JSON: {exc}") from None
    if not isinstance(d, dict):
        raise ValueError(f"--config {name!r} holds a JSON {_json_kind(d)}; expected one JSON "
                         f"object of TrainConfig keys (refllm train --print-example-config "
                         f"prints one)")
    return d


def _json_kind(value: object) -> str:
    kinds = {list: "list", str: "string", bool: "boolean", int: "number", float: "number",
             type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _config(args: argparse.Namespace):
    """The run's TrainConfig: the file, then the --set overrides; every bad input a ValueError
    naming where it came from (--config or --set), the key, the value and what is expected."""
    from refllm.train.config import TrainConfig, apply_overrides

    d = _read_config_file(args.config) if args.config else {}
    try:
        base = TrainConfig.from_dict(d).to_dict()  # defaults filled in: model.x=... is a change
    except ValueError as exc:
        raise ValueError(f"--config {args.config!r}: {exc}") from None
    if not args.set:
        return TrainConfig.from_dict(base)
    try:
        return TrainConfig.from_dict(apply_overrides(base, args.set))
    except ValueError as exc:
        culprits = [s for s in args.set if _fails(base, s)] or args.set  # one, or their mix
        shown = " ".join(f"--set {s}" for s in culprits)
        raise ValueError(f"{shown}: {exc}") from None


def _fails(base: dict, override: str) -> bool:
    from refllm.train.config import TrainConfig, apply_overrides

    try:
        TrainConfig.from_dict(apply_overrides(base, [override]))
    except ValueError:
        return True
    return False


def run(args: argparse.Namespace) -> int:
    from refllm.train.config import TrainConfig

    if args.print_example_config:
        print(json.dumps(TrainConfig().to_dict(), indent=2))
        return 0
    if args.force and not args.resume:
        raise ValueError("--force trains a finished run again and needs --resume")
    config = _config(args)
    out = args.out or str(pathlib.Path("runs") / pathlib.Path(args.config or "default").stem)
    from refllm.train.loop import train

    result = train(config, out, resume=args.resume, force=args.force,
                   progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{result.status}: {result.steps} steps, {result.tokens:,} tokens, "
              f"{result.time_s:.1f} s; final validation loss {result.final_val_loss:.4f} "
              f"nats/token ({result.final_val_bits:.4f} bits); records: {result.records_path}",
              file=sys.stdout)
    return 0 if result.status == "ok" else 1
