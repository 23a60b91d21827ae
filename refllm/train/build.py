"""What a run is built from: the model, the optimizer with its decay groups, autocast, the record.

Weight decay (Loshchilov & Hutter 2019, decoupled in AdamW) applies to the parameters with two or
more dimensions: the matmul weights and the embeddings (tied with the LM head); biases and LayerNorm
gains keep weight_decay = 0, as in nanoGPT's ``configure_optimizers``. The groups are listed in
parameter order, so an optimizer's state dict is the same in every run of one config.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import torch

from refllm.model import GPT, GPTConfig, flops_per_token, parameter_count
from refllm.nn import SGD, AdamW
from refllm.train.config import TrainConfig
from refllm.train.records import environment


def build_model(config: TrainConfig, vocab_size: int,
                device: torch.device) -> tuple[GPT, GPTConfig]:
    """``GPT(GPTConfig.from_dict(config.model_dict(vocab_size)))`` on ``device`` (float32)."""
    model_config = GPTConfig.from_dict(config.model_dict(vocab_size))
    if config.seq_len > model_config.n_ctx:
        raise ValueError(f"seq_len={config.seq_len} exceeds the model's n_ctx={model_config.n_ctx}")
    return GPT(model_config).to(device), model_config


def build_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """refllm's AdamW or SGD over two groups: 2-D weights (decayed) and the rest (not)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if config.optimizer == "adamw":
        return AdamW(groups, lr=config.lr, betas=(config.betas[0], config.betas[1]), eps=config.eps)
    return SGD(groups, lr=config.lr, momentum=config.momentum)


def autocast_context(autocast: str, device: torch.device
                     ) -> Callable[[], contextlib.AbstractContextManager] | None:
    """A factory of bf16 autocast contexts, or None (float32 throughout).

    ``"auto"`` is bf16 on CUDA and float32 elsewhere; ``"bf16"`` is honoured on CUDA and on the
    CPU (PyTorch autocasts matrix multiplies and SDPA to bf16 there too, so the GPU recipe's code
    path runs, slower, on a CPU and in CI)."""
    if autocast == "auto":
        autocast = "bf16" if device.type == "cuda" else "none"
    if autocast == "none":
        return None
    if device.type not in AUTOCAST_DEVICES:
        raise ValueError(f"autocast='bf16' needs a device of type {' or '.join(AUTOCAST_DEVICES)}"
                         f", the run is on {device}; use autocast='none' or 'auto'")
    kind = device.type
    return lambda: torch.autocast(kind, dtype=torch.bfloat16)


AUTOCAST_DEVICES = ("cuda", "cpu")
"""Device types on which ``autocast='bf16'`` runs (torch.autocast supports bf16 on both)."""


def describe_run(config: TrainConfig, model_config: GPTConfig, data: Any, device: torch.device,
                 eval_tokens: int) -> dict[str, Any]:
    """The fields of the "run" record that describe the set-up (not the results)."""
    per_token = flops_per_token(model_config, method="kaplan")
    corpus = {"source": config.data, "tokenizer": config.tokenizer,
              "sha256": getattr(data, "sha256", None), "train_tokens": len(data.train),
              "val_tokens": len(data.val), "vocab_size": data.vocab_size,
              "eval_tokens": eval_tokens, "meta": _meta(getattr(data, "meta", {}))}
    return {"config": config.to_dict(), "model_config": model_config.to_dict(),
            "seed": config.seed, "corpus": corpus,
            "n_params": parameter_count(model_config),
            "n_params_non_embedding": parameter_count(model_config, non_embedding=True),
            "flops_per_token_forward": per_token, "flops_per_token_train": 3 * per_token,
            "uniform_loss": math.log(data.vocab_size), **environment(str(device))}


def _meta(meta: dict) -> dict:
    """The corpus meta for the record, without the per-file list (thousands of entries)."""
    out = {k: v for k, v in meta.items() if k != "files"}
    if "files" in meta:
        out["n_files"] = len(meta["files"])
    return _jsonable(out)


def _jsonable(x: Any) -> Any:
    """Keep what JSON can hold (meta may carry arrays or objects); the rest as its repr."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if hasattr(x, "tolist"):
        return x.tolist()
    return repr(x)
