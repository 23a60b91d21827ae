"""``NAME=VALUE`` settings from the command line: hyper-parameters a check holds fixed.

``refllm check optimizer mypkg:AdamW --like adam --set maximize=false --set betas=0.9,0.99``
(and the plugin's ``--refllm-optimizer-set``) fix hyper-parameters that the check would
otherwise draw. A value is read without ``eval``: ``true``/``false`` (any case), ``none``, an
integer, a float (``1e-3``; finite only), a comma-separated tuple of those (``0.9,0.99``, with
or without parentheses), or else a word (``match_rms_adamw``). It is then validated against the
op's known hyper-parameters, each given by its default value (torch's): the name must be one of
them, and the value must have the default's type. A bool takes a bool; a float takes a float or
an int; an int takes an int; a tuple takes a tuple of the same length whose items are
validated alike; a None default takes None or a word.

>>> parse_settings(["betas=0.9,0.99", "amsgrad=True"], {"betas": (0.9, 0.999),
...                "amsgrad": False}, what="adam")
{'betas': (0.9, 0.99), 'amsgrad': True}

This module imports neither torch nor pytest.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

_INT = re.compile(r"[+-]?\d+")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def parse_value(text: str) -> Any:
    """The value written ``text``: a bool, None, an int, a float, a word, or a tuple of those
    (comma-separated); `ValueError` for an empty item or a string that is none of these."""
    body = text.strip()
    if body[:1] + body[-1:] in ("()", "[]"):
        body = body[1:-1]
    if "," in body:
        return tuple(_scalar(part, text) for part in body.split(","))
    return _scalar(body, text)


def _scalar(part: str, whole: str) -> Any:
    word = part.strip()
    lower = word.lower()
    if lower in ("true", "false"):
        return lower == "true"
    if lower == "none":
        return None
    if _INT.fullmatch(word):
        return int(word)
    try:
        number = float(word)
    except ValueError:
        number = None
    if number is not None:
        if not math.isfinite(number):
            raise ValueError(f"{whole!r}: {word!r} is not a finite number")
        return number
    if _WORD.fullmatch(word):
        return word
    raise ValueError(f"{whole!r}: {word!r} is not a bool, none, a number or a name")


def parse_settings(texts: Iterable[str], known: Mapping[str, Any], *, what: str,
                   flag: str = "--set") -> dict[str, Any]:
    """``{name: value}`` for ``NAME=VALUE`` texts, each validated against ``known`` (name ->
    default value, whose type the value must have); `ValueError` naming ``flag`` and the setting
    for a text without ``=``, an unknown name (listing the known ones, those of ``what``), a
    name given twice or a value of the wrong type."""
    out: dict[str, Any] = {}
    for text in texts:
        name, eq, raw = str(text).partition("=")
        name = name.strip()
        if not eq or not name:
            raise ValueError(f"{flag}: write NAME=VALUE (e.g. maximize=false), got {text!r}")
        if name not in known:
            raise ValueError(f"{flag}: unknown hyper-parameter {name!r} of {what}; the known "
                             f"ones: {sorted(known)}")
        if name in out:
            raise ValueError(f"{flag}: {name} is set twice")
        try:
            out[name] = _typed(parse_value(raw), known[name])
        except ValueError as exc:
            raise ValueError(f"{flag} {name}: {exc} ({what}'s {name} defaults to "
                             f"{known[name]!r})") from None
    return out


def _typed(value: Any, default: Any) -> Any:
    """``value`` as the type of ``default``; `ValueError` saying what was expected."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {value!r}")
        return float(value)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, tuple) or len(value) != len(default):
            raise ValueError(f"expected {len(default)} comma-separated values, got {value!r}")
        return tuple(_typed(v, d) for v, d in zip(value, default))
    if default is None:  # Adafactor's eps1, Muon's adjust_lr_fn: None, a number or a name
        if isinstance(value, bool) or isinstance(value, tuple):
            raise ValueError(f"expected none, a number or a name, got {value!r}")
        return float(value) if isinstance(value, int) else value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"expected a name, got {value!r}")
        return value
    raise ValueError(f"cannot be set from the command line (default {default!r})")


__all__ = ["parse_settings", "parse_value"]
