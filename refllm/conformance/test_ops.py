"""Conformance: each implementation named with ``--refllm-OP`` agrees with refllm.

One test per op record (:data:`refllm.testing.registry.RECORDS`): values and gradients for the
functions, outputs, weights and gradients for ``--refllm-multihead``, parameters and state step by
step for ``--refllm-optimizer``. An op not named is skipped, saying which option names it.
"""

import pytest

from refllm.testing.registry import RECORDS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per record, read when the suite is collected (not when the module is imported:
    a record registered at run time is in it)."""
    if "op" in metafunc.fixturenames:
        metafunc.parametrize("op", list(RECORDS))


def test_the_named_implementation_agrees_with_refllm(refllm_oracle, op):
    refllm_oracle.check(op)
