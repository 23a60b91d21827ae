"""A tiny preset for the sweep tests: seconds, not minutes (Markov data, widths 8-16, 20 steps)."""

from refllm.scaling.sweep.presets import Preset


def tiny_preset(**changes) -> Preset:
    base = dict(name="tiny", widths=(8, 12, 16), n_layer=1, seq_len=16, batch_size=8,
                tokens=16 * 8 * 20, base_lr=1e-2, base_width=8, head_width=8, min_heads=1,
                seeds=(0, 1), data="markov:vocab=8,seed=0,tokens=20000", max_bytes=None,
                eval_tokens=256, workers=1, budget_s=600.0)
    base.update(changes)
    return Preset(**base)
