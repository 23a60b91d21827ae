"""The shared argument checks (refllm._validation)."""

import pytest

from refllm._validation import choice_error, require_choice


def test_require_choice_names_the_argument_the_choices_and_what_it_got():
    require_choice("reduction", "sum", ("mean", "sum", "none"))
    with pytest.raises(ValueError, match=r"reduction must be one of \['mean', 'sum'\], got 'max'"):
        require_choice("reduction", "max", ("mean", "sum"))
    with pytest.raises(ValueError, match=r"got \['a'\]"):  # an unhashable value is not a choice
        require_choice("preset", ["a"], {"a": 1})
    err = choice_error("--preset", "x", ["cpu"], also="or a JSON file")
    assert str(err) == "--preset must be one of ['cpu'] or a JSON file, got 'x'"
