"""RoPE's frequencies and the context-extension rules that rescale them.

Unscaled (Su et al. 2021, "RoFormer", §3.2.2), for a rotary width r (even) and i in
[0, r/2):

    theta_i = base^(-2 i / r)

Each rule maps theta to theta' (and, for YaRN, a factor a that multiplies cos and sin):

- Linear, position interpolation (Chen et al. 2023, "Extending Context Window of Large Language
  Models via Positional Interpolation", §2.2): theta'_i = theta_i / s (position m read as m / s).
- NTK-aware (bloc97 2023; Peng et al. 2023, "YaRN", §3.1): the base grows,
  base' = base * s^(r / (r - 2)), so the highest frequency stays 1 and the lowest is divided by s.
  Hugging Face's "dynamic" rule is this one with s = `dynamic_ntk_factor(...)` of the length.
- YaRN (Peng et al. 2023, §3.2-3.4, "NTK-by-parts" and the attention temperature): with
  L = original_max_position_embeddings, the index where a frequency turns `n` times in L is
  i(n) = r ln(L / (2 pi n)) / (2 ln base); lo = floor(i(beta_fast)), hi = ceil(i(beta_slow))
  (clamped to [0, r - 1]); gamma_i = clamp((i - lo) / (hi - lo), 0, 1);
  theta'_i = gamma_i theta_i / s + (1 - gamma_i) theta_i; a = 0.1 ln s + 1 (1 for s <= 1), or
  mscale(s, mscale) / mscale(s, mscale_all_dim) with both given (DeepSeek), or as given.
- Llama 3.1 (Meta's reference code, ``apply_scaling``): with wavelength w_i = 2 pi / theta_i,
  theta_i if w_i < L / high_freq_factor; theta_i / s if w_i > L / low_freq_factor; otherwise
  (1 - k) theta_i / s + k theta_i with k = (L / w_i - low_freq_factor) / (high - low).

Every formula is held against transformers' ``ROPE_INIT_FUNCTIONS`` (``modeling_rope_utils``).

Deviation (from the YaRN paper, as its authors' code and Hugging Face): the ramp gamma is linear in
the dimension index between the truncated indices lo and hi, not linear in the number of
rotations L / w_i as the paper writes it; hi is clamped to r - 1 although indices stop at r/2 - 1;
lo == hi is widened by 0.001. These are the frequencies YaRN checkpoints were trained with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from refllm._validation import describe, require_bool, require_int, require_real


@dataclass(frozen=True)
class LinearScaling:
    """Position interpolation: every frequency divided by ``factor`` (HF's ``"linear"``)."""

    factor: float

    def __post_init__(self) -> None:
        require_real("factor", self.factor, low=0.0, low_open=True)


@dataclass(frozen=True)
class NTKScaling:
    """NTK-aware: ``base * factor ** (r / (r - 2))`` (HF's ``"dynamic"`` at a fixed length)."""

    factor: float

    def __post_init__(self) -> None:
        require_real("factor", self.factor, low=0.0, low_open=True)


@dataclass(frozen=True)
class YarnScaling:
    """YaRN's frequencies and attention factor (HF's ``"yarn"``, same keys and defaults)."""

    factor: float
    original_max_position_embeddings: int
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    mscale: float | None = None
    mscale_all_dim: float | None = None
    attention_factor: float | None = None
    truncate: bool = True

    def __post_init__(self) -> None:
        require_real("factor", self.factor, low=0.0, low_open=True)
        require_int("original_max_position_embeddings", self.original_max_position_embeddings,
                    low=1)
        require_real("beta_slow", self.beta_slow, low=0.0, low_open=True)
        require_real("beta_fast", self.beta_fast, low=self.beta_slow, low_open=True)
        for name in ("mscale", "mscale_all_dim", "attention_factor"):
            if getattr(self, name) is not None:
                require_real(name, getattr(self, name), low=0.0)
        require_bool("truncate", self.truncate)


@dataclass(frozen=True)
class Llama3Scaling:
    """Llama 3.1's frequency-dependent rule (HF's ``"llama3"``); Llama 3.1's values by default."""

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192

    def __post_init__(self) -> None:
        require_real("factor", self.factor, low=0.0, low_open=True)
        require_real("low_freq_factor", self.low_freq_factor, low=0.0, low_open=True)
        require_real("high_freq_factor", self.high_freq_factor, low=self.low_freq_factor,
                     low_open=True)
        require_int("original_max_position_embeddings", self.original_max_position_embeddings,
                    low=1)


Scaling = LinearScaling | NTKScaling | YarnScaling | Llama3Scaling
SCALINGS = (LinearScaling, NTKScaling, YarnScaling, Llama3Scaling)


def dynamic_ntk_factor(factor: float, seq_len: int, max_position_embeddings: int) -> float:
    """The NTK factor of Hugging Face's "dynamic" rule at a length L' (at least its
    ``max_position_embeddings`` L): s L' / L - (s - 1).

    >>> dynamic_ntk_factor(2.0, 150, 100), dynamic_ntk_factor(2.0, 50, 100)
    (2.0, 1.0)
    """
    require_real("factor", factor, low=0.0, low_open=True)
    length = require_int("max_position_embeddings", max_position_embeddings, low=1)
    seen = max(require_int("seq_len", seq_len, low=0), length)
    return factor * seen / length - (factor - 1.0)


def check_frequency_args(rotary_dim: object, base: object, scaling: object) -> int:
    """Check the arguments every frequency rule shares; return the rotary width r."""
    r = require_int("rotary_dim", rotary_dim, low=2)
    if r % 2:
        raise ValueError(f"rotary_dim must be even (RoPE rotates pairs), got {r}")
    require_real("base", base, low=1.0, low_open=True)
    if scaling is not None and not isinstance(scaling, SCALINGS):
        raise TypeError(f"scaling must be None or one of {[c.__name__ for c in SCALINGS]}, got "
                        f"{describe(scaling)}")
    if isinstance(scaling, NTKScaling) and r < 4:
        raise ValueError(f"NTK-aware scaling needs rotary_dim >= 4 (its exponent is r / (r - 2)), "
                         f"got rotary_dim={r}")
    return r


def yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    """YaRN's sqrt(1/t) = 0.1 mscale ln(s) + 1 for s > 1, else 1 (Peng et al. 2023, §3.4)."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def _yarn_attention_factor(y: YarnScaling) -> float:
    if y.attention_factor is not None:
        return y.attention_factor
    if y.mscale and y.mscale_all_dim:
        return yarn_mscale(y.factor, y.mscale) / yarn_mscale(y.factor, y.mscale_all_dim)
    return yarn_mscale(y.factor)


def _yarn_ramp_ends(y: YarnScaling, r: int, base: float) -> tuple[float, float]:
    """The dimension indices lo and hi between which YaRN's ramp goes from 0 to 1."""
    def index(n_rot: float) -> float:  # where the frequency turns n_rot times in L positions
        return r * math.log(y.original_max_position_embeddings / (n_rot * 2 * math.pi)) / (
            2 * math.log(base))
    lo, hi = index(y.beta_fast), index(y.beta_slow)
    if y.truncate:
        lo, hi = math.floor(lo), math.ceil(hi)
    lo, hi = max(lo, 0), min(hi, r - 1)
    return lo, (hi + 0.001 if lo == hi else hi)


def rope_frequencies_naive(rotary_dim: int, base: float = 10000.0,
                           scaling: Scaling | None = None) -> tuple[list[float], float]:
    """theta'_i for i in [0, r/2) as Python floats, one formula per case; and the factor a.

    >>> rope_frequencies_naive(4, base=100.0)  # 100^0, 100^(-1/2)
    ([1.0, 0.1], 1.0)
    """
    r = check_frequency_args(rotary_dim, base, scaling)
    if isinstance(scaling, NTKScaling):
        base = base * scaling.factor ** (r / (r - 2))
    theta = [base ** (-2.0 * i / r) for i in range(r // 2)]
    if isinstance(scaling, LinearScaling):
        return [t / scaling.factor for t in theta], 1.0
    if isinstance(scaling, YarnScaling):
        lo, hi = _yarn_ramp_ends(scaling, r, base)
        out = []
        for i, t in enumerate(theta):
            gamma = min(max((i - lo) / (hi - lo), 0.0), 1.0)
            out.append(gamma * t / scaling.factor + (1.0 - gamma) * t)
        return out, _yarn_attention_factor(scaling)
    if isinstance(scaling, Llama3Scaling):
        s, length = scaling.factor, scaling.original_max_position_embeddings
        lo_f, hi_f = scaling.low_freq_factor, scaling.high_freq_factor
        out = []
        for t in theta:
            wavelength = 2 * math.pi / t
            if wavelength < length / hi_f:
                out.append(t)
            elif wavelength > length / lo_f:
                out.append(t / s)
            else:
                k = (length / wavelength - lo_f) / (hi_f - lo_f)
                out.append((1 - k) * t / s + k * t)
        return out, 1.0
    return theta, 1.0


def rope_frequencies(rotary_dim: int, base: float = 10000.0, scaling: Scaling | None = None, *,
                     device: torch.device | str | None = None) -> tuple[Tensor, float]:
    """theta'_i as one float64 tensor of length r/2, vectorised; and the factor a.

    >>> rope_frequencies(4, base=100.0, scaling=LinearScaling(2.0))
    (tensor([0.5000, 0.0500], dtype=torch.float64), 1.0)
    """
    r = check_frequency_args(rotary_dim, base, scaling)
    if isinstance(scaling, NTKScaling):
        base = base * scaling.factor ** (r / (r - 2))
    i = torch.arange(r // 2, dtype=torch.float64, device=device)
    theta = base ** (-2.0 * i / r)
    if isinstance(scaling, LinearScaling):
        return theta / scaling.factor, 1.0
    if isinstance(scaling, YarnScaling):
        lo, hi = _yarn_ramp_ends(scaling, r, base)
        gamma = ((i - lo) / (hi - lo)).clamp(0.0, 1.0)
        return gamma * theta / scaling.factor + (1 - gamma) * theta, _yarn_attention_factor(
            scaling)
    if isinstance(scaling, Llama3Scaling):
        s, length = scaling.factor, scaling.original_max_position_embeddings
        lo_f, hi_f = scaling.low_freq_factor, scaling.high_freq_factor
        wavelength = 2 * math.pi / theta
        k = (length / wavelength - lo_f) / (hi_f - lo_f)
        smooth = (1 - k) * theta / s + k * theta
        out = torch.where(wavelength > length / lo_f, theta / s, smooth)
        return torch.where(wavelength < length / hi_f, theta, out), 1.0
    return theta, 1.0


_HF_KEYS = {"linear": ("factor",), "dynamic": ("factor",),
            "yarn": ("factor", "original_max_position_embeddings", "beta_fast", "beta_slow",
                     "mscale", "mscale_all_dim", "attention_factor", "truncate"),
            "llama3": ("factor", "low_freq_factor", "high_freq_factor",
                       "original_max_position_embeddings")}


def scaling_from_hf(rope_parameters: dict, *, max_position_embeddings: int | None = None,
                    seq_len: int | None = None) -> tuple[float, Scaling | None, float]:
    """(base, scaling, partial_rotary_factor) from a transformers ``rope_parameters`` dict.

    ``"dynamic"`` is NTK-aware at the length ``seq_len`` (HF: the largest position + 1, at least
    ``max_position_embeddings``), so both are needed for it.

    >>> scaling_from_hf({"rope_type": "linear", "rope_theta": 1e4, "factor": 2.0})
    (10000.0, LinearScaling(factor=2.0), 1.0)
    """
    if not isinstance(rope_parameters, dict):
        raise TypeError(f"rope_parameters must be a dict, got {describe(rope_parameters)}")
    kind = rope_parameters.get("rope_type", "default")
    base = float(rope_parameters.get("rope_theta", 10000.0))
    partial = float(rope_parameters.get("partial_rotary_factor", 1.0))
    if kind == "default":
        return base, None, partial
    if kind not in _HF_KEYS:
        raise ValueError(f"rope_parameters['rope_type'] must be one of "
                         f"{['default', *_HF_KEYS]}, got {kind!r}")
    given = {k: rope_parameters[k] for k in _HF_KEYS[kind] if rope_parameters.get(k) is not None}
    if kind == "yarn":  # HF falls back to its defaults for a None or zero beta
        given = {k: v for k, v in given.items() if not (k.startswith("beta") and not v)}
    if kind == "dynamic":
        if seq_len is None or max_position_embeddings is None:
            raise ValueError("rope_type 'dynamic' needs seq_len and max_position_embeddings")
        factor = dynamic_ntk_factor(given["factor"], seq_len, max_position_embeddings)
        return base, NTKScaling(factor), partial
    cls = {"linear": LinearScaling, "yarn": YarnScaling, "llama3": Llama3Scaling}[kind]
    return base, cls(**given), partial


__all__ = ["SCALINGS", "LinearScaling", "Llama3Scaling", "NTKScaling", "Scaling", "YarnScaling",
           "check_frequency_args", "dynamic_ntk_factor", "rope_frequencies",
           "rope_frequencies_naive", "scaling_from_hf", "yarn_mscale"]
