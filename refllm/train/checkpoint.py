"""Checkpoints: one safetensors file, written atomically, checksummed, read without unpickling.

A checkpoint is ``<out_dir>/checkpoint.safetensors`` holding

* tensors: ``model/<name>`` (the model's state dict; a tensor shared by several names, as tied
  embeddings, is stored once and its other names listed as aliases), ``optim/<i>/<key>`` (the
  optimizer's per-parameter state), ``rng/torch`` and ``rng/cuda/<i>`` (generator states);
* metadata (text in the safetensors header): ``refllm``, a JSON object with the config, the step
  (which is also the data position, `refllm.train.batches`), the optimizer's param groups, NumPy's
  and Python's RNG states, the losses so far, the intra-op thread count and device type it was
  written with, and the format version; and ``sha256``, the checksum (`checksum`): SHA-256 of
  that JSON text and of every tensor, in sorted-name order, each as its name, dtype and shape
  followed by its bytes.

Atomic write (`refllm._io.write_atomically`): the file is written to a temporary name in the same
directory, fsync'd, then ``os.replace``'d over the previous checkpoint, and the folder fsync'd
(one file, so one rename swaps it whole; a kill at any moment leaves either the old checkpoint or
the new one, never a mix; the temporary a kill leaves is removed by the next run,
`refllm._io.remove_stale_temporaries`).

Loading (`read_checkpoint`) refuses, with `CheckpointError` naming the file and the problem, a
file safetensors cannot read (truncated, damaged), one that is not a refllm checkpoint, and one
whose checksum does not match its contents (a flipped bit in a weight would otherwise resume
silently to other losses). A checkpoint of the previous format (``refllm-checkpoint-1``, with no
checksum and no thread count) is still read, with a `CheckpointWarning` that it cannot be
verified.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import random
import warnings
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from refllm._io import write_atomically

FORMAT = "refllm-checkpoint-2"
UNVERIFIED_FORMATS = ("refllm-checkpoint-1",)  # read without a checksum, with a warning
FILENAME = "checkpoint.safetensors"
_STATE_KEYS = ("step", "config", "aliases", "optimizer", "rng", "extra")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, truncated, damaged, foreign, or from another
    config."""


class CheckpointWarning(UserWarning):
    """A checkpoint that is used, but whose continuation cannot be checked or be bit-identical."""


def checkpoint_path(out_dir: str | pathlib.Path) -> pathlib.Path:
    return pathlib.Path(out_dir) / FILENAME


def _model_tensors(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
    """Unique tensors (contiguous CPU copies) and the aliases {name: stored name}."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name, t in state.items():
        key = (t.data_ptr(), t.dtype, tuple(t.shape), t.stride()) if t.numel() else None
        if key is not None and key in seen:
            aliases[name] = seen[key]
            continue
        if key is not None:
            seen[key] = name
        tensors[f"model/{name}"] = t.detach().to("cpu").contiguous()
    return tensors, aliases


def _optim_parts(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for i, entry in sd["state"].items():
        for key, v in entry.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim/{i}/{key}"] = v.detach().to("cpu").contiguous()
            else:
                plain.setdefault(str(i), {})[key] = v
    return tensors, {"param_groups": sd["param_groups"], "plain_state": plain}


def _rng_states() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    version, py_state, gauss = random.getstate()
    return tensors, {"numpy": [kind, np.asarray(keys).tolist(), pos, has_gauss, cached],
                     "python": [version, list(py_state), gauss]}


def checksum(state_text: str, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of the header's JSON text and of every tensor, in sorted-name order, each as
    a line of JSON ``[name, dtype, shape]`` followed by its bytes (little-endian, row-major)."""
    h = hashlib.sha256(state_text.encode("utf-8"))
    for name in sorted(tensors):
        t = tensors[name]
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode("utf-8") + b"\n")
        data = t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
        h.update(data.data)  # the array's buffer: no copy
    return h.hexdigest()


def save_checkpoint(out_dir: str | pathlib.Path, *, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, step: int, config: dict,
                    extra: dict[str, Any] | None = None) -> pathlib.Path:
    """Write the checkpoint of ``step`` (steps done) atomically; return its path."""
    path = checkpoint_path(out_dir)
    model_t, aliases = _model_tensors(model.state_dict())
    optim_t, optim_meta = _optim_parts(optimizer)
    rng_t, rng_meta = _rng_states()
    device = next((p.device.type for p in model.parameters()), "cpu")
    state = {"format": FORMAT, "step": step, "config": config, "aliases": aliases,
             "optimizer": optim_meta, "rng": rng_meta, "extra": extra or {},
             "threads": torch.get_num_threads(), "device": device}
    tensors = {**model_t, **optim_t, **rng_t}
    text = json.dumps(state)
    metadata = {"refllm": text, "sha256": checksum(text, tensors)}
    # safetensors writes by file name; sync_folder: see refllm._io (records refer to this step)
    write_atomically(path, lambda f: save_file(tensors, f.name, metadata=metadata),
                     sync_folder=True)
    return path


def read_checkpoint(path: str | pathlib.Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(state, tensors) of a checkpoint file, validated; `CheckpointError` when unusable."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {str(path)!r}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        text = meta["refllm"]
        state = json.loads(text)
    except Exception as exc:  # safetensors raises its own error type for a damaged file
        raise CheckpointError(f"checkpoint {str(path)!r} is truncated or damaged and cannot be "
                              f"read ({type(exc).__name__}: {exc})") from None
    fmt = state.get("format") if isinstance(state, dict) else None
    if fmt in UNVERIFIED_FORMATS:
        warnings.warn(f"checkpoint {str(path)!r} is of the format {fmt!r}, which has no checksum: "
                      f"its contents cannot be verified", CheckpointWarning, stacklevel=2)
    elif fmt != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a {FORMAT} file (format {fmt!r})")
    elif "sha256" not in meta:
        raise CheckpointError(f"checkpoint {str(path)!r} has no checksum (a {FORMAT} file has "
                              f"one): it is damaged or was not written by refllm")
    elif checksum(text, tensors) != meta["sha256"]:
        raise CheckpointError(f"checkpoint {str(path)!r}: the checksum does not match its "
                              f"contents (a byte changed after it was written): the file is "
                              f"damaged; put back a copy, or delete it and --resume trains the "
                              f"run again from step 0")
    missing = [k for k in _STATE_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks the entries {missing} of a "
                              f"refllm checkpoint")
    return state, tensors


def read_header(path: str | pathlib.Path) -> dict | None:
    """The JSON state of a checkpoint's header, unverified and without its tensors; None when it
    cannot be read (`read_checkpoint` then says why)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            state = json.loads((f.metadata() or {})["refllm"])
    except Exception:  # damaged or foreign: the caller decides, read_checkpoint explains
        return None
    return state if isinstance(state, dict) else None


def restore(state: dict, tensors: dict[str, torch.Tensor], *, model: torch.nn.Module,
            optimizer: torch.optim.Optimizer) -> None:
    """Load model, optimizer and RNG states (in place) from `read_checkpoint`'s output."""
    sd = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    for name, stored in state["aliases"].items():
        sd[name] = sd[stored]
    try:
        model.load_state_dict(sd)
    except RuntimeError as exc:
        raise CheckpointError(f"the checkpoint's weights do not fit this model: {exc}") from None
    optimizer.load_state_dict(_optim_state_dict(state["optimizer"], tensors))
    _restore_rng(state["rng"], tensors)


def _optim_state_dict(meta: dict, tensors: dict[str, torch.Tensor]) -> dict:
    per: dict[int, dict[str, Any]] = {}
    for i, plain in meta["plain_state"].items():
        per.setdefault(int(i), {}).update(plain)
    for k, v in tensors.items():
        if k.startswith("optim/"):
            _, i, key = k.split("/", 2)
            per.setdefault(int(i), {})[key] = v
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else g
              for g in meta["param_groups"]]
    return {"state": per, "param_groups": groups}


def _restore_rng(rng: dict, tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng/torch"])
    cuda = sorted((k for k in tensors if k.startswith("rng/cuda/")),
                  key=lambda k: int(k.rsplit("/", 1)[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda][: torch.cuda.device_count()])
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, py_state, gauss = rng["python"]
    random.setstate((version, tuple(py_state), gauss))


def config_differences(saved: dict, current: dict, allowed: frozenset[str]) -> list[str]:
    """Keys whose values differ between two config dicts, except those in ``allowed``."""
    keys = sorted(set(saved) | set(current))
    return [k for k in keys if k not in allowed and saved.get(k) != current.get(k)]
