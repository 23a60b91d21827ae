"""Checkpoints: exact round trip, atomic replacement, a checksum, stale temporaries removed, clear
errors for damaged or foreign files, a warning where a resume cannot be bit-identical."""

import json
import os
import subprocess
import sys
import warnings

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from refllm.train import CheckpointError, CheckpointWarning, train
from refllm.train import checkpoint as ckpt
from refllm.train.build import build_model, build_optimizer


def _trained(tiny_config, markov_data, tmp_path, **changes):
    config = tiny_config(max_steps=4, **changes)
    train(config, tmp_path, data=markov_data, progress=False)
    return config


def test_a_checkpoint_restores_model_optimizer_and_rng_exactly(tiny_config, markov_data, tmp_path):
    config = _trained(tiny_config, markov_data, tmp_path)
    state, tensors = ckpt.read_checkpoint(ckpt.checkpoint_path(tmp_path))
    assert state["step"] == 4 and state["config"] == config.to_dict()
    model, _ = build_model(config, markov_data.vocab_size, torch.device("cpu"))
    optimizer = build_optimizer(config, model)
    torch.manual_seed(123)
    ckpt.restore(state, tensors, model=model, optimizer=optimizer)
    for name, value in model.state_dict().items():
        stored = state["aliases"].get(name, name)
        assert torch.equal(value, tensors[f"model/{stored}"]), name
    steps = {int(s["step"]) for s in optimizer.state_dict()["state"].values()}
    assert steps == {4}
    assert torch.equal(torch.get_rng_state(), tensors["rng/torch"])


def test_tied_embeddings_are_stored_once(tiny_config, markov_data, tmp_path):
    _trained(tiny_config, markov_data, tmp_path)
    state, tensors = ckpt.read_checkpoint(ckpt.checkpoint_path(tmp_path))
    assert state["aliases"] == {"lm_head.weight": "transformer.wte.weight"}
    assert "model/lm_head.weight" not in tensors


def test_a_truncated_checkpoint_is_a_clear_error(tiny_config, markov_data, tmp_path,
                                                 interrupted_run):
    config = tiny_config(max_steps=8, checkpoint_interval=4)
    interrupted_run(config, tmp_path, markov_data, step=4)
    path = ckpt.checkpoint_path(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CheckpointError, match="is truncated or damaged"):
        ckpt.read_checkpoint(path)
    with pytest.raises(CheckpointError, match="is truncated or damaged"):
        train(config, tmp_path, data=markov_data, resume=True, progress=False)


def _flip_a_weight_byte(path, name="model/transformer.wte.weight"):
    data = bytearray(path.read_bytes())
    n = int.from_bytes(data[:8], "little")
    start, _ = json.loads(data[8:8 + n])[name]["data_offsets"]
    data[8 + n + start + 1] ^= 0x01  # one bit of the first weight: still a valid float
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_a_weight_is_refused_by_the_checksum(tiny_config, markov_data,
                                                               tmp_path, interrupted_run):
    config = tiny_config(max_steps=8, checkpoint_interval=4)
    interrupted_run(config, tmp_path, markov_data, step=4)
    path = ckpt.checkpoint_path(tmp_path)
    _flip_a_weight_byte(path)
    with pytest.raises(CheckpointError, match=r"checkpoint\.safetensors': the checksum does not "
                                              r"match"):
        ckpt.read_checkpoint(path)
    with pytest.raises(CheckpointError, match="the checksum does not match"):
        train(config, tmp_path, data=markov_data, resume=True, progress=False)


def test_the_checksum_covers_the_header_state_too(tiny_config, markov_data, tmp_path):
    _trained(tiny_config, markov_data, tmp_path)
    path = ckpt.checkpoint_path(tmp_path)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    state = json.loads(meta["refllm"])
    assert meta["sha256"] == ckpt.checksum(meta["refllm"], tensors)
    state["step"] = 3  # an edited step would resume at the wrong data position
    save_file(tensors, str(path), metadata={"refllm": json.dumps(state), "sha256": meta["sha256"]})
    with pytest.raises(CheckpointError, match="the checksum does not match"):
        ckpt.read_checkpoint(path)
    save_file(tensors, str(path), metadata={"refllm": json.dumps(state)})
    with pytest.raises(CheckpointError, match="has no checksum"):
        ckpt.read_checkpoint(path)


def _state_and_tensors(path):
    """A checkpoint's header state and its tensors, unverified (to rewrite them in a test)."""
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["refllm"]), {k: f.get_tensor(k) for k in f.keys()}


def test_a_checkpoint_of_the_format_without_checksum_is_read_with_a_warning(
        tiny_config, markov_data, tmp_path, interrupted_run):
    config = tiny_config(max_steps=8, checkpoint_interval=4)
    interrupted_run(config, tmp_path, markov_data, step=4)
    path = ckpt.checkpoint_path(tmp_path)
    state, tensors = _state_and_tensors(path)
    state["format"] = "refllm-checkpoint-1"
    for key in ("threads", "device"):
        del state[key]
    del state["extra"]["runs_before"]
    save_file(tensors, str(path), metadata={"refllm": json.dumps(state)})
    with pytest.warns(CheckpointWarning, match="has no checksum: its contents cannot be verified"):
        assert ckpt.read_checkpoint(path)[0]["step"] == 4
    with pytest.warns(CheckpointWarning, match="has no checksum"):
        resumed = train(config, tmp_path, data=markov_data, resume=True, progress=False)
    whole = train(config, tmp_path / "whole", data=markov_data, progress=False)
    assert resumed.train_losses == whole.train_losses


def test_a_header_that_is_not_a_refllm_state_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    save_file({"x": torch.zeros(2)}, str(path), metadata={"refllm": "[1, 2]"})
    with pytest.raises(CheckpointError, match="is not a refllm-checkpoint-2 file"):
        ckpt.read_checkpoint(path)
    state = {"format": ckpt.FORMAT, "step": 1}
    text = json.dumps(state)
    tensors = {"x": torch.zeros(2)}
    save_file(tensors, str(path), metadata={"refllm": text, "sha256": ckpt.checksum(text, tensors)})
    with pytest.raises(CheckpointError, match=r"lacks the entries \['config'"):
        ckpt.read_checkpoint(path)


def test_the_thread_count_is_recorded_and_another_one_warns_on_resume(tiny_config, markov_data,
                                                                      tmp_path, interrupted_run):
    config = tiny_config(max_steps=8, checkpoint_interval=4)
    interrupted_run(config, tmp_path / "a", markov_data, step=4)
    interrupted_run(config, tmp_path / "b", markov_data, step=4)
    state, _ = ckpt.read_checkpoint(ckpt.checkpoint_path(tmp_path / "a"))
    assert state["threads"] == torch.get_num_threads() == 1 and state["device"] == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)  # the same thread count: silent
        train(config, tmp_path / "a", data=markov_data, resume=True, progress=False)
    torch.set_num_threads(2)
    with pytest.warns(CheckpointWarning, match="written with 1 intra-op threads, this process "
                                               "has 2: the continuation will not be bit-identical"):
        train(config, tmp_path / "b", data=markov_data, resume=True, progress=False)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def _plant_temporaries(folder):
    dead = _dead_pid()
    stale = [folder / f".checkpoint.safetensors.{dead}.1a2b3c4d.tmp",
             folder / f".checkpoint.safetensors.tmp-{dead}"]
    live = folder / f".checkpoint.safetensors.{os.getppid()}.5e6f7a8b.tmp"
    for path in (*stale, live):
        path.write_bytes(b"\0" * 4096)  # as large as a checkpoint, in life
    return stale, live


def test_stale_checkpoint_temporaries_are_removed_on_start_and_on_resume(
        tiny_config, markov_data, tmp_path, interrupted_run, capsys):
    stale, live = _plant_temporaries(tmp_path)
    config = tiny_config(max_steps=8, checkpoint_interval=4)
    interrupted_run(config, tmp_path, markov_data, step=4)
    assert not any(p.exists() for p in stale) and live.exists()
    assert "removed 2 temporary file(s) of a checkpoint write that was killed" in \
        capsys.readouterr().err
    stale, _ = _plant_temporaries(tmp_path)
    train(config, tmp_path, data=markov_data, resume=True, progress=False)
    assert not any(p.exists() for p in stale) and live.exists()


def test_a_checkpoint_of_another_config_is_refused_naming_the_keys(tiny_config, markov_data,
                                                                    tmp_path, interrupted_run):
    interrupted_run(tiny_config(max_steps=8, checkpoint_interval=4), tmp_path, markov_data,
                    step=4)
    other = tiny_config(max_steps=8, checkpoint_interval=4, lr=3e-3, seq_len=8)
    with pytest.raises(CheckpointError, match=r"differing keys.*'lr': \(0.01, 0.003\).*seq_len"):
        train(other, tmp_path, data=markov_data, resume=True, progress=False)


def test_a_crash_while_writing_leaves_the_previous_checkpoint_intact(tiny_config, markov_data,
                                                                      tmp_path, monkeypatch):
    config = _trained(tiny_config, markov_data, tmp_path)
    path = ckpt.checkpoint_path(tmp_path)
    before = path.read_bytes()
    model, _ = build_model(config, markov_data.vocab_size, torch.device("cpu"))

    def killed(*args):
        raise KeyboardInterrupt("killed between writing and renaming")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path, model=model, optimizer=build_optimizer(config, model),
                             step=99, config=config.to_dict())
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert ckpt.read_checkpoint(path)[0]["step"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.safetensors",
                                                          "records.jsonl"]


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(CheckpointError, match="checkpoint"):
        ckpt.read_checkpoint(path)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        ckpt.read_checkpoint(tmp_path / "missing.safetensors")


def test_a_checkpoint_written_on_cuda_resumes_on_the_cpu_with_a_warning(
        tiny_config, markov_data, tmp_path, interrupted_run):
    # what a GPU run leaves: the header says cuda and the tensors hold CUDA RNG states
    # (safetensors stores tensors without their device, so the weights load on any device)
    config = tiny_config(max_steps=8, checkpoint_interval=4)
    interrupted_run(config, tmp_path, markov_data, step=4)
    path = ckpt.checkpoint_path(tmp_path)
    state, tensors = _state_and_tensors(path)
    state["device"] = "cuda"
    tensors["rng/cuda/0"] = torch.zeros(16, dtype=torch.uint8)
    text = json.dumps(state)
    save_file(tensors, str(path), metadata={"refllm": text, "sha256": ckpt.checksum(text, tensors)})
    with pytest.warns(CheckpointWarning, match="was written on cuda, this run is on cpu"):
        resumed = train(config, tmp_path, data=markov_data, resume=True, progress=False)
    whole = train(config, tmp_path / "whole", data=markov_data, progress=False)
    assert resumed.train_losses == whole.train_losses  # the CPU RNG state was restored; the
    # CUDA one is ignored without a GPU, and nothing in a CPU run draws from it
