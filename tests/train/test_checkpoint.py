"""Checkpoints: exact round trip, atomic replacement, clear errors for damaged or foreign files."""

import os

import pytest
import torch

from refllm.train import CheckpointError, train
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


def test_a_truncated_checkpoint_is_a_clear_error(tiny_config, markov_data, tmp_path):
    _trained(tiny_config, markov_data, tmp_path)
    path = ckpt.checkpoint_path(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CheckpointError, match="is truncated or damaged"):
        ckpt.read_checkpoint(path)
    with pytest.raises(CheckpointError, match="is truncated or damaged"):
        train(tiny_config(max_steps=4), tmp_path, data=markov_data, resume=True, progress=False)


def test_a_checkpoint_of_another_config_is_refused_naming_the_keys(tiny_config, markov_data,
                                                                    tmp_path):
    _trained(tiny_config, markov_data, tmp_path)
    other = tiny_config(max_steps=4, lr=3e-3, seq_len=8)
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
