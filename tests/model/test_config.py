import pytest
from hypothesis import given

from refllm.model import GPTConfig
from tests.model.strategies import configs

BASE = dict(vocab_size=10, n_ctx=8, n_layer=1, n_head=2, d_model=4)


@given(configs())
def test_a_config_survives_a_round_trip_through_a_dict(config):
    assert GPTConfig.from_dict(config.to_dict()) == config


def test_defaults_resolve_as_documented():
    cfg = GPTConfig(**BASE)
    assert (cfg.n_kv_head_, cfg.d_ff_, cfg.d_head) == (2, 16, 2)


@pytest.mark.parametrize("change, error, words", [
    (dict(d_model=5), ValueError, "d_model must be divisible by n_head"),
    (dict(n_head=4, d_model=8, n_kv_head=3), ValueError, "n_head must be a multiple of n_kv_head"),
    (dict(n_layer=0), ValueError, "n_layer must be >= 1"),
    (dict(vocab_size=2.0), TypeError, "vocab_size must be an int"),
    (dict(n_ctx=True), TypeError, "n_ctx must be an int"),
    (dict(n_kv_head=0), ValueError, "n_kv_head must be >= 1"),
    (dict(d_ff=0), ValueError, "d_ff must be >= 1"),
    (dict(dropout=1.0), ValueError, "dropout must lie in"),
    (dict(dropout=-0.1), ValueError, "dropout must lie in"),
    (dict(bias=1), TypeError, "bias must be a bool"),
    (dict(positions="alibi"), ValueError, "positions must be one of"),
    (dict(attention="sparse"), ValueError, "attention must be one of"),
    (dict(attention="flash", dropout=0.1), ValueError, "dropout"),
    (dict(positions="rope", n_head=4, d_model=12), ValueError, "even head width"),
    (dict(layer_norm_eps=0.0), ValueError, "layer_norm_eps must lie in"),
    (dict(init_std=float("nan")), ValueError, "init_std must be finite"),
])
def test_a_bad_config_raises_an_error_naming_the_argument(change, error, words):
    with pytest.raises(error, match=words):
        GPTConfig(**{**BASE, **change})


def test_from_dict_names_unknown_and_missing_keys():
    with pytest.raises(ValueError, match=r"unknown GPTConfig keys \['n_embd'\]"):
        GPTConfig.from_dict({**BASE, "n_embd": 4})
    with pytest.raises(ValueError, match=r"lacks required GPTConfig keys \['n_ctx'\]"):
        GPTConfig.from_dict({k: v for k, v in BASE.items() if k != "n_ctx"})
    with pytest.raises(TypeError, match="d must be a dict"):
        GPTConfig.from_dict([("vocab_size", 3)])
