"""The configuration of one training run: everything that decides the numbers it produces.

A run is fixed by its `TrainConfig` (and the code's version): two runs with the same config on the
same CPU produce bit-identical losses. The run length is counted in optimizer steps
(``max_steps``); the tokens seen are ``max_steps * batch_size * seq_len`` (`TrainConfig.tokens`),
so a token budget D is ``max_steps = D // (batch_size * seq_len)``.

Batch arithmetic: ``batch_size`` sequences of ``seq_len`` tokens make one optimizer step; they are
split evenly over the w processes (w = 1 without DDP), each of which processes its share
``micro_batch_size`` rows at a time (gradient accumulation over ``batch_size / (w ·
micro_batch_size)`` micro-batches). Weight decay applies to the 2-D
weights (matmul weights and embeddings) only, never to biases or LayerNorm gains.

>>> c = TrainConfig(model={"n_layer": 1, "n_head": 1, "d_model": 8}, max_steps=10)
>>> c.tokens, c.accumulation
(5120, 1)
>>> TrainConfig.from_dict({"lr": 1e-3, "learning_rate": 1})
Traceback (most recent call last):
...
ValueError: unknown TrainConfig key(s) ['learning_rate']; known keys: ...
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from dataclasses import dataclass, field
from typing import Any

from refllm._validation import require_bool, require_int, require_real

OPTIMIZERS = ("adamw", "sgd")
DEVICES = ("auto", "cpu", "cuda")
AUTOCASTS = ("auto", "bf16", "none")
LOSS_IMPLS = ("torch", "refllm")
# keys that change what is logged or saved but not one number of the training itself: a resumed run
# may change them; any other difference from the checkpoint's config is an error
RESUMABLE_CHANGES = frozenset({"log_interval", "eval_interval", "checkpoint_interval",
                               "checkpoint_final", "compile", "device"})


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``model`` holds `refllm.model.GPTConfig` keys; ``vocab_size`` may be left
    out (taken from the data) and ``n_ctx`` too (defaults to ``seq_len``)."""

    model: dict = field(default_factory=lambda: {"n_layer": 2, "n_head": 2, "d_model": 32})
    data: str = "stdlib"               # load_tokens source: "stdlib", a path, "markov:..."
    tokenizer: str = "bytes"
    val_fraction: float = 0.05
    max_bytes: int | None = None
    batch_size: int = 8                # sequences per optimizer step (the global batch)
    micro_batch_size: int | None = None  # None: batch_size (no accumulation)
    seq_len: int = 64
    max_steps: int = 1000
    optimizer: str = "adamw"           # "adamw" (refllm.nn.AdamW) or "sgd" (refllm.nn.SGD)
    lr: float = 1e-3                   # peak learning rate
    min_lr: float | None = None        # floor of the cosine; None: lr / 10
    warmup_steps: int = 0
    weight_decay: float = 0.1          # 2-D weights only
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    momentum: float = 0.9              # sgd only
    grad_clip: float | None = 1.0      # max global gradient norm; None or 0: no clipping
    eval_interval: int = 0             # steps between evaluations; 0: only at the end
    eval_tokens: int = 8192            # size of the fixed validation slice (tokens)
    seed: int = 0
    device: str = "auto"               # "auto" (cuda when available), "cpu", "cuda"
    autocast: str = "auto"             # "bf16" (CUDA or CPU), "none", "auto" (bf16 on CUDA)
    loss_impl: str = "torch"           # "torch" (F.cross_entropy) or "refllm" (refllm.ops)
    checkpoint_interval: int = 0       # steps between checkpoints; 0: none during the run
    checkpoint_final: bool = True      # write a checkpoint at the end
    log_interval: int = 10             # steps between recorded training losses
    compile: bool = False              # torch.compile the model

    def __post_init__(self) -> None:
        _check(self)

    @property
    def accumulation(self) -> int:
        """Micro-batches per optimizer step with one process."""
        return self.batch_size // (self.micro_batch_size or self.batch_size)

    @property
    def tokens(self) -> int:
        """Training tokens of the whole run: max_steps * batch_size * seq_len."""
        return self.max_steps * self.batch_size * self.seq_len

    @property
    def floor_lr(self) -> float:
        """The cosine's floor: ``min_lr``, or lr / 10 when it is None."""
        return self.lr / 10 if self.min_lr is None else self.min_lr

    def model_dict(self, vocab_size: int) -> dict:
        """The GPTConfig keys with ``vocab_size`` and ``n_ctx`` filled in."""
        d = dict(self.model)
        if d.setdefault("vocab_size", vocab_size) < vocab_size:
            raise ValueError(f"model.vocab_size={d['vocab_size']} is smaller than the data's "
                             f"vocabulary ({vocab_size} token ids)")
        d.setdefault("n_ctx", self.seq_len)
        return d

    def to_dict(self) -> dict:
        """A JSON-able dict; ``TrainConfig.from_dict(c.to_dict()) == c``."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Build from a dict (parsed JSON, ``--set`` overrides): every bad key or value is a
        ValueError naming the key, the value and what is expected (a wrongly typed value too,
        which the constructor refuses with a TypeError)."""
        if not isinstance(d, dict):
            raise TypeError(f"a TrainConfig is built from a dict, got {type(d).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown TrainConfig key(s) {unknown}; known keys: {known}")
        d = dict(d)
        if "betas" in d and isinstance(d["betas"], list):
            d["betas"] = tuple(d["betas"])
        try:
            return cls(**d)
        except TypeError as exc:  # a value of the wrong kind: the input's error, not the code's
            raise ValueError(str(exc)) from None

    @classmethod
    def from_json(cls, path: str | pathlib.Path) -> TrainConfig:
        """Read a JSON file holding one object of TrainConfig keys."""
        text = pathlib.Path(path).read_text()
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"config file {str(path)!r} is not valid JSON: {exc}") from None
        return cls.from_dict(d)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some keys changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _check_model(model: object, seq_len: object) -> None:
    """The keys and values of ``model``, checked by GPTConfig itself now rather than once the
    corpus is loaded (``vocab_size`` and ``n_ctx`` stand in for the data's when left out)."""
    if not isinstance(model, dict):
        raise TypeError(f"model must be a dict of GPTConfig keys, got {type(model).__name__}")
    try:
        from refllm.model import GPTConfig
    except ImportError:  # the model layer not importable: its own from_dict checks later
        return
    known = {f.name for f in dataclasses.fields(GPTConfig)}
    unknown = sorted(set(model) - known)
    if unknown:
        raise ValueError(f"unknown model (GPTConfig) key(s) {unknown}; known keys: {sorted(known)}")
    d = {"vocab_size": 1, "n_ctx": seq_len if isinstance(seq_len, int) else 1, **model}
    try:
        GPTConfig.from_dict(d)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"model (GPTConfig): {exc}") from None


def _check(c: TrainConfig) -> None:
    _check_model(c.model, c.seq_len)
    for name in ("data", "tokenizer"):
        if not isinstance(getattr(c, name), str):
            raise TypeError(f"{name} must be a str, got {getattr(c, name)!r}")
    require_real("val_fraction", c.val_fraction, low=0.0, high=1.0, low_open=True, high_open=True)
    if c.max_bytes is not None:
        require_int("max_bytes", c.max_bytes, low=1)
    require_int("batch_size", c.batch_size, low=1)
    micro = require_int("micro_batch_size", c.micro_batch_size or c.batch_size, low=1)
    if c.batch_size % micro:
        raise ValueError(f"micro_batch_size={micro} must divide batch_size={c.batch_size}")
    require_int("seq_len", c.seq_len, low=1)
    n_ctx = c.model.get("n_ctx", c.seq_len)
    if isinstance(n_ctx, int) and c.seq_len > n_ctx:
        raise ValueError(f"seq_len={c.seq_len} exceeds the model's context n_ctx={n_ctx}")
    require_int("max_steps", c.max_steps, low=1)
    _choice("optimizer", c.optimizer, OPTIMIZERS)
    require_real("lr", c.lr, low=0.0, low_open=True)
    if c.min_lr is not None:
        require_real("min_lr", c.min_lr, low=0.0, high=c.lr)
    require_int("warmup_steps", c.warmup_steps, low=0)
    if c.warmup_steps >= c.max_steps:
        raise ValueError(f"warmup_steps={c.warmup_steps} must be < max_steps={c.max_steps}")
    require_real("weight_decay", c.weight_decay, low=0.0)
    if not isinstance(c.betas, (tuple, list)) or len(c.betas) != 2:
        raise ValueError(f"betas must be a pair of floats, got {c.betas!r}")
    for i, b in enumerate(c.betas):
        require_real(f"betas[{i}]", b, low=0.0, high=1.0, high_open=True)
    require_real("eps", c.eps, low=0.0, low_open=True)
    require_real("momentum", c.momentum, low=0.0, high=1.0, high_open=True)
    if c.grad_clip is not None:
        require_real("grad_clip", c.grad_clip, low=0.0)
    for name in ("eval_interval", "checkpoint_interval"):
        require_int(name, getattr(c, name), low=0)
    require_int("log_interval", c.log_interval, low=1)
    require_int("eval_tokens", c.eval_tokens, low=1)
    require_int("seed", c.seed, low=0)
    _choice("device", c.device, DEVICES)
    _choice("autocast", c.autocast, AUTOCASTS)
    _choice("loss_impl", c.loss_impl, LOSS_IMPLS)
    require_bool("checkpoint_final", c.checkpoint_final)
    require_bool("compile", c.compile)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"model.d_model=64"`` -> (["model", "d_model"], 64): the value is JSON when it parses as
    JSON (numbers, true/false/null, lists), else the plain string.

    >>> parse_override("lr=3e-4"), parse_override("data=stdlib")
    ((['lr'], 0.0003), (['data'], 'stdlib'))
    """
    if "=" not in text:
        raise ValueError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ValueError(f"--set expects key=value with a key, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"--set {key}: the value must be finite, got {raw!r}")
    return key.strip().split("."), value


def apply_overrides(d: dict, overrides: list[str]) -> dict:
    """Apply ``--set`` strings to a config dict (a copy; nested keys with dots)."""
    d = json.loads(json.dumps(d))
    for text in overrides:
        path, value = parse_override(text)
        target = d
        for part in path[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ValueError(f"--set {text!r}: {part!r} is not a nested mapping")
        target[path[-1]] = value
    return d
