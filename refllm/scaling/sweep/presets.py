"""Sweep presets: a ladder of model widths trained with one recipe, and the budget it must meet.

A preset fixes everything but the width ``d`` (= d_model) and the seed. For width d:

    n_head(d) = max(min_heads, d // head_width)
    lr(d)     = base_lr * (base_width / d) ** lr_exponent   (lr_exponent 1: lr ~ 1/d; see below)
    steps     = tokens // (batch_size * seq_len)        (the SAME token budget for every size)
    warmup    = round(warmup_fraction * steps),  cosine from lr(d) down to min_lr_fraction * lr(d)

An IsoFLOP preset (``budgets`` set: ``cpu-isoflop``, ``h200-isoflop``) trains, at each compute
budget C, the widths ``budget_widths[i]`` for the tokens that spend exactly that budget,

    D(d, C) = C / f(d),   f(d) = 3 x forward FLOPs per token      (steps = round(D / (B T)))

with f the exact count of `refllm.model.counting.flops_per_token` (``method="exact"``: every matrix
multiply of the blocks, attention over the context, and the LM head; backward = 2 x forward), not
6N: at d = 64...8 the head and the attention are 24-69% of the forward FLOPs. The lr rule is the
ladder's, the schedule's length follows D. After the ladder, one more run at ``holdout_budget``, at
the width whose N is nearest the fitted N_opt, tests the fit's prediction (tolerance and predictor
pre-registered in ``holdout_tolerance`` and ``holdout_predictor``;
`refllm.scaling.report.isoflop`).

Non-embedding parameters with tied embeddings and learned positions (Kaplan et al. 2020, Table 1,
plus biases and LayerNorms): N = 12 d^2 L + 13 d L + 2 d.

``block`` picks the decoder block of every size: ``"gpt2"`` (the default, the GPTConfig defaults
above) or ``"llama"`` (`refllm.model.config.BLOCKS`: RMSNorm, SwiGLU with f = floor(8 d / 3),
RoPE, no biases, an untied head; N = L (4 d^2 + 3 d floor(8 d / 3) + 2 d) + d, about 12 d^2 L
as well). ``refllm scaling --preset cpu --set block=llama`` trains the cpu ladder on it.

Why a fixed token budget (every size the same D) and why lr ~ 1/d (muP's rule for Adam, Yang et
al. 2022): the measurements that chose them are in docs/scaling.md, "The sweep". The ``h200``
preset's sizes and budget are estimates until it runs on a GPU; the sweep times a few steps of
every size before it starts and refuses a preset that cannot finish within ``budget_s``.

>>> p = PRESETS["cpu"]
>>> [p.n_head(d) for d in p.widths], p.steps, round(p.lr(32), 6)
([2, 2, 2, 3, 4, 6], 976, 0.018)
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from refllm._validation import require_choice, require_int, require_real

BYTE_VOCAB = 256  # the byte tokenizer's vocabulary, which an IsoFLOP preset's FLOP count assumes
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def require_name(name: object) -> None:
    """A preset's name becomes folder names (``runs/scaling-<name>``, its run ids): a plain
    identifier of letters, digits and ``-_.``, starting with a letter or digit; no ``/``."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or len(name) > 100:
        raise ValueError(f"preset name must be letters, digits and -_. (starting with a letter "
                         f"or digit, at most 100 characters; it names folders), got {name!r}")


def train_flops_per_token(model: dict) -> int:
    """FLOPs of one training token of the GPT of ``model`` (GPTConfig keys): 3 x the exact
    forward count of `refllm.model.counting.flops_per_token` (the backward pass costs two
    forwards: Kaplan et al. 2020, §2.1)."""
    from refllm.model import GPTConfig, flops_per_token

    return 3 * flops_per_token(GPTConfig.from_dict(model), method="exact")


@dataclass(frozen=True)
class Preset:
    """A ladder of widths at fixed depth, one training recipe, a wall-clock budget."""

    name: str
    widths: tuple[int, ...]            # d_model of each size
    n_layer: int
    seq_len: int
    batch_size: int                    # sequences per optimizer step
    tokens: int                        # training tokens per run, the same for every size
    base_lr: float                     # peak lr at width base_width
    base_width: int
    lr_exponent: float = 1.0           # lr(d) = base_lr * (base_width / d) ** lr_exponent
    head_width: int = 16               # n_head = max(min_heads, d // head_width)
    min_heads: int = 2
    warmup_fraction: float = 0.15       # 5% gave 3-4x the seed spread at d = 24, 32 (docs)
    min_lr_fraction: float = 0.1       # the cosine ends at this fraction of the peak
    weight_decay: float = 0.1          # 2-D weights only
    grad_clip: float = 1.0
    seeds: tuple[int, ...] = (0, 1)
    data: str = "stdlib"               # a refllm.data.load_tokens source
    tokenizer: str = "bytes"
    max_bytes: int | None = 8_000_000
    val_fraction: float = 0.05
    eval_tokens: int = 131_072         # the fixed validation slice shared by every run
    device: str = "cpu"
    autocast: str = "none"             # "bf16" on CUDA
    attention: str = "fused"           # GPTConfig.attention: "fused" SDPA or "reference"
    block: str = "gpt2"                # the decoder block: "gpt2" or "llama" (GPTConfig.llama)
    workers: int = 2                   # parallel processes (one thread each on CPU)
    budget_s: float = 300.0            # wall-clock budget of the whole sweep
    verdict: str = "cpu"               # thresholds of refllm.scaling.report.verdict: "cpu" | "gpu"
    # IsoFLOP ladders (see the module docstring); empty for a ladder in N at fixed tokens
    budgets: tuple[float, ...] = ()                  # compute budgets C in FLOPs, ascending
    budget_widths: tuple[tuple[int, ...], ...] = ()  # the widths trained at each budget
    holdout_budget: float | None = None              # the held-out run's budget (after the fit)
    holdout_tolerance: float = 0.02                  # its pre-registered |L / L_pred - 1|
    holdout_predictor: str = "frontier"              # L_pred: "frontier" or "approach3"

    def __post_init__(self) -> None:
        require_name(self.name)
        if not self.widths or len(set(self.widths)) != len(self.widths):
            raise ValueError(f"widths must be distinct, got {self.widths!r}")
        for d in self.widths:
            require_int("widths[i]", d, low=1)
        for name in ("n_layer", "seq_len", "batch_size", "base_width", "head_width",
                     "min_heads", "eval_tokens", "workers"):
            require_int(name, getattr(self, name), low=1)
        require_int("tokens", self.tokens, low=0 if self.budgets else 1)
        require_real("base_lr", self.base_lr, low=0.0, low_open=True)
        require_real("lr_exponent", self.lr_exponent, low=0.0, high=2.0)
        require_real("warmup_fraction", self.warmup_fraction, low=0.0, high=1.0, high_open=True)
        require_real("min_lr_fraction", self.min_lr_fraction, low=0.0, high=1.0)
        require_real("budget_s", self.budget_s, low=0.0, low_open=True)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds!r}")
        require_choice("verdict", self.verdict, ("cpu", "gpu"))
        require_choice("block", self.block, ("gpt2", "llama"))
        for d in self.widths:
            if d % self.n_head(d):
                raise ValueError(f"width {d} is not divisible by its n_head {self.n_head(d)}")
            if self.block == "llama" and (d // self.n_head(d)) % 2:
                raise ValueError(f"block='llama' rotates pairs of features (RoPE): width {d} has "
                                 f"an odd head width {d // self.n_head(d)}")
        if self.budgets or self.budget_widths or self.holdout_budget is not None:
            self._check_isoflop()
        elif self.steps < 2:
            raise ValueError(f"tokens={self.tokens} gives {self.steps} steps of batch_size x "
                             f"seq_len = {self.batch_size * self.seq_len} tokens; need >= 2")

    def _check_isoflop(self) -> None:
        b = self.budgets
        if len(b) < 3 or len(self.budget_widths) != len(b):
            raise ValueError(f"budgets needs >= 3 compute budgets and budget_widths one tuple of "
                             f"widths per budget, got {len(b)} budget(s) and "
                             f"{len(self.budget_widths)} tuple(s) of widths")
        for c in b:
            require_real("budgets[i]", c, low=0.0, low_open=True)
        if list(b) != sorted(set(b)):
            raise ValueError(f"budgets must be distinct and ascending, got {b!r}")
        for c, ws in zip(b, self.budget_widths):
            if len(ws) < 4 or len(set(ws)) != len(ws) or not set(ws) <= set(self.widths):
                raise ValueError(f"budget_widths at C={c:.3g} must be >= 4 distinct widths out of "
                                 f"widths {self.widths}, got {ws!r}")
            for d in ws:
                if self.steps_for(d, c) < 2:
                    raise ValueError(
                        f"budget C={c:.3g} buys width {d} {self.tokens_for(d, c):,.0f} tokens, "
                        f"under 2 steps of batch_size x seq_len = "
                        f"{self.batch_size * self.seq_len} tokens; raise the budget or drop the "
                        f"width")
        if self.holdout_budget is None or not self.holdout_budget > b[-1]:
            raise ValueError(f"holdout_budget must be a budget above the largest ({b[-1]:.3g}): "
                             f"the held-out run tests an extrapolation, got "
                             f"{self.holdout_budget!r}")
        require_real("holdout_tolerance", self.holdout_tolerance, low=0.0, high=1.0,
                     low_open=True)
        require_choice("holdout_predictor", self.holdout_predictor, ("frontier", "approach3"))
        if self.tokenizer != "bytes":
            raise ValueError(f"an IsoFLOP preset counts its FLOPs with the byte vocabulary (256); "
                             f"tokenizer must be 'bytes', got {self.tokenizer!r}")

    @property
    def isoflop(self) -> bool:
        """True for an IsoFLOP ladder (``budgets`` set)."""
        return bool(self.budgets)

    @property
    def steps(self) -> int:
        """Steps of every run of a fixed-token ladder (an IsoFLOP ladder: `steps_for`)."""
        if self.isoflop:
            raise ValueError(f"preset {self.name!r} is an IsoFLOP ladder: its runs' steps depend "
                             f"on width and budget (steps_for(d, budget))")
        return self.tokens // (self.batch_size * self.seq_len)

    def flops_per_token(self, d: int) -> int:
        """Training FLOPs per token of width ``d`` (`train_flops_per_token`)."""
        return train_flops_per_token(self._model(d) | {"vocab_size": BYTE_VOCAB,
                                                      "n_ctx": self.seq_len})

    def tokens_for(self, d: int, budget: float) -> float:
        return budget / self.flops_per_token(d)

    def steps_for(self, d: int, budget: float | None = None) -> int:
        """Steps of width ``d``: the preset's, or those that spend ``budget`` FLOPs."""
        if budget is None:
            return self.steps
        return round(self.tokens_for(d, budget) / (self.batch_size * self.seq_len))

    def _model(self, d: int) -> dict:
        model = {"n_layer": self.n_layer, "n_head": self.n_head(d), "d_model": d,
                 "attention": self.attention}
        if self.block != "gpt2":  # the GPT-2 block is GPTConfig's defaults: its runs' ids stay
            from refllm.model.config import BLOCKS

            model |= BLOCKS[self.block]
        return model

    def n_head(self, d: int) -> int:
        return max(self.min_heads, d // self.head_width)

    def lr(self, d: int) -> float:
        return self.base_lr * (self.base_width / d) ** self.lr_exponent

    def train_config(self, d: int, seed: int, budget: float | None = None):
        """The `refllm.train.TrainConfig` of width ``d`` and ``seed`` (at ``budget`` FLOPs for an
        IsoFLOP ladder)."""
        from refllm.train import TrainConfig

        steps, lr = self.steps_for(d, budget), self.lr(d)
        model = self._model(d)
        return TrainConfig(
            model=model, data=self.data, tokenizer=self.tokenizer, max_bytes=self.max_bytes,
            val_fraction=self.val_fraction, batch_size=self.batch_size, seq_len=self.seq_len,
            max_steps=steps, lr=lr, min_lr=lr * self.min_lr_fraction,
            warmup_steps=min(round(self.warmup_fraction * steps), steps - 1),
            weight_decay=self.weight_decay, grad_clip=self.grad_clip,
            eval_tokens=self.eval_tokens, seed=seed, device=self.device, autocast=self.autocast,
            log_interval=max(1, steps // 50), checkpoint_final=False)

    def replace(self, **changes) -> Preset:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS: dict[str, Preset] = {
    # 6 sizes, 6.6k -> 224k non-embedding parameters (1.53 decades), lr ~ 1/d
    "cpu": Preset(name="cpu", widths=(16, 24, 32, 48, 64, 96), n_layer=2, seq_len=64,
                  batch_size=32, tokens=2_000_000, base_lr=0.018, base_width=32,
                  budget_s=300.0, verdict="cpu"),
    # an estimate, not yet run: 7 sizes, 0.20M -> 12.6M non-embedding parameters (1.81 decades),
    # 4 layers, 10M tokens per run (under one pass over the 11.5M training bytes of the stdlib
    # corpus: no repeated data), the cpu preset's lr rule, bf16 autocast, fused SDPA, one H200
    "h200": Preset(name="h200", widths=(64, 96, 128, 192, 256, 384, 512), n_layer=4,
                   seq_len=256, batch_size=64, tokens=10_000_000, base_lr=0.018, base_width=32,
                   head_width=32, min_heads=2, max_bytes=None, eval_tokens=524_288,
                   device="cuda", autocast="bf16", workers=2, budget_s=480.0, verdict="gpu"),
    # an IsoFLOP ladder on two cores: 3 budgets a factor ~3 apart x 5 widths centred on each
    # budget's optimum (measured), one seed, D = C / (3 x exact forward FLOPs per token), every
    # run under one pass over the 11.5M training bytes; then the held-out run at 3e12 FLOPs
    "cpu-isoflop": Preset(name="cpu-isoflop", widths=(8, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96),
                          n_layer=2, seq_len=64, batch_size=32, tokens=0, base_lr=0.018,
                          base_width=32, seeds=(0,), max_bytes=None, budget_s=480.0,
                          budgets=(1e11, 3e11, 1e12),
                          budget_widths=((8, 12, 16, 24, 32), (12, 16, 24, 32, 48),
                                         (20, 24, 32, 48, 64)),
                          holdout_budget=3e12, holdout_tolerance=0.02),
    # an estimate, not yet run: the h200 recipe (4 layers, bf16 autocast, fused SDPA) at budgets
    # that keep every ladder run under one pass over the stdlib corpus (the data, not the GPU,
    # limits D here), 16 sequences a step so that a run has hundreds of steps; widths centred on
    # N_opt extrapolated from cpu-isoflop with a = 0.5
    "h200-isoflop": Preset(name="h200-isoflop", widths=(32, 48, 64, 96, 128, 192, 256, 384),
                           n_layer=4, seq_len=256, batch_size=16, tokens=0, base_lr=0.018,
                           base_width=32, head_width=32, min_heads=2, seeds=(0,),
                           max_bytes=None, eval_tokens=524_288, device="cuda",
                           autocast="bf16", workers=2, budget_s=480.0, verdict="gpu",
                           budgets=(3e12, 1e13, 3e13),
                           budget_widths=((32, 48, 64, 96, 128), (48, 64, 96, 128, 192),
                                          (96, 128, 192, 256, 384)),
                           holdout_budget=1e14, holdout_tolerance=0.015),
}


def get_preset(name: str) -> Preset:
    require_choice("preset", name, sorted(PRESETS))
    return PRESETS[name]
