"""A comparison that shows the case's repro snippet only when it fails."""

from refllm.testing import assert_close
from refllm.testing.engine.case import Case


def close(actual, expected, case: Case, name: str, **kwargs) -> None:
    """assert_close with the case's repro snippet, written out only when the comparison fails
    (printing a kernel-sized case's tensors costs more than the test itself)."""
    try:
        assert_close(actual, expected, **kwargs)
    except AssertionError as error:
        raise AssertionError(f"{case.snippet(name)}\n{error}") from None
