"""check_kv_cache: correct decoders pass (refllm's GPT, GPT-2 through the adapter, a bare step
function); every planted bug of kv_cache_mutants is caught on "incremental logits"."""

from __future__ import annotations

import pytest
import torch
from hypothesis import Phase

from refllm.model import GPT, GPTConfig, KVCache
from refllm.testing import OracleFailure, check_kv_cache
from refllm.testing.kv_cache.adapters import as_decoder
from tests.testing.mutants import kv_cache_mutants as K
from tests.testing.mutants.test_mutants import settings_profile

NO_SHRINK = dict(phases=[Phase.explicit, Phase.reuse, Phase.generate])


def quick(target, seed=0, **kw):
    """The check with the active profile's examples and no shrinking (detection only)."""
    with settings_profile(**NO_SHRINK):
        return check_kv_cache(target, seed=seed, raise_on_failure=False, **kw)


@pytest.mark.parametrize("seed", [0, 1, pytest.param(2, marks=pytest.mark.slow),
                                  pytest.param(3, marks=pytest.mark.slow)])
def test_refllm_gpt_passes_over_several_seeds(seed):
    report = quick(K.build(GPT, seed=seed), seed=seed, examples=20 if seed < 2 else None)
    assert report.passed, str(report)
    assert report.property("incremental logits").examples == report.examples > 0


@pytest.mark.parametrize("change", [dict(attention="reference"), dict(n_kv_head=1),
                                    dict(positions="rope")], ids=["reference", "gqa", "rope"])
def test_refllm_gpt_variants_pass(change):  # 10 examples each: the model's own tests go further
    config = GPTConfig(vocab_size=13, n_ctx=16, n_layer=2, n_head=2, d_model=16, init_std=0.5,
                       **change)
    assert quick(K.build(GPT, config), examples=10).passed


def test_float32_has_no_false_alarm_against_the_float64_full_forward():
    report = quick(K.build(GPT), dtype=torch.float32, seed=3, examples=20)
    assert report.passed, str(report)


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow),
                                  pytest.param(2, marks=pytest.mark.slow)])
def test_gpt2_through_the_hf_adapter_passes(seed, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=13, n_positions=16, n_embd=16, n_layer=2, n_head=2,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                  bos_token_id=None, eos_token_id=None,
                                  attn_implementation="eager")
    hf = transformers.GPT2LMHeadModel(cfg)
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.5)
    report = quick(hf, seed=seed, examples=20 if seed == 0 else None)
    assert report.passed, str(report)


def refllm_step(model):
    def step(ids, attention_mask, cache):
        cache = KVCache() if cache is None else cache
        return model(ids, attention_mask=attention_mask, cache=cache), cache
    return step


def test_a_bare_step_function_is_checked_with_its_sizes():
    step = refllm_step(K.build(GPT))
    assert quick(step, vocab_size=13, n_ctx=16, examples=15).passed
    with pytest.raises(ValueError, match="vocab_size= and n_ctx="):
        check_kv_cache(step)


@pytest.mark.parametrize("mutant", K.MUTANTS, ids=lambda m: m.__name__)
def test_every_planted_bug_is_caught_on_incremental_logits(mutant):
    report = quick(K.build(mutant))
    assert not report.passed, f"{mutant.__name__} was not caught:\n{report}"
    assert report.failed_properties == ["incremental logits"]
    assert report.property("raises on valid input").passed


def test_the_correct_version_the_mutants_derive_from_passes_and_equals_gpt():
    x = torch.randint(0, 13, (2, 16), generator=torch.Generator().manual_seed(0))
    assert torch.equal(K.build(K.SteppedGPT)(x), K.build(GPT)(x))
    assert quick(K.build(K.SteppedGPT), seed=1, examples=20).passed


def test_a_failure_is_shrunk_raised_and_its_snippet_reproduces_it():
    model = K.build(K.PositionsRestartAtZero)
    with pytest.raises(OracleFailure) as info:
        check_kv_cache(model, seed=0)
    report = info.value.report
    problem = report.case
    assert problem.ids.shape[1] == 2 and problem.steps == (1, 1)  # shrunk to the least
    assert "step 2 of 2" in report.discrepancies[0].message
    namespace = {"torch": torch}
    exec(report.snippet.replace("model = None", "model = _model"),  # noqa: S102
         {**namespace, "_model": model})


def test_a_step_that_raises_or_returns_a_wrong_shape_is_named():
    good = refllm_step(K.build(GPT))

    def fails_after_the_prompt(ids, attention_mask, cache):
        if cache is not None:
            raise RuntimeError("no cache support")
        return good(ids, attention_mask, cache)

    def last_position_only(ids, attention_mask, cache):
        logits, cache = good(ids, attention_mask, cache)
        return logits[:, -1:], cache

    raised = quick(fails_after_the_prompt, vocab_size=13, n_ctx=16)
    assert raised.failed_properties == ["raises on valid input"]
    shaped = quick(last_position_only, vocab_size=13, n_ctx=16)
    assert shaped.failed_properties == ["logits shape"]


def test_bad_arguments_are_clear_errors():
    with pytest.raises(TypeError, match="model_or_step_fn"):
        check_kv_cache(3)
    with pytest.raises(ValueError, match="max_len"):
        check_kv_cache(K.build(GPT), max_len=0)
    with pytest.raises(TypeError, match="new_cache"):
        as_decoder(NoCacheType())


class NoCacheType(torch.nn.Module):
    """A module with sizes but no way to tell its cache type (forward's cache is unannotated)."""

    def __init__(self):
        super().__init__()
        self.config = GPTConfig(vocab_size=3, n_ctx=4, n_layer=1, n_head=1, d_model=2)

    def forward(self, idx, attention_mask=None, cache=None):
        return idx
