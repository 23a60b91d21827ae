"""A progress bar (tqdm) with the training loss and tokens per second, only where someone looks.

The bar is drawn when ``enabled`` (``train(progress=True)``, rank 0) *and* stderr is a terminal
(tqdm's ``disable=None``): a sweep running many trainings in parallel processes, or a job whose
output goes to a file, prints no bars. Updated at log steps only: it costs nothing per step.
"""

from __future__ import annotations

from typing import Any


class Progress:
    """``with Progress(total, initial, enabled=...) as bar: bar.update(step, loss, tok_per_s)``."""

    def __init__(self, total: int, initial: int, *, enabled: bool) -> None:
        self.total, self.initial, self.enabled = total, initial, enabled
        self.bar: Any = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=self.initial, unit="step",
                            disable=None, dynamic_ncols=True, leave=True)
        return self

    def update(self, step: int, loss: float, tokens_per_s: float) -> None:
        if self.bar is None:
            return
        self.bar.n = step
        self.bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)
        self.bar.refresh()

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
