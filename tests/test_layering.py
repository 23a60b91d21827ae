"""The layering of ARCHITECTURE.md: ops -> nn -> model -> train -> scaling; testing reads ops.

A lower layer never imports a higher one; checked on the source text of every module.
"""

import ast
import pathlib

import pytest

import refllm

ROOT = pathlib.Path(refllm.__file__).parent
ORDER = ["ops", "nn", "model", "data", "train", "scaling"]
# what each top-level part may import from refllm (besides itself and the private helpers)
ALLOWED = {
    "ops": set(),
    "nn": {"ops"},
    "model": {"ops", "nn"},
    "data": set(),
    "train": {"ops", "nn", "model", "data"},
    "scaling": {"ops", "nn", "model", "data", "train"},
    "testing": {"ops", "nn"},
    "conformance": {"testing", "ops", "nn"},
}


def _refllm_imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "refllm" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(part):
    base = ROOT / part
    files = list(base.rglob("*.py")) if base.is_dir() else []
    for path in files:
        bad = {m for m in _refllm_imports(path) if not m.startswith("_")} - ALLOWED[part] - {part}
        assert not bad, (
            f"{path.relative_to(ROOT)} imports refllm.{sorted(bad)}; "
            f"{part} may import {sorted(ALLOWED[part])}"
        )
