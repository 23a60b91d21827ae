"""The GPU proof (bench/gpu/run.sh) rehearsed on the CPU, so it cannot rot between the rare
sessions that have a GPU; and refllm's imports against what the GPU image has."""

import ast
import json
import os
import pathlib
import subprocess
import sys

import refllm

ROOT = pathlib.Path(__file__).resolve().parents[1]
# what the GPU image has preinstalled (the device tool's page), and what travels as wheels
GPU_IMAGE = {"torch", "transformers", "hypothesis", "pytest", "pytest_benchmark", "scipy",
             "matplotlib", "safetensors", "tqdm", "rich", "numpy"}
CARRIED_WHEELS = {"einops", "jaxtyping"}  # bench/gpu/fetch-wheels.sh


def test_the_dry_run_runs_every_stage_on_the_cpu_and_writes_at_most_8_files(tmp_path):
    out = tmp_path / "gpu"
    # as inside an xdist worker, however this test is run: the stages must not inherit it
    env = {**os.environ, "REFLLM_NO_INSTALL": "1", "PYTHON": sys.executable,
           "PYTEST_XDIST_WORKER": "gw0"}
    proc = subprocess.run(["bash", str(ROOT / "bench/gpu/run.sh"), "--dry-run", "--out",
                           str(out)], capture_output=True, text=True, env=env, timeout=600)
    summary = json.loads((out / "summary.json").read_text())
    stages = {s["stage"]: s for s in summary["stages"]}
    assert list(stages) == ["env", "gpu-tests", "bench", "scaling"]
    failed = [s for s in summary["stages"] if s["status"] != "passed"]
    assert proc.returncode == 0 and summary["passed"], (failed, proc.stderr,
                                                        (out / "run.log").read_text()[-3000:])
    assert stages["env"]["torch"] and stages["gpu-tests"]["test"] > 0  # collected
    assert stages["scaling"]["ladder"] == "h200-dry-run" and stages["scaling"]["rules"]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all(p.is_file() for p in out.iterdir()), files
    assert {"summary.json", "run.log", "records.jsonl", "loss_vs_params.png"} <= set(files)


def _guarded(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside a ``try`` whose handler catches ImportError: optional
    extras (submitit, transformers) that refllm asks for only when their feature is used."""
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError",
                                                               "ModuleNotFoundError")
                for h in node.handlers):
            guarded |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return guarded


def _third_party_imports() -> set[str]:
    found = set()
    for path in pathlib.Path(refllm.__file__).parent.rglob("*.py"):
        tree = ast.parse(path.read_text())
        optional = _guarded(tree)
        for node in ast.walk(tree):
            if id(node) in optional:
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            found |= {n.split(".")[0] for n in names}
    return {n for n in found if n not in sys.stdlib_module_names and n != "refllm"}


def test_every_import_of_refllm_is_on_the_gpu_image_or_carried():
    missing = _third_party_imports() - GPU_IMAGE - CARRIED_WHEELS
    assert not missing, f"refllm imports {sorted(missing)}: not on the GPU image (no network)"
