"""The Slurm launcher's path, on submitit's LocalExecutor (the same tasks, as local processes):
one task per shard, all appending to one records file, and a requeue that resumes."""

from __future__ import annotations

import json
import pathlib

import pytest
import submitit

from refllm.cli import main
from refllm.scaling.sweep import runs as sw
from refllm.scaling.sweep.submit import ShardTask
from tests.scaling.tiny_preset import tiny_preset


def _preset_file(tmp_path: pathlib.Path, **changes) -> pathlib.Path:
    preset = tiny_preset(widths=(8, 12), seeds=(0,), **changes)
    path = tmp_path / "tiny.json"
    fields = {k: getattr(preset, k) for k in preset.__dataclass_fields__}
    path.write_text(json.dumps(fields))
    return path


def test_a_requeued_task_is_the_same_task_and_skips_what_is_done(tmp_path):
    preset = tiny_preset(widths=(8,), seeds=(0,))
    task = ShardTask(preset, str(tmp_path), 0, 1)
    again = task.checkpoint()
    assert isinstance(again, submitit.helpers.DelayedSubmission) and again.function == task
    assert task()["trained"] == 1 and again.function()["trained"] == 0  # the rerun skips it


def test_refllm_scaling_submitit_local_waits_and_reports(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["scaling", "--preset", str(_preset_file(tmp_path)), "--out", str(out),
                 "--submitit", "local", "--shards", "2", "--wait", "--no-progress"])
    text = capsys.readouterr().out
    assert "2 task(s) submitted to 'local'" in text and "task 0/2 done" in text
    assert code in (0, 1) and "verdict" in text.lower()  # two sizes: the report is built
    records = sw.finished(out)
    assert len(records) == 2 and (out / "submitit").is_dir()
    assert {r["run_id"] for r in records.values()} == set(records)


@pytest.mark.parametrize("args, message", [
    (["--submitit", "local", "--shard", "0/2"], "does not go with --shard"),
    (["--submitit", "local", "--shards", "9"], "at most 2 tasks"),
    (["--submitit", "local", "--shards", "0"], "--shards"),
    (["--submitit", "  "], "partition name"),
    (["--shards", "2"], "go with --submitit"),
    (["--wait"], "go with --submitit"),
])
def test_bad_launcher_options_are_usage_errors(tmp_path, capsys, args, message):
    code = main(["scaling", "--preset", str(_preset_file(tmp_path)), "--out",
                 str(tmp_path / "out"), *args])
    assert code == 2 and message in capsys.readouterr().err
