"""One record per op: the registry, the CLI, the plugin, the demo and the conformance suite are
derived from `refllm.testing.registry.RECORDS`, and a new record is all an op needs."""

import dataclasses
import inspect

import pytest
import torch
import torch.nn.functional as F

from refllm.cli import main
from refllm.testing.checks import CHECKS
from refllm.testing.engine.options import CheckOptions, check_device, parse_dtype
from refllm.testing.registry import RECORDS, OpRecord, choice_keywords, load, record

pytest_plugins = ["pytester"]


@pytest.mark.parametrize("op", list(RECORDS))
def test_every_name_in_a_record_imports(op):
    r = RECORDS[op]
    assert r.check and r.reference and r.strategy  # naive and default_calls may be "" (none)
    for path in filter(None, (r.check, r.reference, r.naive, r.strategy, r.default_calls)):
        assert callable(load(path)), path
    for choice in r.choices:
        allowed = choice.allowed()
        assert allowed and all(isinstance(n, str) for n in allowed)
    for demo in r.demos:  # PyTorch's own implementation is of the record's kind
        assert inspect.isclass(load(demo.target)) == (r.target == "class"), demo.target
    check_keywords = inspect.signature(load(r.check)).parameters
    assert all(c.keyword in check_keywords for c in r.choices)


def test_the_checks_registry_is_derived_from_the_records():
    assert CHECKS == {name: load(r.check) for name, r in RECORDS.items()}


def test_the_conformance_suite_has_one_test_per_record(pytester):
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--pyargs",
                                          "refllm.conformance", "--collect-only", "-q")
    ids = [line for line in result.stdout.lines if "test_the_named_implementation" in line]
    assert [line.rsplit("[", 1)[1].rstrip("]") for line in ids] == list(RECORDS)


def test_the_op_lists_have_one_source():
    """Reductions and optimizer kinds are listed once, in refllm.ops.choices."""
    from refllm.ops import choices
    from refllm.testing.optimizer.check import check_optimizer

    assert load(RECORDS["mse"].choice("reductions").names) is choices.REDUCTIONS
    assert load(RECORDS["optimizer"].choice("like").names) is choices.OPTIMIZER_KINDS
    assert inspect.signature(check_optimizer).parameters["like"].default in (
        choices.OPTIMIZER_KINDS)
    for kind in choices.OPTIMIZER_KINDS:
        assert choices.update_rule(kind).__name__ == kind
        assert choices.update_rule(kind, naive=True).__name__ == f"{kind}_naive"
    with pytest.raises(ValueError, match="optimizer kind must be one of .*got 'lion'"):
        choices.update_rule("lion")


def test_an_unknown_op_is_named_in_the_error():
    with pytest.raises(ValueError, match=r"unknown op 'conv2d'; choose from \['sdpa'"):
        record("conv2d")


@pytest.fixture
def new_op(monkeypatch):
    """A new op added the documented way: one record (here MSE again, under another name)."""
    added = dataclasses.replace(RECORDS["mse"], name="squared-error")
    monkeypatch.setitem(RECORDS, added.name, added)
    return added


def test_adding_a_record_adds_the_cli_choice(new_op, capsys):
    assert main(["check", "squared-error", "torch.nn.functional:mse_loss", "--examples", "2",
                 "--seed", "0", "--reductions", "sum"]) == 0
    assert "PASSED" in capsys.readouterr().out
    assert main(["check", "squared-error", "torch.nn.functional:mse_loss", "--like", "adam"]) == 2


def test_adding_a_record_adds_the_plugin_options_and_oracle_method(new_op, pytestconfig):
    from refllm.testing.plugin import Oracle, pytest_addoption

    class Options:
        def __init__(self):
            self.names = []

        def getgroup(self, *args):
            return self

        def addoption(self, *names, **kwargs):
            self.names += names

    options = Options()
    pytest_addoption(options)
    assert {"--refllm-squared-error", "--refllm-squared-error-reductions"} <= set(options.names)
    expected = {f"--refllm-{r.name}" for r in RECORDS.values()} | {
        f"--refllm-{r.name}-{c.keyword}" for r in RECORDS.values() for c in r.choices}
    assert expected <= set(options.names)
    report = Oracle(pytestconfig).squared_error(F.mse_loss, examples=2, seed=0)
    assert report.passed and report.op == "mse"


def test_the_cli_offers_every_choice_keyword(capsys):
    assert main(["check", "--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"--{k}" in out for k in choice_keywords())
    assert set(choice_keywords()) == {"features", "reductions", "like", "cast", "activation",
                                      "residual"}


# -- the options object ------------------------------------------------------------------------

@pytest.mark.parametrize("name,expected", [("bf16", "bfloat16"), ("fp32", "float32"),
                                           ("torch.float16", "float16"), ("DOUBLE", "float64")])
def test_dtype_names_parse(name, expected):
    assert parse_dtype(name) is getattr(torch, expected)
    assert parse_dtype(getattr(torch, expected)) is getattr(torch, expected)


def test_options_become_the_checks_keyword_arguments():
    options = CheckOptions(dtype="bf16", examples=3, seed=1, threads=None,
                           choices={"features": "masks, causal", "reductions": None})
    assert options.kwargs(RECORDS["sdpa"]) == dict(  # what is given (the rest: the defaults)
        dtype=torch.bfloat16, examples=3, seed=1, threads=None, features=("masks", "causal"))
    full = options.validated(RECORDS["sdpa"])  # every option, the defaults filled in
    assert full["device"] == "cpu" and full["timeout"] == 60.0 and full["max_size"] == 6
    assert "dtype" not in CheckOptions().kwargs(RECORDS["sdpa"])  # the check's own default
    assert CheckOptions(choices={"like": "sgd"}).kwargs(RECORDS["optimizer"])["like"] == "sgd"


@pytest.mark.parametrize("options,message", [
    (CheckOptions(dtype="int8"), r"--dtype: unknown dtype 'int8'"),
    (CheckOptions(examples=0), r"--examples: examples must be >= 1, got 0"),
    (CheckOptions(seed=1.5), r"--seed: seed must be an int, got"),
    (CheckOptions(choices={"reductions": "mean"}),
     r"--reductions: sdpa has no reductions to choose \(its options: --features\)"),
    (CheckOptions(choices={"features": ["masks", "dropout"]}),
     r"--features: unknown sdpa features \['dropout'\] \(dropout cannot be compared.*; "
     r"choose from \['masks'"),
])
def test_bad_options_name_the_option_and_what_is_allowed(options, message):
    with pytest.raises((ValueError, TypeError), match=message):  # TypeError: a wrong type
        options.kwargs(RECORDS["sdpa"])


def test_a_device_must_exist_here(monkeypatch):
    assert check_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert check_device("cuda:1") == "cuda:1"
    with pytest.raises(ValueError, match=r"'cuda:2' does not exist: this machine has 2 cuda"):
        check_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"'cuda' is not available on this machine \(torch.cuda"):
        check_device("cuda")
    for bad in ("gpu", "meta"):
        with pytest.raises(ValueError, match=repr(bad)):
            check_device(bad)


def test_a_record_is_plain_data():
    """No torch object in a record: the CLI and the plugin read records before importing any."""
    for r in RECORDS.values():
        assert isinstance(r, OpRecord)
        fields = dataclasses.asdict(r)
        assert all(isinstance(v, (str, tuple, list)) for v in fields.values())


def test_the_public_names_of_refllm_testing_import_on_first_use():
    import refllm.testing as T

    for name in T.__all__:
        assert getattr(T, name) is not None, name
    assert set(T.__all__) <= set(dir(T))
    with pytest.raises(AttributeError, match="no attribute 'check_conv2d'"):
        T.check_conv2d  # noqa: B018
