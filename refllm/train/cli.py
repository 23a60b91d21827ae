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

Exit status: 0 when the run finished, 1 when it diverged (loss non-finite or exploding),
2 on a usage error (unknown key, bad value, a checkpoint of another config).
See docs/training.md for the objective, the schedule and the record fields.
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
                        help="continue the run in --out from its checkpoint (exactly)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (JSON value; nested with dots: "
                             "model.d_model=64); repeatable")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--print-example-config", action="store_true",
                        help="print the full default config as JSON and exit")


def _config(args: argparse.Namespace):
    from refllm.train.config import TrainConfig, apply_overrides

    d = json.loads(pathlib.Path(args.config).read_text()) if args.config else {}
    if not isinstance(d, dict):
        raise ValueError(f"config file {args.config!r} must hold one JSON object")
    base = TrainConfig.from_dict(d).to_dict()  # defaults filled in, so model.x=... is a change
    return TrainConfig.from_dict(apply_overrides(base, args.set))


def run(args: argparse.Namespace) -> int:
    from refllm.train.config import TrainConfig

    if args.print_example_config:
        print(json.dumps(TrainConfig().to_dict(), indent=2))
        return 0
    if args.config and not pathlib.Path(args.config).is_file():
        raise ValueError(f"--config {args.config!r}: no such file")
    try:
        config = _config(args)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--config {args.config!r} is not valid JSON: {exc}") from None
    out = args.out or str(pathlib.Path("runs") / pathlib.Path(args.config or "default").stem)
    from refllm.train.loop import train

    result = train(config, out, resume=args.resume, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{result.status}: {result.steps} steps, {result.tokens:,} tokens, "
              f"{result.time_s:.1f} s; final validation loss {result.final_val_loss:.4f} "
              f"nats/token ({result.final_val_bits:.4f} bits); records: {result.records_path}",
              file=sys.stdout)
    return 0 if result.status == "ok" else 1
