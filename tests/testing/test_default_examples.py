"""One default example count: the public checks, the CLI, the pytest plugin and the docs agree."""

import pathlib

import pytest
import torch.nn.functional as F
from hypothesis import settings

from refllm.cli import main
from refllm.testing import check_mse
from refllm.testing.engine.settings import (
    DEFAULT_EXAMPLES,
    PROFILES,
    default_examples,
    load_profile,
)
from refllm.testing.mse.strategy import mse_default_calls

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "oracle.md"
FIXED = len(mse_default_calls(max_size=6))  # judged before the search, counted on top
settings.register_profile("refllm-test-seven", max_examples=7)
settings.register_profile("someone-elses", max_examples=7)


@pytest.fixture
def active_profile():
    """Load a Hypothesis profile for one test, then restore refllm's active one."""
    before = settings.get_current_profile_name()
    yield settings.load_profile
    settings.load_profile(before)


def test_refllm_tests_run_under_a_refllm_profile():
    assert settings.get_current_profile_name().startswith("refllm-")
    assert default_examples() == settings().max_examples


@pytest.mark.parametrize("profile", ["default", "someone-elses"])
def test_without_a_refllm_profile_a_check_draws_the_default_count(active_profile, profile):
    active_profile(profile)  # Hypothesis' own (100 examples), or a user's own (7)
    report = check_mse(F.mse_loss, seed=0)
    assert report.passed and report.examples == DEFAULT_EXAMPLES + FIXED


def test_an_active_refllm_profile_governs_the_count(active_profile):
    active_profile("refllm-test-seven")
    assert check_mse(F.mse_loss, seed=0).examples == 7 + FIXED


def test_the_thorough_profile_still_governs_refllms_own_suite(active_profile):
    load_profile("thorough")
    assert default_examples() == PROFILES["thorough"]["max_examples"] > DEFAULT_EXAMPLES


def test_an_explicit_count_wins_over_every_profile(active_profile):
    active_profile("refllm-test-seven")
    assert check_mse(F.mse_loss, seed=0, examples=3).examples == 3 + FIXED


def test_the_cli_draws_the_default_count(active_profile, capsys):
    active_profile("default")
    assert main(["check", "mse", "torch.nn.functional:mse_loss", "--seed", "0"]) == 0
    assert f"({DEFAULT_EXAMPLES + FIXED} examples" in capsys.readouterr().out


def test_the_plugin_draws_the_default_count(active_profile, pytestconfig):
    from refllm.testing.plugin import Oracle

    active_profile("default")
    oracle = Oracle(pytestconfig)
    if oracle.examples is not None:
        pytest.skip("--refllm-examples was given to this run")
    assert oracle.mse(F.mse_loss, seed=0).examples == DEFAULT_EXAMPLES + FIXED


class _Options:
    """Records the options `pytest_addoption` adds (a stand-in for pytest's parser and group)."""

    def __init__(self):
        self.help = {}

    def getgroup(self, *args):
        return self

    def addoption(self, *names, **kwargs):
        self.help.update({n: kwargs.get("help", "") for n in names})


def test_the_cli_help_the_plugin_help_and_the_docs_say_the_same_number(capsys):
    from refllm.testing.plugin import pytest_addoption

    assert main(["check", "--help"]) == 0
    cli_help = " ".join(capsys.readouterr().out.split())
    assert f"examples to draw (default {DEFAULT_EXAMPLES}," in cli_help
    options = _Options()
    pytest_addoption(options)
    assert f"(default {DEFAULT_EXAMPLES}," in options.help["--refllm-examples"]
    assert f"`examples` (default {DEFAULT_EXAMPLES}," in DOCS.read_text()
    assert PROFILES["dev"]["max_examples"] == PROFILES["ci"]["max_examples"] == DEFAULT_EXAMPLES
