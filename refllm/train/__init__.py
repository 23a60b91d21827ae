"""Next-token training: the loop, checkpoints, records, DDP (see docs/training.md).

>>> from refllm.train import TrainConfig
>>> TrainConfig(model={"n_layer": 1, "n_head": 2, "d_model": 16}, max_steps=100).tokens
51200
"""

from refllm.train.checkpoint import CheckpointError, CheckpointWarning
from refllm.train.config import TrainConfig
from refllm.train.loop import RunResult, finished_runs, train
from refllm.train.records import RecordWriteError, append_record, read_records

__all__ = ["TrainConfig", "train", "RunResult", "finished_runs", "CheckpointError",
           "CheckpointWarning",
           "RecordWriteError", "append_record", "read_records"]
