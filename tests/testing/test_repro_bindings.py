"""A repro snippet says what to fill in for a target that cannot be imported by name."""

import functools

import pytest
import torch
import torch.nn.functional as F

from refllm.testing import check_sdpa
from refllm.testing.checks import check_multihead_attention, check_optimizer
from refllm.testing.engine.binding import bind_lines


def sdpa_with_scale(query, key, value, scale=None, **kwargs):
    """Importable by name; its partials below fix a wrong ``scale``."""
    return F.scaled_dot_product_attention(query, key, value, scale=scale, **kwargs)


def _local_definitions():
    def local_sdpa(query, key, value, scale=None, **kwargs):
        return F.scaled_dot_product_attention(query, key, value, scale=0.25, **kwargs)

    class LocalMHA(torch.nn.MultiheadAttention):
        def forward(self, *args, **kwargs):
            out, weights = super().forward(*args, **kwargs)
            return out * 1.01, weights

    return local_sdpa, LocalMHA


local_sdpa, LocalMHA = _local_definitions()


def _run_snippet(snippet: str, **names) -> dict:
    scope = dict(names)
    exec(compile(snippet, "<repro>", "exec"), scope)  # noqa: S102 - the repro must run
    return scope


def test_a_partial_of_an_importable_function_is_rebuilt_in_the_snippet():
    target = functools.partial(sdpa_with_scale, scale=0.25)
    report = check_sdpa(target, examples=10, seed=0, raise_on_failure=False)
    assert not report.passed and "None  # TODO" not in report.snippet
    assert f"import {__name__}\n" in report.snippet
    assert f"fn = functools.partial({__name__}.sdpa_with_scale, scale=0.25)" in report.snippet
    scope = _run_snippet(report.snippet)  # runnable as it is, and reproduces the disagreement
    assert scope["max_abs_error"]["forward output"] > 1e-3


def test_a_partial_with_positional_and_tensor_arguments_is_rebuilt_exactly():
    target = functools.partial(F.mse_loss, torch.tensor([1.5, -2.0]), reduction="sum")
    fn = _run_snippet(bind_lines(target, "fn"))["fn"]
    assert fn.func is F.mse_loss and fn.keywords == {"reduction": "sum"}
    assert torch.equal(fn.args[0], torch.tensor([1.5, -2.0]))


def test_an_argument_without_source_is_left_as_ellipsis_with_a_comment():
    lines = bind_lines(functools.partial(sdpa_with_scale, scale=object()), "fn")
    assert "# TODO: replace each ... below" in lines
    assert lines.endswith("fn = functools.partial(" + f"{__name__}.sdpa_with_scale, scale=...)")


def test_a_partial_of_a_local_function_asks_for_its_definition():
    report = check_sdpa(functools.partial(local_sdpa, dropout_p=0.0), examples=10, seed=0,
                        raise_on_failure=False)
    assert not report.passed and "None  # TODO" not in report.snippet
    assert "# TODO: paste the definition of function local_sdpa here" in report.snippet
    assert "fn = functools.partial(local_sdpa, dropout_p=0.0)" in report.snippet
    scope = _run_snippet(report.snippet, local_sdpa=local_sdpa)  # "pasted" definition
    assert scope["max_abs_error"]["forward output"] > 1e-3


@pytest.mark.filterwarnings("ignore::UserWarning")  # PyTorch's deprecation of mixed masks
def test_a_local_class_is_named_and_bound_so_the_snippet_runs_once_pasted():
    report = check_multihead_attention(LocalMHA, examples=5, seed=0, raise_on_failure=False)
    assert not report.passed and "None  # TODO" not in report.snippet
    assert "# TODO: paste the definition of class LocalMHA here" in report.snippet
    assert "\nModule = LocalMHA\n" in report.snippet
    scope = _run_snippet(report.snippet, LocalMHA=LocalMHA)
    assert scope["max_abs_error"]["forward output"] > 1e-3


def test_a_local_optimizer_class_is_named_too():
    class LocalSGD(torch.optim.SGD):
        pass

    assert bind_lines(LocalSGD, "Optimizer").endswith("\nOptimizer = LocalSGD")
    report = check_optimizer(LocalSGD, like="gd", examples=3, seed=0)
    assert report.passed


def test_a_lambda_keeps_a_placeholder_saying_why():
    assert bind_lines(lambda q, k, v: q, "fn") == (
        "fn = None  # TODO: your implementation here (a lambda cannot be imported by name)")
