"""steering/offline/eval/pick.py (the default-feature screen's rules, rows and table) and the fluency ratio
helpers of eval/grades, on hand-made runs."""

import math

import pytest

from steering.offline.eval.grades import fluency_ratio, median_ppl_ratio
from steering.offline.eval.pick import (
    choose,
    choose_by_margin,
    fallback,
    flat_runs,
    label_candidates,
    margin,
    markdown,
    picks,
)


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


def test_fallback_takes_the_highest_inclusion_within_a_looser_fluency_bound():
    assert fallback([run("a", 0.5, 2.4), run("b", 0.6, 2.6), run("c", 0.5, 2.0)])["key"] == "c"
    assert fallback([run("a", 0.0, 1.0)]) is None


def test_picks_and_markdown_mark_the_chosen_run_and_failed_concepts():
    runs = [run("L15:1", 0.9, 1.5), run("L15:2", 0.2, 1.1), run("L15:9", 0.5, 1.2, concept="cats")]
    runs += [run("L15:8", 0.4, 2.6, concept="cats"), run("L15:7", 0.0, 1.0, concept="birds")]
    p = picks(runs, "first-round")
    assert p["dogs"]["key"] == "L15:1" and not p["dogs"]["below_target"]
    assert p["cats"]["key"] == "L15:9" and p["cats"]["below_target"]  # 40% at 2.6 is past the fallback's 2.5
    assert p["birds"] is None
    md = markdown({"split": "pick@1", "rule": "first-round", "runs": runs, "picked": p}).splitlines()
    assert md[0].startswith("Default-feature screening on pick@1")
    assert "| dogs | animal | L15:1 |  | add 30 | 16 x 0 | 90% | 1.50 | 1.10 | 1.00 | **yes** |" in md
    assert "| cats | L15:9 add 30 (below target) | 50% | 1.20 |" in md
    assert "| birds | nothing above 0% at fluency ratio <= 2.5 | - | - |" in md


def test_label_candidates_rank_features_whose_words_name_the_concept():
    feats = [{"label": "dog / dogs / pet", "top_words": [["dog", 5.0], ["dogs", 3.0], ["pet", 2.0]]},
             {"label": "the / of", "top_words": [["the", 9.0], ["of", 1.0]]},
             {"label": "walk / puppies", "top_words": [["walk", 8.0], ["puppies", 2.0]]},
             {"label": "dogma / creed", "top_words": [["dogma", 1.0]]}]
    # "dogma" is no dog (a 3-letter word is matched whole); phrases are left out
    assert label_candidates(_Cards(feats), ("dog", "puppy", "puppies", "labrador retriever")) == [0, 2]


class _Cards:
    def __init__(self, feats):
        from types import SimpleNamespace

        self.contexts = SimpleNamespace(features=feats)

    def __len__(self):
        return len(self.contexts.features)


def test_margin_is_the_smaller_clearance_in_noise_units():
    assert margin(run("a", 0.82, 1.76)) == pytest.approx(min(0.12 / 0.06, 0.24 / 0.12))  # 2.0 either way
    assert margin(run("a", 0.95, 1.94)) == pytest.approx(0.5)  # fluency is the short side
    assert margin(run("a", 0.64, 1.5)) == pytest.approx(-1.0)  # below the inclusion target


def test_second_round_picks_the_largest_margin_and_marks_misses():
    runs = [run("L15:1", 0.85, 1.90), run("L15:1", 0.79, 1.86, strength=24), run("L15:1", 0.69, 1.73, strength=20)]
    best, below = choose_by_margin(runs)
    assert (best["strength"], below) == (24, False)  # min(1.5, 1.17) beats min(2.5, 0.83)
    miss = [run("L15:2", 0.61, 2.10, concept="fear"), run("L15:2", 0.53, 1.89, concept="fear", strength=47)]
    assert choose_by_margin(miss)[0]["strength"] == 30 and choose_by_margin(miss)[1]  # -1.5 beats -2.83
    assert choose_by_margin(runs + [run("L15:3", 0.99, 1.0, n=24)])[0]["n_prompts"] == 24  # more prompts win
    p = picks(runs + miss, "margin")
    assert p["dogs"]["strength"] == 24 and not p["dogs"]["below_target"] and p["fear"]["below_target"]
    md = markdown({"split": "pick2@1", "rule": "margin", "runs": runs + miss, "picked": p})
    assert md.startswith("On pick2@1, a pick split written for round 2") and "| fear | L15:2 add 30 (below target) | 61% | 2.10 |" in md


def test_flat_runs_give_one_row_per_setting_and_baseline_pooled_over_seeds():
    summary = {"lexicon": 0.75, "fluency_ratio": 1.9, "median_ppl_ratio": 1.4, "score": None}
    result = {"prompts": ["a", "b"], "seeds": [0, 1], "features": [
        {"key": "L15:1", "label": "dogs (pets)", "concept": "dogs", "kind": "animal",
         "runs": [{"mode": "add", "strength": 30, "summary": summary},
                  {"mode": "clamp", "strength": 40, "summary": dict(summary, lexicon=0.5)}],
         "baseline": {"summary": dict(summary, lexicon=0.25, fluency_ratio=1.1)}}]}
    rows = flat_runs(result)
    assert [(r["key"], r["mode"], r["strength"], r["inclusion"]) for r in rows] == [
        ("L15:1", "add", 30.0, 0.75), ("L15:1", "clamp", 40.0, 0.5), ("system prompt", "-", 0.0, 0.25)]
    assert rows[0]["n_prompts"] == 2 and rows[0]["seed"] == "0,1" and rows[2]["baseline"]
    assert picks(rows)["dogs"]["mode"] == "add"  # the baseline is never picked
