"""TrainConfig: every bad value is refused with its name; JSON and --set round-trip."""

import json

import pytest

from refllm.train import TrainConfig
from refllm.train.config import apply_overrides


def test_an_unknown_key_is_refused_and_named():
    with pytest.raises(ValueError, match=r"unknown TrainConfig key\(s\) \['learning_rate'\]"):
        TrainConfig.from_dict({"learning_rate": 1e-3})


def test_an_unknown_model_key_is_refused_and_named():
    with pytest.raises(ValueError, match=r"unknown model \(GPTConfig\) key\(s\) \['width'\]"):
        TrainConfig(model={"n_layer": 1, "n_head": 1, "width": 8})


@pytest.mark.parametrize("key, value, message", [
    ("lr", -1e-3, "lr must lie in"),
    ("lr", 0.0, "lr must lie in"),
    ("min_lr", 1.0, "min_lr must lie in"),
    ("batch_size", 0, "batch_size must be >= 1"),
    ("micro_batch_size", 3, "micro_batch_size=3 must divide batch_size=8"),
    ("seq_len", 128, "seq_len=128 exceeds the model's context n_ctx=64"),
    ("warmup_steps", 1000, "warmup_steps=1000 must be < max_steps=1000"),
    ("weight_decay", -0.1, "weight_decay must lie in"),
    ("grad_clip", float("nan"), "grad_clip must be finite"),
    ("optimizer", "adam", "optimizer must be one of"),
    ("autocast", "fp16", "autocast must be one of"),
    ("loss_impl", "fast", "loss_impl must be one of"),
    ("betas", (0.9, 1.0), r"betas\[1\] must lie in"),
    ("log_interval", 0, "log_interval must be >= 1"),
])
def test_a_bad_value_is_a_value_error_naming_the_key(key, value, message):
    model = {"n_layer": 1, "n_head": 1, "d_model": 8, "n_ctx": 64}
    with pytest.raises(ValueError, match=message):
        TrainConfig(model=model, **{key: value})


def test_a_wrongly_typed_value_is_a_type_error():
    with pytest.raises(TypeError, match="batch_size must be an int"):
        TrainConfig(batch_size=8.0)


def test_json_round_trip(tmp_path):
    config = TrainConfig(lr=3e-4, betas=(0.8, 0.9), micro_batch_size=2, grad_clip=None)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(config.to_dict()))
    assert TrainConfig.from_json(path) == config


def test_a_file_that_is_not_json_is_a_clear_error(tmp_path):
    path = tmp_path / "run.json"
    path.write_text("{lr: 1}")
    with pytest.raises(ValueError, match="is not valid JSON"):
        TrainConfig.from_json(path)


def test_overrides_set_nested_keys_with_json_values():
    d = apply_overrides(TrainConfig().to_dict(), ["model.d_model=64", "lr=3e-4", "data=stdlib",
                                                  "grad_clip=null"])
    config = TrainConfig.from_dict(d)
    assert (config.model["d_model"], config.lr, config.data, config.grad_clip) == \
        (64, 3e-4, "stdlib", None)
    assert config.model["n_layer"] == TrainConfig().model["n_layer"]


def test_tokens_and_accumulation_follow_from_the_batch():
    config = TrainConfig(batch_size=8, micro_batch_size=2, seq_len=32, max_steps=10)
    assert (config.tokens, config.accumulation) == (8 * 32 * 10, 4)
