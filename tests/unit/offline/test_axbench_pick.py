"""steering/offline/axbench_pick.py (the default-feature screen's parsing, rule and table) and the fluency
ratio helpers of axbench_grades, on hand-made runs."""

import math

import pytest

from steering.offline.axbench_grades import fluency_ratio, median_ppl_ratio
from steering.offline.axbench_pick import choose, markdown, parse_candidates, parse_settings, picks


def test_fluency_ratio_pools_tokens_like_the_evaluate_scorer():
    # steered: 30 nats over 10 + 20 tokens -> ppl e^1; unsteered: 5 nats over 10 tokens -> e^0.5
    steered = [{"nll": 10.0, "tokens": 10}, {"nll": 20.0, "tokens": 20}, {"nll": 0.0, "tokens": 0}]
    base = [{"nll": 5.0, "tokens": 10}]
    assert fluency_ratio(steered, base) == pytest.approx(math.exp(1.0) / math.exp(0.5))
    # pooled, not a mean of per-answer ratios: a short bad answer weighs by its tokens
    assert fluency_ratio([{"nll": 40.0, "tokens": 2}, {"nll": 0.0, "tokens": 98}], base) == pytest.approx(
        math.exp(0.4) / math.exp(0.5))
    assert fluency_ratio(base, base) == 1.0


def test_median_ppl_ratio_skips_empty_answers():
    rows = [{"ppl_ratio": 1.0}, {"ppl_ratio": None}, {"ppl_ratio": 3.0}, {"ppl_ratio": 2.0}]
    assert median_ppl_ratio(rows) == 2.0
    assert median_ppl_ratio([{"ppl_ratio": None}]) is None


def test_parse_candidates_and_settings():
    assert parse_candidates("dogs=L15:1, L15:2; paris=L15:3;") == {"dogs": ["L15:1", "L15:2"], "paris": ["L15:3"]}
    assert parse_settings("add:30,clamp:42.5") == [("add", 30.0), ("clamp", 42.5)]


def run(key, inclusion, ratio, strength=30.0, n=16, concept="dogs"):
    return {"concept": concept, "kind": "animal", "key": key, "mode": "add", "strength": strength, "n_prompts": n,
            "seed": 0, "inclusion": inclusion, "fluency_ratio": ratio, "median_ppl_ratio": 1.1, "score": 1.0}


def test_choose_takes_the_most_fluent_run_with_a_margin_over_the_target():
    runs = [run("L15:1", 0.95, 1.9), run("L15:2", 0.81, 1.4), run("L15:3", 0.75, 1.1), run("L15:4", 1.0, 2.5)]
    assert choose(runs)["key"] == "L15:2"  # 0.75 lacks the margin, 2.5 is not fluent
    assert choose(runs[2:])["key"] == "L15:3"  # no run with the margin: the target itself
    assert choose([run("L15:4", 1.0, 2.5), run("L15:5", 0.6, 1.0)]) is None
    # a confirmation on more prompts replaces the screen
    assert choose(runs + [run("L15:1", 0.9, 1.8, n=40)])["n_prompts"] == 40
    assert choose(runs + [{**run("x", 1.0, 1.0), "baseline": True}])["key"] == "L15:2"


def test_picks_and_markdown_mark_the_chosen_run_and_failed_concepts():
    runs = [run("L15:1", 0.9, 1.5), run("L15:2", 0.2, 1.1), run("L15:9", 0.5, 1.2, concept="cats")]
    p = picks(runs)
    assert p["dogs"]["key"] == "L15:1" and p["cats"] is None
    md = markdown({"runs": runs, "picked": p}).splitlines()
    assert "| dogs | animal | L15:1 |  | add 30 | 16 x 0 | 90% | 1.50 | 1.10 | 1.00 | **yes** |" in md
    assert "| cats | none reaches 70% at fluency ratio <= 2 | - | - |" in md
