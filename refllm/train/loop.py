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
import pathlib
import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

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
          progress: bool = True, data: Any = None) -> RunResult:
    """Train ``GPT(config.model)`` on ``config.data``; write records and checkpoints to ``out_dir``.

    ``resume``: continue from ``out_dir``'s checkpoint (exactly: the same losses as a run never
    stopped); without one, start afresh. Without ``resume``, an ``out_dir`` that already holds a run
    is an error (nothing is overwritten). ``progress``: a tqdm bar on a terminal (rank 0 only).
    ``data``: an already loaded `refllm.data.TokenData` (saves reloading it for every run of a
    sweep); by default ``load_tokens(config.data, ...)``.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    out = pathlib.Path(out_dir)
    dist, device = setup(config.device)
    try:
        return _Run(config, out, dist, device, data, resume).go(progress)
    finally:
        teardown(dist)


def _load_data(config: TrainConfig) -> Any:
    from refllm.data import load_tokens

    return load_tokens(config.data, tokenizer=config.tokenizer, val_fraction=config.val_fraction,
                       max_bytes=config.max_bytes)


class _Run:
    def __init__(self, config: TrainConfig, out: pathlib.Path, dist: Dist, device: torch.device,
                 data: Any, resume: bool) -> None:
        self.config, self.out, self.dist, self.device = config, out, dist, device
        _refuse_to_overwrite(out, resume)
        if dist.is_main:
            out.mkdir(parents=True, exist_ok=True)
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
        if resume:
            self._resume()

    @property
    def records_path(self) -> pathlib.Path:
        return self.out / RECORDS

    def _resume(self) -> None:
        path = ckpt.checkpoint_path(self.out)
        if not path.exists():
            return
        state, tensors = ckpt.read_checkpoint(path)
        diff = ckpt.config_differences(state["config"], self.config.to_dict(),
                                       RESUMABLE_CHANGES)
        if diff:
            shown = {k: (state["config"].get(k), self.config.to_dict().get(k)) for k in diff}
            raise ckpt.CheckpointError(
                f"checkpoint {str(path)!r} was made with a different config; differing keys "
                f"(checkpoint, now): {shown}")
        ckpt.restore(state, tensors, model=self.model, optimizer=self.optimizer)
        self.step = state["step"]
        extra = state["extra"]
        self.train_losses = [tuple(x) for x in extra["train_losses"]]
        self.val_losses = [tuple(x) for x in extra["val_losses"]]
        self.elapsed, self.resumes = extra["time_s"], extra["resumes"] + 1

    def go(self, progress: bool) -> RunResult:
        c = self.config
        done = finished_runs(self.out) if self.step >= c.max_steps else []
        if done:  # resumed a run that had finished: nothing to do
            return _result(done[-1], self.out)
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
        if status == "ok":
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
                 "time_s": elapsed, "resumes": self.resumes}
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


def _refuse_to_overwrite(out: pathlib.Path, resume: bool) -> None:
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

