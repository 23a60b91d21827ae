"""IsoFLOP ladders: presets that spend their budgets, Approach 2 with D and intervals, the report's
rules on synthetic ladders, and `refllm scaling` end to end on a tiny IsoFLOP preset."""

import json
import math

import numpy as np
import pytest

from refllm.cli import main
from refllm.scaling.fit import isoflop_fit
from refllm.scaling.fit.laws import chinchilla_loss
from refllm.scaling.report import isoflop as iso
from refllm.scaling.sweep import runs as sw
from refllm.scaling.sweep.presets import PRESETS, Preset, train_flops_per_token
from tests.scaling.tiny_preset import tiny_preset


def tiny_isoflop(**changes) -> Preset:
    base = dict(name="tiny-iso", widths=(4, 6, 8, 12, 16, 24), seeds=(0,), n_layer=1,
                head_width=4, min_heads=1, tokens=0, budgets=(2e7, 6e7, 1.8e8),
                budget_widths=((4, 6, 8, 12), (6, 8, 12, 16), (8, 12, 16, 24)),
                holdout_budget=5.4e8, holdout_tolerance=0.05)
    base.update(changes)
    return tiny_preset(**base)


@pytest.mark.parametrize("name", ["cpu-isoflop", "h200-isoflop"])
def test_every_run_of_an_isoflop_preset_spends_its_budget(name):
    preset = PRESETS[name]
    runs = sw.plan(preset)
    assert len(runs) == sum(len(w) for w in preset.budget_widths) * len(preset.seeds)
    assert len({r.run_id for r in runs}) == len(runs)
    for r in runs:
        flops = train_flops_per_token(r.config.model_dict(256)) * r.config.tokens
        steps = r.config.max_steps  # the budget, rounded to whole steps
        assert abs(flops / r.budget - 1) <= 0.5 / steps + 1e-12, r.run_id
        assert f"-C{sw.budget_label(r.budget)}-d{r.d_model}-" in r.run_id
        assert r.config.tokens <= 11_500_000, r.run_id  # under one pass over the stdlib corpus


def test_the_flop_count_is_three_times_the_exact_forward_count():
    from refllm.model import GPTConfig, flops_per_token

    model = PRESETS["cpu-isoflop"].train_config(32, 0, 1e12).model_dict(256)
    assert train_flops_per_token(model) == 3 * flops_per_token(GPTConfig.from_dict(model),
                                                               method="exact")


@pytest.mark.parametrize("changes, words", [
    ({"budgets": (1e8, 3e8)}, "budgets needs >= 3"),
    ({"budgets": (3e8, 1e8, 9e8)}, "distinct and ascending"),
    ({"budget_widths": ((4, 6, 8), (6, 8, 12, 16), (8, 12, 16, 24))}, ">= 4 distinct widths"),
    ({"budget_widths": ((4, 6, 8, 32), (6, 8, 12, 16), (8, 12, 16, 24))}, "out of widths"),
    ({"holdout_budget": 1e8}, "holdout_budget must be a budget above the largest"),
    ({"holdout_budget": None}, "holdout_budget"),
    ({"budgets": (1e3, 6e7, 1.8e8)}, "under 2 steps"),
    ({"tokenizer": "bpe"}, "tokenizer must be 'bytes'"),
    ({"holdout_tolerance": 0.0}, "holdout_tolerance"),
    ({"holdout_predictor": "chinchilla"}, "holdout_predictor"),
])
def test_a_bad_isoflop_preset_is_refused_with_the_reason(changes, words):
    with pytest.raises(ValueError, match=words):
        tiny_isoflop(**changes)


def test_a_fixed_token_ladder_has_steps_and_an_isoflop_ladder_has_steps_per_run():
    assert tiny_preset().steps == 20 and not tiny_preset().isoflop
    with pytest.raises(ValueError, match="IsoFLOP ladder"):
        _ = tiny_isoflop().steps


# --- Approach 2 with the runs' tokens and intervals -------------------------------------------

TRUTH = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)  # Hoffmann et al. 2022, §D.2


def _isoflop_ladder(noise=0.0, seed=0, per_token=lambda n: 6 * n):
    """Runs of the Chinchilla law on three budgets, five sizes centred on each optimum."""
    rng = np.random.default_rng(seed)
    cs, ns, ds = [], [], []
    for c in (1e19, 1e20, 1e21):
        grid = np.geomspace(1e8, 1e11, 4000)
        best = grid[np.argmin(chinchilla_loss(grid, c / per_token(grid), **TRUTH))]
        for n in best * np.geomspace(1 / 8, 8, 5):
            cs.append(c)
            ns.append(n)
            ds.append(c / per_token(n))
    c, n, d = map(np.array, (cs, ns, ds))
    loss = chinchilla_loss(n, d, **TRUTH) * np.exp(noise * rng.standard_normal(len(c)))
    return c, n, d, loss


def test_with_the_runs_tokens_b_is_fitted_not_assumed():
    # a FLOP count that is not 6N (a head-like term): D_opt no longer scales as C / N_opt
    c, n, d, loss = _isoflop_ladder(per_token=lambda n: 6 * n + 3e5 * n ** 0.5)
    fit = isoflop_fit(c, n, loss, d)
    per_token = c / d
    implied = np.polyfit(np.log(fit.budgets), np.log(fit.D_opt), 1)[0]
    assert fit.b == pytest.approx(implied) and fit.b != pytest.approx(1 - fit.a, abs=1e-3)
    assert np.all(fit.D_opt < fit.budgets / (6 * fit.N_opt))  # per token > 6 N
    assert per_token.min() > 0
    assert isoflop_fit(c, n, loss).b == 1 - isoflop_fit(c, n, loss).a  # no D: C = 6 N D


def test_the_residual_bootstrap_gives_intervals_that_hold_the_noise_free_exponent():
    exact = isoflop_fit(*_isoflop_ladder()[:2], _isoflop_ladder()[3], _isoflop_ladder()[2])
    c, n, d, loss = _isoflop_ladder(noise=0.003)
    fit = isoflop_fit(c, n, loss, d, bootstrap=400, rng=1)
    assert fit.a_ci[0] <= exact.a <= fit.a_ci[1] and fit.b_ci[0] <= exact.b <= fit.b_ci[1]
    assert fit.a_ci[1] - fit.a_ci[0] < 0.2 and fit.replicates_ok > 0.9
    assert "bootstrap CIs" in fit.table()


# --- the report's rules, on synthetic records ---------------------------------------------------

class _Preset:  # on the Chinchilla law near its floor: judged by Approach 3 (see the module)
    name, holdout_budget, holdout_tolerance, holdout_predictor = "synthetic", 1e22, 0.01, \
        "approach3"


def _records(noise=0.002, holdout_factor=1.0):
    c, n, d, loss = _isoflop_ladder(noise=noise)
    runs = [{"run_id": f"r{i}", "budget": c[i], "role": "ladder", "seed": 0,
             "n_params_non_embedding": int(n[i]), "tokens": int(d[i]),
             "final_val_loss": float(loss[i])} for i in range(len(c))]
    a2 = isoflop_fit(c, n, loss, d)
    n_h = float(a2.predict_n_opt(1e22)[0])
    d_h = 1e22 / (6 * n_h)
    held = {"run_id": "held", "budget": 1e22, "role": "holdout", "seed": 0,
            "n_params_non_embedding": int(n_h), "tokens": int(d_h),
            "final_val_loss": float(chinchilla_loss(n_h, d_h, **TRUTH)) * holdout_factor}
    return runs, held


def test_a_ladder_that_follows_the_law_passes_and_a_missed_prediction_fails():
    runs, held = _records()
    report = iso.build_isoflop_report(runs + [held], _Preset)
    assert report.passed, report.text()
    assert [r.name for r in report.verdict.rules] == [
        "runs finite", "interior minima", "a agrees (A2 vs A3)", "E determined",
        "held-out error", "held-out in PI"]
    held_out = report.verdict.details["held_out"]
    assert abs(held_out["error"]) < 0.01 and held_out["N_opt_approach2"] > 0
    for a in (report.analysis.approach2.a, report.analysis.allocation3["a"]):
        assert a == pytest.approx(0.28 / 0.62, abs=0.05)  # beta / (alpha + beta)
    missed = iso.isoflop_verdict(report.analysis, {**held, "final_val_loss":
                                                   held["final_val_loss"] * 1.05}, _Preset)
    assert not missed.rule("held-out error").passed and not missed.passed
    assert "NOT shown" in missed.table()
    alone = iso.isoflop_verdict(report.analysis, None, _Preset)
    assert alone.rule("held-out error").value == "no held-out run" and not alone.passed


def test_a_budget_without_an_interior_minimum_fails_its_rule_and_the_report_says_why():
    runs, held = _records()
    top = max(r["budget"] for r in runs)
    smallest = min(r["n_params_non_embedding"] for r in runs if r["budget"] == top)
    runs = [r for r in runs if not (r["budget"] == top and r["n_params_non_embedding"] >
                                    3 * smallest)]  # keeps only the left side of one curve
    runs += [{**r, "run_id": r["run_id"] + "b", "n_params_non_embedding":
              r["n_params_non_embedding"] // 2} for r in runs if r["budget"] == top]
    analysis = iso.analyse(runs, bootstrap2=200, bootstrap3=0)
    verdict = iso.isoflop_verdict(analysis, held, _Preset)
    assert not verdict.rule("interior minima").passed and "approach 2" in analysis.errors
    with pytest.raises(ValueError, match="outside the sampled range|not convex"):
        iso.holdout_run(tiny_isoflop(), runs)


def test_a_diverged_run_fails_the_first_rule_and_evaluates_nothing_else():
    runs, held = _records()
    runs[0] = {**runs[0], "final_val_loss": math.nan, "status": "diverged"}
    report = iso.build_isoflop_report(runs + [held], _Preset)
    assert not report.verdict.rule("runs finite").passed
    assert all(r.value == "not evaluated" for r in report.verdict.rules[1:])


def test_records_without_a_budget_are_not_an_isoflop_ladder():
    with pytest.raises(ValueError, match="lack 'budget'"):
        iso.ladder_runs([{"run_id": "x", "seed": 0}])


# --- end to end -------------------------------------------------------------------------------

@pytest.fixture
def quick_estimate(monkeypatch):
    from refllm.scaling.sweep import budget

    monkeypatch.setattr(budget, "time_step", lambda config, data, *steps: 0.01)


LAW = dict(E=1.0, A=10.0, B=15.0, alpha=0.4, beta=0.4)  # interior minima at the tiny widths


@pytest.fixture
def lawful_training(monkeypatch):
    """`refllm.train.train` replaced by the Chinchilla law LAW at the run's N and D, times a
    0.2% noise fixed per run (the orchestration is under test here; real training of ladders is
    in test_scaling_cli.py)."""
    import types

    import refllm.train
    from refllm.model import GPTConfig, parameter_count

    def train(config, out_dir, **_):
        n = parameter_count(GPTConfig.from_dict(config.model_dict(256)), non_embedding=True)
        noise = np.random.default_rng([n, config.tokens]).standard_normal()  # one per run
        loss = float(chinchilla_loss(n, config.tokens, **LAW)) * math.exp(0.002 * noise)
        record = {"kind": "run", "status": "ok", "seed": config.seed, "final_val_loss": loss,
                  "n_params_non_embedding": n, "tokens": config.tokens, "time_s": 0.0}
        return types.SimpleNamespace(record=record)

    monkeypatch.setattr(refllm.train, "train", train)


def test_the_isoflop_command_trains_the_ladder_then_the_held_out_run_and_reports(
        tmp_path, capsys, quick_estimate, lawful_training):
    preset = tiny_isoflop()
    path = tmp_path / "iso.json"
    path.write_text(json.dumps(preset.to_dict()))
    out = tmp_path / "out"
    args = ["scaling", "--preset", str(path), "--out", str(out), "--no-progress"]
    status = main(args)
    text = capsys.readouterr().out
    assert "then ~" in text and "for the held-out run" in text  # in the up-front estimate
    runs = [json.loads(line) for line in (out / sw.RECORDS).read_text().splitlines()]
    runs = [r for r in runs if r["kind"] == "run"]
    held = [r for r in runs if r["role"] == "holdout"]
    assert len(runs) == 13 and len(held) == 1 and all("train_flops" in r for r in runs)
    assert held[0]["budget"] == preset.holdout_budget and "-holdout-C5.4e8-" in held[0]["run_id"]
    assert f"held-out run: width {held[0]['d_model']} at C=5.4e+08" in text
    summary = json.loads((out / iso.SUMMARY).read_text())
    assert status == (0 if summary["verdict"]["passed"] else 1)
    rules = {r["name"]: r for r in summary["verdict"]["rules"]}
    for name in ("runs finite", "interior minima", "a agrees (A2 vs A3)", "E determined",
                 "held-out error"):  # the PI is as narrow as the 0.2% noise: not asserted
        assert rules[name]["passed"], name
    assert "verdict (tiny-iso preset)" in text
    assert summary["approach2"]["a"] == pytest.approx(0.5, abs=0.1)  # beta / (alpha + beta)
    for name in iso.PLOTS:
        assert (out / name).stat().st_size > 0
    assert main(args) == status  # a rerun trains nothing more
    assert "trained 0 run(s), skipped 12" in capsys.readouterr().out
    assert main(args + ["--report-only"]) == status
    assert len([ln for ln in (out / sw.RECORDS).read_text().splitlines()
                if '"kind": "run"' in ln]) == 13


def test_shards_train_the_ladder_and_a_run_without_a_shard_adds_the_held_out_run(
        tmp_path, capsys, quick_estimate, lawful_training):
    path = tmp_path / "iso.json"
    path.write_text(json.dumps(tiny_isoflop().to_dict()))
    out = tmp_path / "out"
    args = ["scaling", "--preset", str(path), "--out", str(out), "--no-progress"]
    assert main(args + ["--shard", "0/2"]) == 0 and main(args + ["--shard", "1/2"]) == 0
    text = capsys.readouterr().out
    assert "for the held-out run" not in text and "a run without --shard trains" in text
    main(args)
    assert "trained 0 run(s), skipped 12" in capsys.readouterr().out
    roles = [json.loads(ln).get("role") for ln in (out / sw.RECORDS).read_text().splitlines()]
    assert roles.count("holdout") == 1 and roles.count("ladder") == 12
