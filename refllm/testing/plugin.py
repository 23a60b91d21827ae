"""pytest plugin: refllm's oracle in one line of a user's test suite.

Registered as the ``pytest11`` entry point ``refllm``, so it is active wherever refllm is installed.
It only adds options and a fixture (nothing runs unless a test asks for it).

Options (all optional), one set per op record (:mod:`refllm.testing.registry`):
``--refllm-sdpa=module:function``, ``--refllm-multihead=module:Class`` (a
``torch.nn.MultiheadAttention``-compatible class), ``--refllm-cross-entropy=...``,
``--refllm-mse=...``, ``--refllm-optimizer=module:Class``; each op's own choices as
``--refllm-OP-CHOICE``: ``--refllm-sdpa-features=masks,causal``,
``--refllm-cross-entropy-reductions=mean``, ``--refllm-optimizer-like=adamw``, ...;
``--refllm-optimizer-set=maximize=false`` (repeatable) holds an optimizer's hyper-parameter
fixed, validated for the like of the command line or of the test's call; and for all
of them ``--refllm-dtype=float32`` (float64, float32, bfloat16, float16 or bf16, fp16, ...),
``--refllm-device=cpu``, ``--refllm-examples=N`` (default 40, as for the checks: see
:mod:`refllm.testing.engine.settings`), ``--refllm-seed=N`` (which fixes the drawn examples) and
``--refllm-threads=N`` and ``--refllm-timeout=SECONDS`` (per example; 0: none). A bad value
(an unknown dtype or feature, a device this machine lacks, a
target that cannot be imported) stops the run as a usage error before any test runs.

The ``refllm_oracle`` fixture runs a check; a target given in the call wins over the option::

    def test_my_attention(refllm_oracle):
        refllm_oracle.sdpa(my_attention)          # raises OracleFailure with the report

    def test_from_the_command_line(refllm_oracle):
        refllm_oracle.sdpa()                      # --refllm-sdpa's target, or skip

The conformance suite runs all named targets: ``pytest --pyargs refllm.conformance
--refllm-sdpa=mypkg.attn:flash_attention``; the ops not named are skipped, saying so.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import pytest

from refllm.testing.engine.options import CheckOptions, parse_dtype
from refllm.testing.registry import RECORDS, OpRecord


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("refllm", "refllm correctness oracle")
    for record in RECORDS.values():
        group.addoption(f"--refllm-{record.name}", default=None, metavar=record.metavar,
                        help=f"check this {record.name} implementation (the signature of "
                             f"{record.signature}) against refllm")
        group.addoption(f"--refllm-{record.name}-contract", default=None, metavar="module:name",
                        help=f"{record.name}: a refllm.testing.contract.Contract (what the "
                             "target supports)")
        if record.hyper:
            group.addoption(f"--refllm-{record.name}-set", action="append", default=None,
                            metavar="NAME=VALUE",
                            help=f"{record.name}: hold a hyper-parameter fixed, e.g. "
                                 "maximize=false or betas=0.9,0.99 (repeat it for several)")
        for choice in record.choices:
            group.addoption(f"--refllm-{record.name}-{choice.keyword}", default=None,
                            metavar="NAME" if not choice.many else "NAME,...",
                            help=f"{record.name}: {choice.help}")
    for field in CheckOptions.flags():  # every check's options, declared once
        if field.name in ("contract", "set"):
            continue  # per op: --refllm-OP-contract, --refllm-OP-set
        group.addoption(f"--refllm-{field.name.replace('_', '-')}", dest=f"refllm_{field.name}",
                        type=field.metadata["flag"], default=field.default,
                        help=field.metadata["help"])


def check_options(config: pytest.Config, record: OpRecord) -> CheckOptions:
    """The command line's options for ``record``'s check."""
    common = {f.name: config.getoption(f"refllm_{f.name}") for f in CheckOptions.flags()
              if f.name not in ("contract", "set")}
    return CheckOptions(
        **common, contract=config.getoption(f"--refllm-{record.name}-contract", None),
        set=tuple(config.getoption(f"--refllm-{record.name}-set", None) or ()),
        choices={c.keyword: config.getoption(f"--refllm-{record.name}-{c.keyword}", None)
                 for c in record.choices})  # None: a record added after pytest started


def _kwargs(config: pytest.Config, record: OpRecord,
            call: dict[str, Any] | None = None) -> dict[str, Any]:
    """The check's keyword arguments from the command line; `ValueError` naming the option.

    ``call``: the keywords of the test's own call. A choice made there (``like="sgd"``) wins
    over the command line's, and ``--refllm-OP-set``'s hyper-parameters are validated for it."""
    options = check_options(config, record)
    call = call or {}
    made = {c.keyword: call[c.keyword] for c in record.choices if c.keyword in call}
    if made and options.set:
        options = dataclasses.replace(options, choices={**options.choices, **made})
    return options.kwargs(record, flag="--refllm-{}",
                          choice_flag=f"--refllm-{record.name}-{{}}")


def pytest_configure(config: pytest.Config) -> None:
    """Refuse a bad ``--refllm-*`` option up front, as a usage error rather than a failed test.

    Cheap where no option is given (no check is imported then)."""
    try:
        for record in RECORDS.values():
            _configured_kwargs(config, record)
            target = config.getoption(f"--refllm-{record.name}")
            if target is not None:
                from refllm.testing.engine.targets import load

                load(target)
    except ValueError as exc:
        raise pytest.UsageError(f"refllm: {exc}") from None


def _configured_kwargs(config: pytest.Config, record: OpRecord) -> dict[str, Any]:
    """`_kwargs` before any test runs. ``--refllm-OP-set`` settings that fail for the command
    line's choices pass where they are valid for another value of a one-name choice not given on
    the command line (an optimizer's ``like``), which a test may still choose in its call; they
    are validated again then."""
    try:
        return _kwargs(config, record)
    except ValueError as exc:
        first = exc
    options = check_options(config, record)
    for choice in record.choices:
        if not options.set or choice.many or options.choices.get(choice.keyword) is not None:
            continue
        for name in choice.allowed():
            try:
                return _kwargs(config, record, {choice.keyword: name})
            except ValueError:
                continue
    raise first


class Oracle:
    """The ``refllm_oracle`` fixture: the checks with the command line's options filled in.

    ``oracle.check("sdpa", fn, **kwargs)``, or one method per op record: ``oracle.sdpa(fn)``,
    ``oracle.cross_entropy(fn)``, ``oracle.optimizer(cls, like="adam")``, ... Keywords given in
    the call win over the command line's (``dtype`` may be a name such as ``"bf16"``).
    """

    def __init__(self, config: pytest.Config):
        self.config = config
        self.targets = {name: config.getoption(f"--refllm-{name}", None) for name in RECORDS}

    @property
    def examples(self) -> int | None:
        return self.config.getoption("--refllm-examples")

    def check(self, op: str, target: Any = None, **kwargs: Any) -> Any:
        record = RECORDS[op]
        target = target if target is not None else self.targets.get(op)
        if target is None:
            pytest.skip(f"no {op} implementation named: pass --refllm-{op}=module:name")
        if "dtype" in kwargs:
            kwargs["dtype"] = parse_dtype(kwargs["dtype"])
        from refllm.testing.engine.report import OracleFailure

        try:
            return record.run(target, **{**_kwargs(self.config, record, kwargs), **kwargs})
        except OracleFailure as failure:
            # the report is the failure: the test's own line and the report, not refllm's frames
            __tracebackhide__ = True  # noqa: F841 (read by pytest)
            raise failure.with_traceback(None) from None

    def __getattr__(self, name: str) -> Callable[..., Any]:
        op = next((r.name for r in RECORDS.values() if r.method == name), None)
        if op is None:
            raise AttributeError(f"refllm_oracle has no check {name!r}; the ops are "
                                 f"{[r.method for r in RECORDS.values()]}")
        return functools.partial(self.check, op)


@pytest.fixture
def refllm_oracle(request: pytest.FixtureRequest) -> Oracle:
    """Run refllm's checks: ``.sdpa``, ``.multihead``, ``.cross_entropy``, ``.mse``,
    ``.optimizer`` (one per op record), or ``.check(op, target)``."""
    return Oracle(request.config)


def pytest_report_header(config: pytest.Config) -> list[str]:
    named = [f"{op}={config.getoption(f'--refllm-{op}')}" for op in RECORDS
             if config.getoption(f"--refllm-{op}")]
    if not named:
        return []
    return [f"refllm oracle: {', '.join(named)} in {config.getoption('--refllm-dtype')} on "
            f"{config.getoption('--refllm-device')}"]
