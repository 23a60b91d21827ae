"""``--set NAME=VALUE``: read without eval, validated against the op's known hyper-parameters
(refllm.testing.engine.hyper)."""

import pytest

from refllm.testing.engine.hyper import parse_settings, parse_value
from refllm.testing.optimizer.strategy import TORCH_DEFAULTS, settable_hyper


@pytest.mark.parametrize("text,value", [
    ("false", False), ("True", True), ("none", None), ("3", 3), ("-2", -2), ("0.01", 0.01),
    ("1e-3", 1e-3), ("0.9,0.99", (0.9, 0.99)), ("(0.9, 0.99)", (0.9, 0.99)),
    ("[none,1e-3]", (None, 1e-3)), ("match_rms_adamw", "match_rms_adamw"),
])
def test_a_value_is_read_as_the_literal_it_spells(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


@pytest.mark.parametrize("text", ["nan", "inf", "__import__('os')", "0.9,", "1 + 1"])
def test_anything_else_is_refused_not_evaluated(text):
    with pytest.raises(ValueError, match="not a"):
        parse_value(text)


ADAM = settable_hyper("adam")


def test_each_value_takes_the_type_of_torchs_default():
    got = parse_settings(["lr=1", "betas=0.8,0.9", "amsgrad=true", "eps=1e-6"], ADAM,
                         what="adam")
    assert got == {"lr": 1.0, "betas": (0.8, 0.9), "amsgrad": True, "eps": 1e-6}
    assert type(got["lr"]) is float
    muon = parse_settings(["ns_steps=3", "adjust_lr_fn=original"], settable_hyper("muon"),
                          what="muon")
    assert muon == {"ns_steps": 3, "adjust_lr_fn": "original"}
    adafactor = parse_settings(["eps=none,1e-3"], settable_hyper("adafactor"), what="adafactor")
    assert adafactor == {"eps": (None, 1e-3)}


@pytest.mark.parametrize("texts,message", [
    (["momentum=0.9"], "--set: unknown hyper-parameter 'momentum' of adam; the known ones: "
                       "['amsgrad', 'betas', 'eps', 'lr', 'maximize', 'weight_decay']"),
    (["maximize=1"], "--set maximize: expected true or false, got 1"),
    (["lr=true"], "--set lr: expected a number, got True"),
    (["betas=0.9"], "--set betas: expected 2 comma-separated values, got 0.9"),
    (["betas=0.9,fast"], "--set betas: expected a number, got 'fast'"),
    (["lr"], "--set: write NAME=VALUE"),
    (["lr=0.1", "lr=0.2"], "--set: lr is set twice"),
])
def test_a_bad_setting_is_refused_naming_it(texts, message):
    with pytest.raises(ValueError) as info:
        parse_settings(texts, ADAM, what="adam")
    assert message in str(info.value)


def test_every_kind_can_set_lr_and_each_of_torchs_defaults():
    for like, defaults in TORCH_DEFAULTS.items():
        assert set(settable_hyper(like)) == {"lr", *defaults}
    with pytest.raises(ValueError, match="like must be one of"):
        settable_hyper("lion")
