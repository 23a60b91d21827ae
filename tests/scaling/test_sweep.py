"""The sweep: resumable records, deterministic shards (also from Slurm), refusal by budget."""

import json
import multiprocessing as mp
import random

import pytest

from refllm.scaling.sweep import runs as sw
from refllm.scaling.sweep.budget import BudgetError, lpt_makespan
from refllm.scaling.sweep.presets import PRESETS, Preset
from tests.scaling.tiny_preset import tiny_preset


class Interrupted(KeyboardInterrupt):
    pass


def _lines(path, kind="run"):
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in records if kind is None or r["kind"] == kind]


@pytest.fixture
def quick_estimate(monkeypatch):
    """Skip timing steps where the test is not about the estimate (10 ms a step, say)."""
    from refllm.scaling.sweep import budget

    monkeypatch.setattr(budget, "time_step", lambda config, data, *steps: 0.01)


def test_a_rerun_after_an_interruption_trains_only_the_unfinished_runs(tmp_path, monkeypatch,
                                                                        quick_estimate):
    preset = tiny_preset(widths=(8, 12))

    def stop(record):
        raise Interrupted  # Ctrl-C right after the first run was recorded

    with pytest.raises(Interrupted):
        sw.sweep(preset, tmp_path, progress=False, on_record=stop)
    first = _lines(tmp_path / sw.RECORDS)
    assert len(first) == 1 and first[0]["status"] == "ok"

    trained = []
    real = sw.train_one
    monkeypatch.setattr(sw, "train_one", lambda run, out: trained.append(run.run_id)
                        or real(run, out))
    result = sw.sweep(preset, tmp_path, progress=False)
    assert first[0]["run_id"] not in trained
    assert result.skipped == [first[0]["run_id"]]
    records = _lines(tmp_path / sw.RECORDS)
    assert sorted(r["run_id"] for r in records) == sorted(r.run_id for r in sw.plan(preset))
    assert records[0] == first[0]  # the earlier record is untouched
    again = sw.sweep(preset, tmp_path, progress=False)
    assert again.records == [] and len(again.skipped) == len(records)
    starts = _lines(tmp_path / sw.RECORDS, kind="sweep")  # one per start that trained
    assert len(starts) == 2 and starts[1]["runs"] == len(records) - 1


def test_a_run_record_holds_what_the_report_and_a_reader_need(tmp_path, quick_estimate):
    preset = tiny_preset(widths=(8,), seeds=(3,))
    (rec,) = sw.sweep(preset, tmp_path, progress=False).records
    for key in ("config", "n_params", "n_params_non_embedding", "tokens", "flops", "seed",
                "final_val_loss", "train_losses", "val_losses", "time_s", "versions",
                "hardware", "corpus", "status", "run_id", "d_model"):
        assert key in rec, key
    assert rec["seed"] == 3 and rec["tokens"] == preset.tokens
    assert len(rec["corpus"]["sha256"]) == 64


def test_the_run_id_names_the_whole_config():
    preset = tiny_preset()
    ids = [r.run_id for r in sw.plan(preset)]
    assert ids == [r.run_id for r in sw.plan(tiny_preset())]
    assert len(set(ids)) == len(ids)
    changed = [r.run_id for r in sw.plan(preset.replace(base_lr=2e-2))]
    assert not set(ids) & set(changed)


@pytest.mark.parametrize("count", [1, 2, 3, 5, 12, 20])
def test_the_shards_partition_the_runs_the_same_way_on_every_machine(count):
    runs = sw.plan(PRESETS["cpu"])
    shards = [sw.shard_runs(runs, i, count) for i in range(count)]
    ids = [r.run_id for s in shards for r in s]
    assert sorted(ids) == sorted(r.run_id for r in runs)  # every run once
    shuffled = random.Random(count).sample(runs, len(runs))
    assert [{r.run_id for r in sw.shard_runs(shuffled, i, count)} for i in range(count)] \
        == [{r.run_id for r in s} for s in shards]  # the input's order does not matter


def test_two_shards_of_the_cpu_preset_share_its_flops_evenly():
    runs = sw.plan(PRESETS["cpu"])
    loads = [sum(r.flops for r in sw.shard_runs(runs, i, 2)) for i in range(2)]
    assert max(loads) / min(loads) < 1.05


@pytest.mark.parametrize("env, expected", [
    ({}, None),
    ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4"}, (2, 4)),
    ({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "4", "SLURM_ARRAY_TASK_COUNT": "3"},
     (1, 3)),
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "3"},
     (2, 3)),
])
def test_the_shard_comes_from_slurms_array_variables(env, expected):
    assert sw.shard_from_env(env) == expected


@pytest.mark.parametrize("env", [{"SLURM_ARRAY_TASK_ID": "1"},
                                 {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4"}])
def test_incomplete_or_inconsistent_slurm_variables_are_an_error(env):
    with pytest.raises(ValueError, match="SLURM|shard"):
        sw.shard_from_env(env)


@pytest.mark.parametrize("text", ["1", "2/2", "-1/3", "a/b", "1/0"])
def test_a_bad_shard_is_an_error_that_shows_it(text):
    with pytest.raises(ValueError, match="--shard"):
        sw.parse_shard(text)


def test_a_sweep_that_cannot_meet_its_budget_is_refused_with_the_estimate(tmp_path):
    preset = tiny_preset(budget_s=1e-3)
    with pytest.raises(BudgetError, match=r"estimated \d+ s wall for 6 runs.*--force"):
        sw.sweep(preset, tmp_path, progress=False)
    assert not (tmp_path / sw.RECORDS).exists()  # nothing trained


def test_force_runs_a_sweep_beyond_its_budget(tmp_path):
    preset = tiny_preset(budget_s=1e-9, widths=(8,), seeds=(0,))
    result = sw.sweep(preset, tmp_path, progress=False, force=True)
    assert len(result.records) == 1 and result.estimate.wall_s > 0
    (start,) = _lines(tmp_path / sw.RECORDS, kind="sweep")
    assert start["forced"] is True and start["budget_s"] == 1e-9


def test_longest_first_packing_of_runs_onto_workers():
    assert lpt_makespan([3, 3, 2, 2, 2], 2) == [7, 5]
    assert lpt_makespan([1, 1], 4) == [1, 1, 0, 0]


def _append_many(path, worker):
    for i in range(40):
        sw.append_locked(path, {"kind": "run", "worker": worker, "i": i, "pad": "x" * 5000})


def test_records_appended_by_concurrent_processes_stay_whole(tmp_path):
    path = tmp_path / sw.RECORDS
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(path, w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    records = _lines(path, kind=None)  # every line parses
    assert sorted((r["worker"], r["i"]) for r in records) == \
        [(w, i) for w in range(3) for i in range(40)]


def test_a_preset_is_checked_when_made():
    with pytest.raises(ValueError, match="widths"):
        tiny_preset(widths=(8, 8))
    with pytest.raises(ValueError, match="n_head"):
        tiny_preset(widths=(12,), head_width=8, min_heads=5)
    with pytest.raises(ValueError, match="verdict"):
        tiny_preset(verdict="tpu")
    assert isinstance(PRESETS["h200"], Preset)


@pytest.mark.parametrize("name, sizes, decades", [("cpu", 6, 1.5), ("h200", 7, 1.75)])
def test_the_presets_span_the_issues_ladders(name, sizes, decades):
    from refllm.model import GPTConfig, parameter_count

    p = PRESETS[name]
    n = [parameter_count(GPTConfig.from_dict(p.train_config(d, 0).model_dict(256)),
                         non_embedding=True) for d in p.widths]
    assert len(n) >= sizes and n[-1] / n[0] >= 10**decades
    d, L = p.widths[0], p.n_layer
    assert n[0] == 12 * d**2 * L + 13 * d * L + 2 * d  # N = 12 d^2 L + 13 d L + 2 d


@pytest.mark.slow
def test_a_killed_parallel_sweep_loses_only_the_runs_in_flight(tmp_path):
    """The real thing: two spawned workers, SIGKILL of the whole process group, then a rerun."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from refllm.train import read_records

    preset = tiny_preset(widths=(8, 12, 16, 24), tokens=16 * 8 * 200, workers=2)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(preset.to_dict()))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "refllm", "scaling", "--preset", str(path), "--out", str(out),
           "--no-progress"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not ((out / sw.RECORDS).exists() and read_records(out / sw.RECORDS, kind="run")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = {r["run_id"] for r in _lines(out / sw.RECORDS)}
    assert 1 <= len(kept) < len(sw.plan(preset))
    result = sw.sweep(preset, out, progress=False)
    assert set(result.skipped) == kept
    assert sorted(r["run_id"] for r in _lines(out / sw.RECORDS)) == \
        sorted(r.run_id for r in sw.plan(preset))


def test_the_estimate_scales_cpu_step_times_by_the_load_the_workers_will_share():
    from refllm.scaling.sweep.budget import slowdown

    assert slowdown(2, 0.0, 2) == 1.0  # an idle machine: as timed
    assert slowdown(2, 6.0, 2) == 4.0  # the measured case: 97 ms timed, 418 ms run
    assert slowdown(1, None, 16) == 1.0


def test_a_torn_last_line_is_repaired_by_the_next_sweep_and_the_file_stays_readable(
        tmp_path, quick_estimate, capsys):
    preset = tiny_preset(widths=(8, 12), seeds=(0,))
    first = sw.plan(preset)[:1]
    sw.sweep(preset, tmp_path, progress=False, planned=first)  # one run, then a kill mid-line:
    with open(tmp_path / sw.RECORDS, "ab") as f:
        f.write(b'{"kind": "run", "status": "ok", "run_id": "tiny-d12')
    sw.sweep(preset, tmp_path, progress=False)
    assert "repaired" in capsys.readouterr().err
    records = _lines(tmp_path / sw.RECORDS)  # every line parses again
    assert sorted(r["run_id"] for r in records) == sorted(r.run_id for r in sw.plan(preset))
    assert set(sw.finished(tmp_path)) == {r.run_id for r in sw.plan(preset)}


def test_a_run_recorded_by_another_process_meanwhile_is_not_appended_twice(tmp_path,
                                                                          quick_estimate):
    preset = tiny_preset(widths=(8,), seeds=(0,))
    (run,) = sw.plan(preset)
    rec = sw.train_one(run, tmp_path)  # an orphaned worker of a killed sweep got there first
    assert not sw.append_locked(tmp_path / sw.RECORDS, {**rec, "pid": -1})
    assert sw.sweep(preset, tmp_path, progress=False).skipped == [run.run_id]
    assert len(_lines(tmp_path / sw.RECORDS)) == 1


def test_two_different_records_of_one_run_id_are_refused_by_the_sweep(tmp_path):
    preset = tiny_preset(widths=(8,), seeds=(0,))
    (run,) = sw.plan(preset)
    rows = [{"kind": "run", "run_id": run.run_id, "final_val_loss": v} for v in (2.0, 2.1)]
    (tmp_path / sw.RECORDS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match="two different records for run_id .* lines 1 and 2"):
        sw.sweep(preset, tmp_path, progress=False)


@pytest.mark.parametrize("name", ["../../escape", "/tmp/abs", "a/b", "", ".hidden", "x" * 101,
                                  "sp ace"])
def test_a_preset_name_that_is_not_a_plain_identifier_is_refused(name):
    with pytest.raises(ValueError, match="preset name must be letters, digits and -_."):
        tiny_preset(name=name)


def test_a_run_folder_outside_the_output_folder_is_refused(tmp_path):
    assert sw.run_folder(tmp_path, "tiny-d8") == tmp_path / "runs" / "tiny-d8"
    for bad in ("../../escape", "/tmp/elsewhere", ".."):
        with pytest.raises(ValueError, match="outside the output folder"):
            sw.run_folder(tmp_path, bad)


def _children(pid):
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    import pathlib

    kids = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid):
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    return state != "Z"


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self"), reason="needs Linux /proc")
def test_pool_workers_end_when_their_parent_alone_is_killed(tmp_path):
    """SIGKILL of the parent only (not its process group): its workers must not train on."""
    import os
    import signal
    import subprocess
    import sys
    import time

    preset = tiny_preset(widths=(8, 12), seeds=(0,), tokens=16 * 8 * 100_000, workers=2,
                         budget_s=1e6)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(preset.to_dict()))
    cmd = [sys.executable, "-m", "refllm", "scaling", "--preset", str(path), "--out",
           str(tmp_path / "out"), "--no-progress", "--force"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = []
    deadline = time.monotonic() + 300  # the runs take hours: it is killed long before
    runs = tmp_path / "out" / "runs"
    while len(workers) < 2 or len(list(runs.glob("*"))) < 2:  # both runs have started
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
        workers = [p for p in _children(proc.pid)
                   if "spawn_main" in open(f"/proc/{p}/cmdline").read()
                   and "resource_tracker" not in open(f"/proc/{p}/cmdline").read()]
    time.sleep(1.0)  # into their training loops
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 60
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in workers if _alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, "orphaned workers kept running"


def test_the_gpu_presets_fit_their_budgets_under_a_model_of_their_flops_and_launches():
    from refllm.scaling.sweep.budget import gpu_time_model
    from refllm.scaling.sweep.presets import PRESETS, train_flops_per_token

    for name in ("h200", "h200-isoflop"):
        preset = PRESETS[name]
        slow = gpu_time_model(preset, mfu=0.05)  # a pessimistic utilisation for tiny models
        assert slow.wall_s < preset.budget_s / 2, (name, slow.describe())
        fast = gpu_time_model(preset, mfu=0.3)
        assert fast.compute_s == pytest.approx(slow.compute_s / 6) and fast.wall_s <= slow.wall_s
        runs = sw.plan(preset)
        assert slow.flops == pytest.approx(sum(
            train_flops_per_token(r.config.model_dict(256)) * r.config.tokens for r in runs))
        assert slow.steps == sum(r.config.max_steps for r in runs)
