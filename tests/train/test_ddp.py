"""DDP: two processes (torchrun, gloo on CPU) train exactly as one process with the same batch."""

import json
import os
import subprocess
import sys

import torch

from refllm.testing import assert_close
from refllm.train import read_records, train


def test_two_processes_equal_one_process_with_the_same_global_batch(tiny_config, markov_data,
                                                                    tmp_path):
    config = tiny_config(max_steps=6, batch_size=8, micro_batch_size=2, eval_interval=3,
                         device="cpu")
    (tmp_path / "run.json").write_text(json.dumps(config.to_dict()))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", "-m", "refllm", "train", "--config", "run.json",
               "--out", "two", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    one = train(config, tmp_path / "one", data=markov_data, progress=False)
    records = read_records(tmp_path / "two" / "records.jsonl")
    assert [r["kind"] for r in records] == ["eval", "eval", "run"]  # rank 0 alone writes
    two = records[-1]
    assert two["world_size"] == 2 and two["steps"] == 6
    for key in ("train_losses", "val_losses"):
        got = torch.tensor(two[key], dtype=torch.float64)
        want = torch.tensor(one.record[key], dtype=torch.float64)
        assert_close(got, want, kind="impl", dtype=torch.float32, msg=key)
