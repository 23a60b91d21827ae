"""Shared set-up of the training tests: tiny configs on tiny corpora, one thread."""

import pytest
import torch

from refllm.data import load_tokens
from refllm.train import TrainConfig

MARKOV = "markov:vocab=8,seed=0,tokens=60000"
TINY_MODEL = {"n_layer": 1, "n_head": 2, "d_model": 16}


def tiny_config(**changes) -> TrainConfig:
    """A run of a few milliseconds per step: 1 layer, width 16, a Markov chain of 8 symbols."""
    base = dict(model=TINY_MODEL, data=MARKOV, batch_size=4, seq_len=16, max_steps=12,
                lr=1e-2, warmup_steps=2, log_interval=1, eval_tokens=256, eval_interval=4)
    base.update(changes)
    return TrainConfig(**base)


@pytest.fixture(name="tiny_config")
def _tiny_config_fixture():
    return tiny_config


@pytest.fixture(scope="session")
def markov_data():
    return load_tokens(MARKOV)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def interrupted_run(monkeypatch):
    """Train until the checkpoint of ``step`` is written, then stop as a kill would: the folder
    holds that checkpoint and the records so far, and no "run" record (``kwargs``: train's)."""
    from refllm.train import checkpoint as ckpt
    from refllm.train import train

    def run(config, out, data, step, **kwargs):
        real = ckpt.save_checkpoint

        def save_then_stop(*args, **kwargs):
            path = real(*args, **kwargs)
            if kwargs["step"] == step:
                raise KeyboardInterrupt(f"stopped after the checkpoint of step {step}")
            return path

        monkeypatch.setattr(ckpt, "save_checkpoint", save_then_stop)
        try:
            with pytest.raises(KeyboardInterrupt):
                train(config, out, data=data, progress=False, **kwargs)
        finally:
            monkeypatch.setattr(ckpt, "save_checkpoint", real)

    return run
