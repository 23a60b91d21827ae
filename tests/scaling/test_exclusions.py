"""Exclusion rules are stated, applied in order, counted and recorded; bad rules are refused."""

from __future__ import annotations

import json

import pytest

from refllm.cli import main
from refllm.scaling.exclusions import Rule, apply, parse_rule

ROWS = [{"N": n, "D": 20 * n if n > 1e4 else 2 * n, "C": None, "loss": 5.0 - i / 2, "seed": 0}
        for i, n in enumerate([1e3, 1e4, 1e5, 1e6, 1e7])]


@pytest.mark.parametrize("text, rule", [
    ("tokens_per_param<5", Rule("tokens_per_param", "<", 5.0)),
    (" n >= 1e6 ", Rule("N", ">=", 1e6)),
    ("loss>4.25", Rule("loss", ">", 4.25)),
    ("D<=2e4", Rule("D", "<=", 2e4)),
])
def test_a_rule_is_field_op_value(text, rule):
    assert parse_rule(text) == rule


@pytest.mark.parametrize("text, match", [
    ("params<5", "FIELD one of N, D, C, loss, tokens_per_param"),
    ("N=5", "OP one of"), ("N<abc", "finite number"), ("N<inf", "finite number"), ("", "FIELD"),
])
def test_a_bad_rule_is_refused_with_the_grammar(text, match):
    with pytest.raises(ValueError, match=match):
        parse_rule(text)


def test_rules_apply_in_order_and_each_counts_what_it_dropped():
    kept, log = apply([parse_rule("tokens_per_param<5"), parse_rule("N>=1e7")], ROWS)
    assert [r["N"] for r in kept] == [1e5, 1e6]
    assert log == [{"rule": "tokens_per_param<5", "dropped": 2}, {"rule": "N>=1e+07",
                                                                   "dropped": 1}]


def test_a_rule_on_a_missing_field_or_one_that_drops_everything_is_an_error():
    with pytest.raises(ValueError, match="C is missing for some runs"):
        apply([parse_rule("C<1")], ROWS)
    with pytest.raises(ValueError, match="drops every one of the 3 runs left"):
        apply([parse_rule("N<1e5"), parse_rule("loss<9")], ROWS)


def test_refllm_fit_prints_and_records_its_exclusions(tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    csv.write_text("N,D,loss\n" + "".join(f"{r['N']},{r['D']},{r['loss']}\n" for r in ROWS))
    out_json = tmp_path / "fit.json"
    assert main(["fit", str(csv), "--pure", "--bootstrap", "0", "--exclude", "tokens_per_param<5",
                 "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "excluded 2 run(s) by tokens_per_param<5" in out and "3 runs" in out
    assert json.loads(out_json.read_text())["exclusions"] == [
        {"rule": "tokens_per_param<5", "dropped": 2}]
    assert main(["fit", str(csv), "--exclude", "steps<3"]) == 2
    assert "--exclude 'steps<3'" in capsys.readouterr().err
