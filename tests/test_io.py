"""The ground floor for files (refllm._io): atomic writes, stale temporaries, the appender's tail
repair and duplicate guard, and the reader's errors."""

import json
import multiprocessing as mp
import os
import subprocess
import sys

import pytest

from refllm._io import (
    RecordWriteError,
    append_jsonl,
    read_jsonl,
    remove_stale_temporaries,
    write_atomically,
    write_bytes_atomically,
)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_an_atomic_write_replaces_the_file_whole_and_leaves_nothing_beside_it(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("old")
    write_bytes_atomically(path, b"new")
    assert path.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == [path.name]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() makes it, not 0600


def test_a_failed_atomic_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    path.write_bytes(b"old")

    def fail(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomically(path, fail, sync_folder=True)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_writer_may_replace_the_temporary_by_name(tmp_path):
    path = tmp_path / "x.bin"
    write_atomically(path, lambda f: open(f.name, "wb").write(b"by name"))
    assert path.read_bytes() == b"by name"


def test_stale_temporaries_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    dead = _dead_pid()
    stale = [tmp_path / f".{path.name}.{dead}.ab12cd34.tmp", tmp_path / f".{path.name}.tmp-{dead}"]
    live = tmp_path / f".{path.name}.{os.getppid()}.ab12cd34.tmp"  # our parent is alive
    other = tmp_path / ".other.safetensors.123.ab.tmp"
    for p in [*stale, live, other]:
        p.write_bytes(b"x" * 100)
    assert sorted(remove_stale_temporaries(path)) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])


def test_an_append_after_a_torn_last_line_repairs_the_tail_and_says_so_once(tmp_path, capsys):
    path = tmp_path / "records.jsonl"
    append_jsonl(path, {"kind": "eval", "step": 1})
    with open(path, "ab") as f:
        f.write(b'{"kind": "eval", "st')  # a writer killed mid-line
    assert [r["step"] for r in read_jsonl(path)] == [1]  # the fragment is not a record
    append_jsonl(path, {"kind": "eval", "step": 2})
    err = capsys.readouterr().err
    assert err.count("repaired") == 1 and "removed an unfinished last line of 20 bytes" in err
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2]
    append_jsonl(path, {"kind": "eval", "step": 3})
    assert capsys.readouterr().err == ""


def test_a_last_line_missing_only_its_newline_is_a_record_and_is_kept(tmp_path, capsys):
    path = tmp_path / "records.jsonl"
    path.write_text('{"kind": "run", "run_id": "a"}')  # written by hand
    assert [r["run_id"] for r in read_jsonl(path)] == ["a"]
    append_jsonl(path, {"kind": "run", "run_id": "b"})
    assert [r["run_id"] for r in read_jsonl(path)] == ["a", "b"]
    assert capsys.readouterr().err == ""


def test_the_duplicate_guard_skips_a_record_whose_key_is_present(tmp_path):
    path = tmp_path / "records.jsonl"
    assert append_jsonl(path, {"kind": "run", "run_id": "a", "loss": 1.0}, unique="run_id")
    assert not append_jsonl(path, {"kind": "run", "run_id": "a", "loss": 2.0}, unique="run_id")
    assert append_jsonl(path, {"kind": "sweep"}, unique="run_id")  # no key: always appended
    assert append_jsonl(path, {"kind": "run", "run_id": "b"}, unique="run_id")
    assert [r.get("run_id") for r in read_jsonl(path)] == ["a", None, "b"]


def _append_same_runs(path, worker):
    for i in range(30):
        append_jsonl(path, {"kind": "run", "run_id": f"r{i}", "worker": worker}, unique="run_id")


def test_processes_racing_to_append_the_same_runs_leave_one_record_each(tmp_path):
    path = tmp_path / "records.jsonl"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_append_same_runs, args=(path, w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    ids = [r["run_id"] for r in read_jsonl(path, unique="run_id")]
    assert sorted(ids) == sorted(f"r{i}" for i in range(30))


def test_two_different_records_of_one_key_are_an_error_naming_both_lines(tmp_path):
    path = tmp_path / "records.jsonl"
    lines = [{"kind": "sweep"}, {"kind": "run", "run_id": "a", "loss": 1.0},
             {"kind": "run", "run_id": "b"}, {"kind": "run", "run_id": "a", "loss": 2.0}]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(ValueError, match="two different records for run_id 'a', on lines 2 and 4"):
        read_jsonl(path, kind="run", unique="run_id")
    assert len(read_jsonl(path, kind="run")) == 3  # without the key: every record


def test_identical_copies_of_a_record_are_read_once(tmp_path):
    path = tmp_path / "records.jsonl"
    line = json.dumps({"kind": "run", "run_id": "a", "loss": 1.0}) + "\n"
    path.write_text(line + line)  # a shard's file concatenated twice
    assert read_jsonl(path, unique="run_id") == [json.loads(line)]


@pytest.mark.parametrize("line, message", [
    ("[1, 2, 3]", "line 2 is a JSON list, not a record"),
    ('"text"', "line 2 is a JSON str, not a record"),
    ("{oops", "line 2 is not a JSON record"),
])
def test_a_line_that_is_not_a_json_object_is_an_error_naming_it(tmp_path, line, message):
    path = tmp_path / "records.jsonl"
    path.write_text('{"kind": "run"}\n' + line + "\n")
    with pytest.raises(ValueError, match=message):
        read_jsonl(path)


def test_a_byte_order_mark_is_not_part_of_the_first_record(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"kind": "run"}\n')
    assert read_jsonl(path) == [{"kind": "run"}]


def test_a_full_disk_keeps_the_earlier_records_intact(tmp_path, monkeypatch):
    path = tmp_path / "records.jsonl"
    append_jsonl(path, {"kind": "eval", "step": 1})
    before = path.read_bytes()
    real_write = os.write

    def half_then_full(fd, data):
        real_write(fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(RecordWriteError, match="No space left on device.*earlier records are"):
        append_jsonl(path, {"kind": "run", "status": "ok"})
    monkeypatch.undo()
    assert path.read_bytes() == before


def test_a_folder_is_written_whole_or_not_at_all(tmp_path):
    from refllm._io import write_folder_atomically

    def fill(folder):
        (tmp_path / "seen").write_text(folder)
        open(os.path.join(folder, "config.json"), "w").write("{}")

    write_folder_atomically(tmp_path / "model", fill)
    assert os.listdir(tmp_path / "model") == ["config.json"]

    def fail(folder):
        open(os.path.join(folder, "half"), "w").write("x")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_folder_atomically(tmp_path / "other", fail)
    assert sorted(os.listdir(tmp_path)) == ["model", "seen"]
