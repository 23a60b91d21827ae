"""Repro-snippet lines that bind the user's implementation to a name (``fn``, ``Module``, ...).

A target importable by name is imported (``from mypkg.attn import flash as fn``). Otherwise the
snippet says what the user must fill in, and stays runnable once they have:

- a ``functools.partial`` of an importable function is rebuilt from ``.func``, ``.args`` and
  ``.keywords``: ``fn = functools.partial(flash, causal=True)`` (an argument whose source cannot
  be written, e.g. an arbitrary object, is left as ``...`` with a comment saying so);
- a function or class that cannot be imported (defined inside a function, or in ``__main__`` of
  another program) gets a comment naming it and asking for its definition, then ``fn = <name>``;
- a partial of such a function gets both: the comment, then the rebuilt partial;
- anything else (a lambda, a callable instance) keeps a ``None`` placeholder with the reason.
"""

from __future__ import annotations

import ast
import functools
from typing import Any

from refllm.testing.engine.case import to_source

PLACEHOLDER = "..."
UNWRITTEN = "# TODO: replace each ... below by the partial's argument (it has no source form)"


def bind_lines(obj: Any, alias: str) -> str:
    """Lines that bind ``alias`` to ``obj`` when ``obj`` cannot be imported by name itself."""
    if obj is None:  # the caller did not say what the object is
        return f"{alias} = None  # TODO: your implementation here (it cannot be imported by name)"
    if isinstance(obj, functools.partial):
        return _partial_lines(obj, alias)
    name = _defined_name(obj)
    if name:
        return f"{_paste_comment(obj, name)}\n{alias} = {name}"
    return (f"{alias} = None  # TODO: your implementation here ({_kind(obj)} cannot be "
            "imported by name)")


def _kind(obj: Any) -> str:
    """How a placeholder names an object no definition can be pasted for."""
    if getattr(obj, "__name__", "") == "<lambda>":
        return "a lambda"
    return f"a {type(obj).__name__} object"


def _partial_lines(p: functools.partial, alias: str) -> str:
    from refllm.testing.engine.targets import resolve

    _, name = resolve(p.func)
    lines = ["import functools"]
    if name:
        mod, _, qual = name.partition(":")
        lines.append(f"import {mod}")
        func = f"{mod}.{qual}"
    else:
        func = _defined_name(p.func)
        if not func:  # a lambda or a callable instance inside the partial
            return (f"{alias} = None  # TODO: your implementation here (a functools.partial of "
                    f"{_kind(p.func)} cannot be imported by name)")
        lines.append(_paste_comment(p.func, func))
    parts = [func] + [_source(a) for a in p.args]
    parts += [f"{k}={_source(v)}" for k, v in p.keywords.items()]
    if PLACEHOLDER in parts[1:] or any(x.endswith("=" + PLACEHOLDER) for x in parts):
        lines.append(UNWRITTEN)
    lines.append(f"{alias} = functools.partial({', '.join(parts)})")
    return "\n".join(lines)


def _defined_name(obj: Any) -> str:
    """The name a pasted definition of ``obj`` binds (a named function or class), else ""."""
    name = getattr(obj, "__name__", "")
    is_def = isinstance(obj, type) or callable(obj) and hasattr(obj, "__code__")
    return name if is_def and name.isidentifier() else ""


def _paste_comment(obj: Any, name: str) -> str:
    kind = "class" if isinstance(obj, type) else "function"
    where = getattr(obj, "__qualname__", name)
    module = getattr(obj, "__module__", "?")
    return (f"# TODO: paste the definition of {kind} {name} here ({module}.{where} cannot be "
            "imported by name)")


def _source(value: Any) -> str:
    src = to_source(value)
    try:
        ast.parse(src, mode="eval")
    except SyntaxError:
        return PLACEHOLDER
    return src
