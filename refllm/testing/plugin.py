"""pytest plugin: refllm's oracle in one line of a user's test suite.

Registered as the ``pytest11`` entry point ``refllm``, so it is active wherever refllm is installed.
It only adds options and a fixture (nothing runs unless a test asks for it) and imports torch
lazily, so it costs nothing in suites that do not use it.

Options (all optional): ``--refllm-sdpa=module:function``, ``--refllm-cross-entropy=...``,
``--refllm-mse=...``, ``--refllm-optimizer=module:Class`` with ``--refllm-optimizer-like=adamw``,
``--refllm-multihead=module:Class`` (a ``torch.nn.MultiheadAttention``-compatible class),
``--refllm-dtype=float32`` (float64, float32, bfloat16, float16 or bf16, fp16, ...),
``--refllm-device=cpu``, ``--refllm-examples=N`` (default 40, as for the checks: see
:mod:`refllm.testing.settings`) and ``--refllm-seed=N`` (which fixes the drawn examples).

The ``refllm_oracle`` fixture runs a check; a target given in the call wins over the option::

    def test_my_attention(refllm_oracle):
        refllm_oracle.sdpa(my_attention)          # raises OracleFailure with the report

    def test_from_the_command_line(refllm_oracle):
        refllm_oracle.sdpa()                      # --refllm-sdpa's target, or skip

The conformance suite runs all named targets: ``pytest --pyargs refllm.conformance
--refllm-sdpa=mypkg.attn:flash_attention``; the ops not named are skipped, saying so.
"""

from __future__ import annotations

from typing import Any

import pytest

OPS = {  # option suffix -> check name of refllm.testing.checks.CHECKS
    "sdpa": "sdpa",
    "cross-entropy": "cross-entropy",
    "mse": "mse",
    "optimizer": "optimizer",
    "multihead": "multihead",
}
CLASS_OPS = ("optimizer", "multihead")  # their targets are classes
DTYPES = {
    "float64": "float64", "fp64": "float64", "f64": "float64", "double": "float64",
    "float32": "float32", "fp32": "float32", "f32": "float32", "float": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "f16": "float16", "half": "float16",
}


def parse_dtype(name: str) -> Any:
    """``torch.<dtype>`` for a name such as ``"bf16"``; `ValueError` for an unknown name."""
    import torch

    key = str(name).lower().removeprefix("torch.")
    if key not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose from {sorted(set(DTYPES))}")
    return getattr(torch, DTYPES[key])


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("refllm", "refllm correctness oracle")
    for op in OPS:
        what = "Class" if op in CLASS_OPS else "function"
        group.addoption(f"--refllm-{op}", default=None, metavar=f"module:{what}",
                        help=f"check this {op} implementation against refllm")
    group.addoption("--refllm-optimizer-like", default="adamw",
                    choices=["gd", "sgd", "adam", "adamw"],
                    help="the torch.optim class the optimizer imitates (default adamw)")
    group.addoption("--refllm-dtype", default="float32", help="dtype of the checked inputs")
    group.addoption("--refllm-device", default="cpu", help="device of the checked inputs")
    group.addoption("--refllm-examples", default=None, type=int,
                    help="examples per check (default 40, refllm.testing.settings."
                         "DEFAULT_EXAMPLES, or the active refllm profile's)")
    group.addoption("--refllm-seed", default=None, type=int, help="seed of the search")
    group.addoption("--refllm-threads", default=1, type=int,
                    help="intra-op threads during a check (default 1: the fastest on its small "
                         "examples; the caller's setting is restored after)")


class Oracle:
    """The ``refllm_oracle`` fixture: the checks with the command line's defaults filled in."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.targets = {op: config.getoption(f"--refllm-{op}") for op in OPS}
        self.like = config.getoption("--refllm-optimizer-like")
        self.dtype_name = config.getoption("--refllm-dtype")
        self.device = config.getoption("--refllm-device")
        self.examples = config.getoption("--refllm-examples")
        self.seed = config.getoption("--refllm-seed")
        self.threads = config.getoption("--refllm-threads")

    def _check(self, op: str, target: Any, **kwargs: Any) -> Any:
        from refllm.testing.checks import CHECKS

        target = target if target is not None else self.targets[op]
        if target is None:
            pytest.skip(f"no {op} implementation named: pass --refllm-{op}=module:name")
        try:
            dtype = parse_dtype(kwargs.pop("dtype", self.dtype_name))
        except ValueError as exc:
            raise pytest.UsageError(f"--refllm-dtype: {exc}") from None
        options = dict(dtype=dtype, device=self.device, examples=self.examples, seed=self.seed,
                       threads=self.threads)
        options.update(kwargs)
        return CHECKS[op](target, **options)

    def sdpa(self, fn: Any = None, **kwargs: Any) -> Any:
        return self._check("sdpa", fn, **kwargs)

    def cross_entropy(self, fn: Any = None, **kwargs: Any) -> Any:
        return self._check("cross-entropy", fn, **kwargs)

    def mse(self, fn: Any = None, **kwargs: Any) -> Any:
        return self._check("mse", fn, **kwargs)

    def optimizer(self, cls: Any = None, **kwargs: Any) -> Any:
        kwargs.setdefault("like", self.like)
        return self._check("optimizer", cls, **kwargs)

    def multihead(self, cls: Any = None, **kwargs: Any) -> Any:
        return self._check("multihead", cls, **kwargs)


@pytest.fixture
def refllm_oracle(request: pytest.FixtureRequest) -> Oracle:
    """Run refllm's checks (``.sdpa``, ``.cross_entropy``, ``.mse``, ``.optimizer``,
    ``.multihead``)."""
    return Oracle(request.config)


def pytest_report_header(config: pytest.Config) -> list[str]:
    named = [f"{op}={config.getoption(f'--refllm-{op}')}" for op in OPS
             if config.getoption(f"--refllm-{op}")]
    if not named:
        return []
    return [f"refllm oracle: {', '.join(named)} in {config.getoption('--refllm-dtype')} on "
            f"{config.getoption('--refllm-device')}"]
