"""The training loop: next-token cross-entropy, AdamW/SGD, warmup + cosine, clipping, records.

One optimizer step t (counted from 0) does, in order (nanoGPT's ``train.py``, Karpathy 2022):

1. η_t = warmup_cosine(t; lr, min_lr, warmup_steps, decay_steps = max_steps) into every group;
2. the global batch of step t (`refllm.train.batches`: a function of (seed, t)), this process's
   rows, in micro-batches; gradients of the token-weighted loss (`refllm.train.objective`);
3. clip the global gradient norm to ``grad_clip`` (``torch.nn.utils.clip_grad_norm_``);
4. the optimizer's step, gradients set to None;
5. every ``log_interval`` steps: the step's training loss (one device sync), the divergence check
   (non-finite, or above 2 ln V + 1 nats: twice the uniform guess and then some; the run stops
   with status "diverged"); every ``eval_interval`` steps and at the end: the validation loss on
   the fixed slice, an "eval" record; every ``checkpoint_interval`` steps: a checkpoint.

Step numbers in records count steps *done*: the training loss logged at step s is that of the batch
of the s-th update, the validation loss at step s is measured after s updates.
"""

from __future__ import annotations

import math
import os
import pathlib
import random
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from refllm._io import remove_stale_temporaries
from refllm._validation import require_bool
from refllm.ops.schedules import warmup_cosine
from refllm.train import checkpoint as ckpt
from refllm.train.batches import check_fits, shard, train_batch, val_windows
from refllm.train.build import autocast_context, build_model, build_optimizer, describe_run
from refllm.train.config import RESUMABLE_CHANGES, TrainConfig
from refllm.train.distributed import Dist, all_reduce_sum, check_divisible, setup, teardown, wrap
from refllm.train.evaluate import evaluate
from refllm.train.objective import accumulate_gradients, count_tokens
from refllm.train.progress import Progress
from refllm.train.records import append_record, read_records

RECORDS = "records.jsonl"


@dataclass
class RunResult:
    """What a run produced; ``record`` is the full "run" record written to ``records_path``."""

    status: str                        # "ok" | "diverged"
    final_val_loss: float              # nats/token on the fixed validation slice (nan: diverged)
    final_train_loss: float            # nats/token, the last logged step
    steps: int                         # optimizer steps done
    tokens: int                        # training tokens seen: steps * batch_size * seq_len
    flops: float                       # 3 * flops_per_token(kaplan) * tokens (fwd + bwd)
    n_params: int
    n_params_non_embedding: int
    time_s: float
    train_losses: list[tuple[int, float]]
    val_losses: list[tuple[int, float]]
    out_dir: pathlib.Path
    records_path: pathlib.Path
    checkpoint_path: pathlib.Path | None
    record: dict[str, Any] = field(repr=False)

    @property
    def final_val_bits(self) -> float:
        """The final validation loss in bits per token."""
        return self.final_val_loss / math.log(2)


def train(config: TrainConfig, out_dir: str | pathlib.Path, *, resume: bool = False,
          force: bool = False, progress: bool = True, data: Any = None) -> RunResult:
    """Train ``GPT(config.model)`` on ``config.data``; write records and checkpoints to ``out_dir``.

    ``resume``: continue the unfinished run of ``out_dir`` from its checkpoint (bit-identical to a
    run never stopped, at the same thread count on the same machine; another thread count or
    device is a `CheckpointWarning`); without a checkpoint, start from step 0. A run that already
    finished (its "run" record is written) is refused with a ValueError saying so, unless
    ``force``: then it is trained again from step 0 with the same config, its records appended
    after the old ones (`finished_runs` lists both; the last counts). Without ``resume``, an
    ``out_dir`` that already holds a run is an error (nothing is overwritten). ``progress``: a
    tqdm bar on a terminal (rank 0 only). ``data``: an already loaded `refllm.data.TokenData`
    (saves reloading it for every run of a sweep); by default ``load_tokens(config.data, ...)``.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    require_bool("resume", resume)
    require_bool("force", force)
    if force and not resume:
        raise ValueError("force=True (--force) trains a finished run again and needs "
                         "resume=True (--resume)")
    out = pathlib.Path(out_dir)
    _check_out_dir(out, resume)
    if data is None:
        _check_paths(config)
    dist, device = setup(config.device)
    try:
        return _Run(config, out, dist, device, data, resume, force).go(progress)
    finally:
        teardown(dist)


def _check_paths(config: TrainConfig) -> None:
    """A missing corpus or tokenizer file, named before anything is made or loaded."""
    source = config.data
    if source != "stdlib" and not source.startswith("markov:") and not os.path.exists(source):
        raise FileNotFoundError(
            f"data: the corpus {source!r} does not exist (data is 'stdlib', "
            f"'markov:vocab=V,seed=S,tokens=N', or the path of a UTF-8 text file or of a folder "
            f"of them)")
    if config.tokenizer != "bytes" and not os.path.isfile(config.tokenizer):
        what = "is a folder" if os.path.isdir(config.tokenizer) else "does not exist"
        raise FileNotFoundError(
            f"tokenizer: {config.tokenizer!r} {what} (tokenizer is 'bytes' or the path of a BPE "
            f"tokenizer file saved by refllm.data.BPETokenizer.save)")


def _load_data(config: TrainConfig) -> Any:
    from refllm.data import load_tokens

    return load_tokens(config.data, tokenizer=config.tokenizer, val_fraction=config.val_fraction,
                       max_bytes=config.max_bytes)


class _Run:
    def __init__(self, config: TrainConfig, out: pathlib.Path, dist: Dist, device: torch.device,
                 data: Any, resume: bool, force: bool) -> None:
        self.config, self.out, self.dist, self.device = config, out, dist, device
        if dist.is_main:
            out.mkdir(parents=True, exist_ok=True)
            _remove_stale_temporaries(ckpt.checkpoint_path(out))
        # runs_before: the "run" records in the folder when this training began (0 unless a
        # finished run is trained again); its checkpoints carry it, so a later resume tells a
        # checkpoint of this training from one of the finished run
        self.runs_before = 0
        saved = self._resume_point(force) if resume else None
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        random.seed(config.seed)
        self.data = _load_data(config) if data is None else data
        check_fits(len(self.data.train), len(self.data.val), batch_size=config.batch_size,
                   seq_len=config.seq_len)
        self.n_micro = check_divisible(config.batch_size, config.micro_batch_size or
                                       config.batch_size, dist)
        self.model, self.model_config = build_model(config, self.data.vocab_size, device)
        self.optimizer = build_optimizer(config, self.model)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.net: torch.nn.Module = torch.compile(self.model) if config.compile \
            else self.model  # type: ignore[assignment]
        self.ddp = wrap(self.net, dist, device)
        self.autocast = autocast_context(config.autocast, device)
        idx, targets = val_windows(self.data.val, seq_len=config.seq_len,
                                   eval_tokens=config.eval_tokens)
        self.val = idx.to(device), targets.to(device)
        self.step, self.elapsed, self.resumes = 0, 0.0, 0
        self.train_losses: list[tuple[int, float]] = []
        self.val_losses: list[tuple[int, float]] = []
        if saved is not None:
            self._restore(*saved)

    @property
    def records_path(self) -> pathlib.Path:
        return self.out / RECORDS

    def _resume_point(self, force: bool) -> tuple[dict, dict[str, torch.Tensor]] | None:
        """The checkpoint to continue from (read and verified), or None to start at step 0; a
        finished run is refused unless ``force``."""
        done = finished_runs(self.out)
        self.runs_before = len(done)
        path = ckpt.checkpoint_path(self.out)
        if done:
            header = ckpt.read_header(path) if path.exists() else None
            extra = header.get("extra") if header is not None else None
            ongoing = isinstance(extra, dict) and extra.get("runs_before", 0) == len(done)
            if not ongoing:  # the checkpoint (if any) is the finished run's, or older
                if not force:
                    raise ValueError(_already_finished(self.out, done[-1]))
                self._check_same_run(done[-1])
                return None
        if not path.exists():
            return None
        state, tensors = ckpt.read_checkpoint(path)
        current = self.config.to_dict()
        diff = ckpt.config_differences(state["config"], current, RESUMABLE_CHANGES)
        if diff:
            shown = {k: (state["config"].get(k), current.get(k)) for k in diff}
            raise ckpt.CheckpointError(
                f"checkpoint {str(path)!r} was made with a different config; differing keys "
                f"(checkpoint, now): {shown}")
        return state, tensors

    def _check_same_run(self, record: dict) -> None:
        saved, current = record.get("config"), self.config.to_dict()
        if not isinstance(saved, dict):
            return
        diff = ckpt.config_differences(saved, current, RESUMABLE_CHANGES)
        if diff:
            shown = {k: (saved.get(k), current.get(k)) for k in diff}
            raise ValueError(
                f"force=True (--force) trains the finished run of out_dir {str(self.out)!r} "
                f"again with its own config, but this config differs from it; differing keys "
                f"(finished run, now): {shown}; choose another out_dir for another run")

    def _restore(self, state: dict, tensors: dict[str, torch.Tensor]) -> None:
        ckpt.restore(state, tensors, model=self.model, optimizer=self.optimizer)
        self.step = state["step"]
        extra = state["extra"]
        self.train_losses = [tuple(x) for x in extra["train_losses"]]
        self.val_losses = [tuple(x) for x in extra["val_losses"]]
        self.elapsed, self.resumes = extra["time_s"], extra["resumes"] + 1
        if self.dist.is_main:
            _warn_if_not_bit_identical(state, self.device, ckpt.checkpoint_path(self.out))

    def go(self, progress: bool) -> RunResult:
        c = self.config
        bar = Progress(c.max_steps, self.step, enabled=progress and self.dist.is_main)
        status, start = "ok", time.perf_counter() - self.elapsed
        last_log = (time.perf_counter(), self.step)
        with bar:
            while self.step < c.max_steps:
                loss_sum, n_tokens = self._one_step()
                self.step += 1
                if self.step % c.log_interval == 0 or self.step == c.max_steps:
                    loss = float(all_reduce_sum(loss_sum, self.dist)) / n_tokens
                    self.train_losses.append((self.step, loss))
                    now = time.perf_counter()
                    rate = ((self.step - last_log[1]) * c.batch_size * c.seq_len
                            / (now - last_log[0]))
                    bar.update(self.step, loss, rate)
                    last_log = (now, self.step)
                    if _diverged(loss, self.data.vocab_size):
                        status = "diverged"
                        break
                if c.eval_interval and self.step % c.eval_interval == 0 \
                        and self.step < c.max_steps:
                    self._evaluate()
                if c.checkpoint_interval and self.step % c.checkpoint_interval == 0 \
                        and self.step < c.max_steps:
                    self._checkpoint(time.perf_counter() - start)
        # resumed from the final checkpoint (killed before the "run" record): evaluated already
        if status == "ok" and not (self.val_losses and self.val_losses[-1][0] == self.step):
            self._evaluate()
        self.elapsed = time.perf_counter() - start
        if c.checkpoint_final and status == "ok":
            self._checkpoint(self.elapsed)
        return self._finish(status)

    def _one_step(self) -> tuple[torch.Tensor, int]:
        c = self.config
        lr = warmup_cosine(self.step, max_lr=c.lr, min_lr=c.floor_lr,
                           warmup_steps=c.warmup_steps, decay_steps=c.max_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        idx, targets = train_batch(self.data.train, seed=c.seed, step=self.step,
                                   batch_size=c.batch_size, seq_len=c.seq_len)
        n_tokens = count_tokens(targets)
        idx = shard(idx, self.dist.rank, self.dist.world_size).to(self.device, non_blocking=True)
        targets = shard(targets, self.dist.rank, self.dist.world_size).to(self.device,
                                                                           non_blocking=True)
        micro = list(zip(idx.chunk(self.n_micro), targets.chunk(self.n_micro)))
        loss_sum = accumulate_gradients(self.ddp, micro, n_tokens, impl=c.loss_impl,
                                        world_size=self.dist.world_size, autocast=self.autocast)
        if c.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, c.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_sum, n_tokens

    def _evaluate(self) -> None:
        c = self.config
        loss = evaluate(self.net, *self.val, batch_size=c.micro_batch_size or c.batch_size,
                        impl=c.loss_impl, dist=self.dist, autocast=self.autocast)
        self.val_losses.append((self.step, loss))
        if self.dist.is_main:
            append_record(self.records_path, {"kind": "eval", "step": self.step,
                                              "tokens": self.step * c.batch_size * c.seq_len,
                                              "val_loss": loss})

    def _checkpoint(self, elapsed: float) -> None:
        if not self.dist.is_main:
            return
        extra = {"train_losses": self.train_losses, "val_losses": self.val_losses,
                 "time_s": elapsed, "resumes": self.resumes, "runs_before": self.runs_before}
        ckpt.save_checkpoint(self.out, model=self.model, optimizer=self.optimizer,
                             step=self.step, config=self.config.to_dict(), extra=extra)

    def _finish(self, status: str) -> RunResult:
        c = self.config
        described = describe_run(c, self.model_config, self.data, self.device, self.val[0].numel())
        final_val = self.val_losses[-1][1] if status == "ok" else math.nan
        tokens = self.step * c.batch_size * c.seq_len
        record = {"kind": "run", "status": status, **described, "steps": self.step,
                  "tokens": tokens, "flops": described["flops_per_token_train"] * tokens,
                  "train_losses": self.train_losses, "val_losses": self.val_losses,
                  "final_val_loss": final_val, "final_val_bits": final_val / math.log(2),
                  "final_train_loss": self.train_losses[-1][1], "time_s": self.elapsed,
                  "world_size": self.dist.world_size, "resumes": self.resumes}
        if self.dist.is_main:
            append_record(self.records_path, record)
        return _result(record, self.out)


def _result(record: dict, out: pathlib.Path) -> RunResult:
    path = ckpt.checkpoint_path(out)
    return RunResult(status=record["status"], final_val_loss=record["final_val_loss"],
                     final_train_loss=record["final_train_loss"], steps=record["steps"],
                     tokens=record["tokens"], flops=record["flops"], n_params=record["n_params"],
                     n_params_non_embedding=record["n_params_non_embedding"],
                     time_s=record["time_s"],
                     train_losses=[tuple(x) for x in record["train_losses"]],
                     val_losses=[tuple(x) for x in record["val_losses"]], out_dir=out,
                     records_path=out / RECORDS,
                     checkpoint_path=path if path.exists() else None, record=record)


def _diverged(loss: float, vocab_size: int) -> bool:
    """Non-finite, or above 2 ln V + 1 nats (twice the loss of the uniform guess, plus one)."""
    return not math.isfinite(loss) or loss > 2 * math.log(vocab_size) + 1


def _already_finished(out: pathlib.Path, record: dict) -> str:
    loss = record.get("final_val_loss")
    shown = f"{loss:.4f}" if isinstance(loss, (int, float)) else repr(loss)
    return (f"out_dir {str(out)!r} holds a run that already finished (status "
            f"{record.get('status')!r}, {record.get('steps')} steps, final validation loss "
            f"{shown} nats/token, in {RECORDS}): there is nothing to resume; pass force=True "
            f"(--force) to train it again from step 0, or choose another out_dir")


def _warn_if_not_bit_identical(state: dict, device: torch.device, path: pathlib.Path) -> None:
    """A `CheckpointWarning` when the checkpoint was written at another thread count or device."""
    threads, now = state.get("threads"), torch.get_num_threads()
    if threads is not None and threads != now:
        warnings.warn(f"checkpoint {str(path)!r} was written with {threads} intra-op threads, "
                      f"this process has {now}: the continuation will not be bit-identical to an "
                      f"unbroken run (float sums are reduced in another order); "
                      f"OMP_NUM_THREADS={threads} (torch.set_num_threads) matches it",
                      ckpt.CheckpointWarning, stacklevel=4)
    saved = state.get("device")
    if saved is not None and saved != device.type:
        warnings.warn(f"checkpoint {str(path)!r} was written on {saved}, this run is on "
                      f"{device.type}: the continuation will not be bit-identical to an unbroken "
                      f"run", ckpt.CheckpointWarning, stacklevel=4)


def _remove_stale_temporaries(path: pathlib.Path) -> None:
    removed = remove_stale_temporaries(path)
    if removed:
        print(f"refllm: removed {len(removed)} temporary file(s) of a checkpoint write that was "
              f"killed: {', '.join(str(p) for p in removed)}", file=sys.stderr)


def _check_out_dir(out: pathlib.Path, resume: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir (--out) {str(out)!r} is a file, not a folder: name a folder "
                         f"for the run's records and checkpoint (it is made if missing)")
    if resume:
        return
    for name in (RECORDS, ckpt.FILENAME):
        if (out / name).exists():
            raise ValueError(f"out_dir {str(out)!r} already holds a run ({name}); pass "
                             f"resume=True (--resume) to continue it, or choose another out_dir")


def finished_runs(out_dir: str | pathlib.Path) -> list[dict]:
    """The "run" records of ``out_dir`` (empty when none)."""
    path = pathlib.Path(out_dir) / RECORDS
    return read_records(path, kind="run") if path.exists() else []

