import pytest
from hypothesis import given

from refllm.model import GPTConfig
from refllm.model.config import BLOCKS
from refllm.ops import LinearScaling, Llama3Scaling
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
    (dict(norm="batchnorm"), ValueError, "norm must be one of"),
    (dict(mlp="relu"), ValueError, "mlp must be one of"),
    (dict(rope_scaling={"rope_type": "linear", "factor": 2.0}), ValueError,
     "rope_scaling needs positions='rope'"),
    (dict(positions="rope", rope_scaling=[("factor", 2.0)]), TypeError,
     "rope_scaling must be None or a dict"),
    (dict(positions="rope", rope_scaling={"rope_type": "dynamic", "factor": 2.0}), ValueError,
     r"rope_scaling\['rope_type'\] must be one of \['linear', 'yarn', 'llama3'\]"),
    (dict(positions="rope", rope_scaling={"factor": 2.0}), ValueError,
     r"rope_scaling\['rope_type'\] must be one of"),
    (dict(positions="rope", rope_scaling={"rope_type": "linear", "factor": 0.0}), ValueError,
     "rope_scaling .*factor must lie in"),
    (dict(positions="rope", rope_scaling={"rope_type": "linear", "factor": 2.0,
                                          "rope_theta": 5e5}), ValueError,
     r"rope_scaling has keys \['rope_theta'\].*rope_base"),
    (dict(positions="rope", rope_scaling={"rope_type": "yarn", "factor": 2.0}), ValueError,
     "rope_scaling .*original_max_position_embeddings"),
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


def test_the_llama_constructor_sets_the_block_and_takes_any_field():
    cfg = GPTConfig.llama(**{**BASE, "n_head": 2, "d_model": 12, "n_kv_head": 1,
                             "layer_norm_eps": 1e-6})
    assert {k: getattr(cfg, k) for k in BLOCKS["llama"]} == BLOCKS["llama"]
    assert (cfg.n_kv_head_, cfg.d_ff_, cfg.layer_norm_eps) == (1, 32, 1e-6)  # floor(8 * 12 / 3)
    assert GPTConfig.llama(**BASE, bias=True).bias
    assert {k: getattr(GPTConfig(**BASE), k) for k in BLOCKS["gpt2"]} == BLOCKS["gpt2"]


def test_rope_scaling_is_hugging_faces_dict_read_by_scaling_from_hf():
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8}
    cfg = GPTConfig(**BASE, positions="rope", rope_base=5e5, rope_scaling=scaling)
    assert cfg.rope_scaling_ == Llama3Scaling(8.0, 1.0, 4.0, 8)
    assert cfg.rope_scaling == scaling and cfg.rope_scaling is not scaling  # a copy
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg
    legacy = GPTConfig(**BASE, positions="rope", rope_scaling={"type": "linear", "factor": 2.0})
    assert legacy.rope_scaling_ == LinearScaling(2.0)
    assert GPTConfig(**BASE).rope_scaling_ is None
