"""steering/offline/eval/report.py and run.merge: tables checked exactly, the run directory written."""

import json
import math

import yaml

from steering.offline.eval.pick import flat_runs, picks
from steering.offline.eval.report import light_markdown, markdown, plot, result_markdown, write_run
from steering.offline.eval.run import merge as _merge

S = {"concept": 1.5, "instruction": 1.25, "fluency": 2.0, "score": 1.2, "lexicon": 0.75, "probe": 0.5, "n": 4}
TH = {"t1": -0.05, "t2": 0.3, "ppl_ref": 5.0, "q2": 1.8, "q1": 3.6, "rep2": 0.1, "rep1": 0.3}


def result(runs):
    return {"split": "report", "prompts": ["a", "b"], "seeds": [0, 1], "max_new_tokens": 64, "probe_layer": 20,
            "seconds": 12.0, "thresholds": TH,
            "probes": {"music": {"threshold": 1.5, "heldout": {"balanced_accuracy": 0.95, "tpr": 1.0, "fpr": 0.1}}},
            "features": [{"key": "L15:1", "label": "music", "concept": "music", "runs": runs,
                          "baseline": {"summary": dict(S, score=0.5), "per_seed": [dict(S, score=0.5)] * 2}, "unsteered": {"summary": dict(S, score=0.1)}}]}


def test_markdown_rows_per_condition_and_thresholds():
    lines = markdown(result([{"mode": "add", "strength": 30.0, "summary": S}])).splitlines()
    assert lines[4] == "| music (L15:1) [music] | add 30 | 1.50 | 1.25 | 2.00 | **1.20** | 75% | 50% | - | - |"
    assert lines[5].startswith("| music (L15:1) [music] | system prompt | ") and "**0.50**" in lines[5]
    assert "**0.10**" in lines[6]
    assert "| instruction 2: relevance >= t2 (nats/token) | 0.300 |" in lines
    assert "| music | 1.500 | 0.95 | 1.00 | 0.10 |" in lines


def test_merge_pools_the_rows_of_every_seed():
    rows = [dict(concept=2, instruction=2, fluency=2, score=2.0, lexicon=1, probe=1),
            dict(concept=0, instruction=2, fluency=2, score=0.0, lexicon=0, probe=0)]
    merged = _merge([{"summary": {"score": 2.0}, "rows": rows[:1]}, {"summary": {"score": 0.0}, "rows": rows[1:]}])
    assert merged["summary"]["score"] == 1.0 and merged["summary"]["n"] == 2
    assert merged["per_seed"] == [{"score": 2.0}, {"score": 0.0}]


def test_merge_with_unsteered_adds_the_pooled_fluency_ratio_per_seed_and_overall():
    row = dict(concept=2, instruction=2, fluency=2, score=2.0, lexicon=1, probe=1)
    steered = [{"summary": dict(S, score=2.0, lexicon=1.0), "rows": [dict(row, nll=20.0, tokens=10, ppl_ratio=1.5)]},
               {"summary": dict(S, score=2.0, lexicon=1.0), "rows": [dict(row, nll=10.0, tokens=10, ppl_ratio=1.0)]}]
    plain = [{"summary": {}, "rows": [dict(row, nll=10.0, tokens=10, ppl_ratio=1.0)]},
             {"summary": {}, "rows": [dict(row, nll=10.0, tokens=10, ppl_ratio=1.0)]}]
    merged = _merge(steered, plain)
    assert [s["fluency_ratio"] for s in merged["per_seed"]] == [round(math.exp(1.0), 4), 1.0]
    assert merged["summary"]["fluency_ratio"] == round(math.exp(0.5), 4)
    assert merged["summary"]["median_ppl_ratio"] == 1.25
    lines = markdown(result([{"mode": "add", "strength": 30.0, **merged}])).splitlines()
    assert "| music (L15:1) [music] | add 30 | 100% / 2.72 / 2.00 vs 0.50 | 100% / 1.00 / 2.00 vs 0.50 |" in lines


def test_write_run_makes_the_run_directory_for_bars_and_sweeps(tmp_path):
    one = result([{"mode": "add", "strength": 30.0, "summary": S}])
    write_run(tmp_path / "one", {"name": "one", "seeds": [0, 1]}, one, markdown(one))
    sweep = result([{"mode": m, "strength": s, "summary": dict(S, score=s / 40)} for m in ("add", "clamp")
                    for s in (20.0, 30.0, 40.0)])
    del sweep["features"][0]["baseline"]  # a run without the baseline
    write_run(tmp_path / "sweep", {"name": "sweep"}, sweep, markdown(sweep))
    for name in ("one", "sweep"):
        for f in ("config.yaml", "results.json", "table.md", "plot.png"):
            assert (tmp_path / name / f).stat().st_size > 0
    assert json.loads((tmp_path / "one" / "results.json").read_text()) == one
    assert yaml.safe_load((tmp_path / "one" / "config.yaml").read_text()) == {"name": "one", "seeds": [0, 1]}
    assert "seeds: [0, 1]" in (tmp_path / "one" / "config.yaml").read_text()
    assert "system prompt" not in (tmp_path / "sweep" / "table.md").read_text()


def light_result():
    s = {"lexicon": 0.5, "n": 2, "fluency_ratio": 1.8, "median_ppl_ratio": 1.5}
    per = [dict(s, lexicon=1.0, fluency_ratio=1.7), dict(s, lexicon=0.0, fluency_ratio=1.9)]
    return {"split": "pick2@1", "prompts": ["a"], "seeds": [0, 1], "max_new_tokens": 8, "scorer": "light",
            "lexicon": 2, "seconds": 3.0, "rule": "margin", "features": [
                {"key": "L15:1", "label": "music", "concept": "music", "kind": "topic",
                 "runs": [{"mode": "add", "strength": 30.0, "summary": s, "per_seed": per}],
                 "unsteered": {"summary": dict(s, lexicon=0.0, fluency_ratio=1.0), "per_seed": []}}]}


def test_the_light_table_lists_inclusion_and_fluency_per_condition_and_seed(tmp_path):
    lines = light_markdown(light_result()).splitlines()
    assert lines[4] == "| music (L15:1) [music] | add 30 | 50% | 1.80 | 1.50 | 100% / 1.70; 0% / 1.90 |"
    assert lines[5] == "| music (L15:1) [music] | unsteered | 0% | 1.00 | 1.50 |  |"
    plot(light_result(), tmp_path / "light.png")
    assert (tmp_path / "light.png").stat().st_size > 0


def test_a_pick_run_s_table_ends_with_the_rule_s_choice():
    r = light_result()
    r["picked"] = picks(flat_runs(r), "margin")
    table = result_markdown(r)
    assert table.startswith("Light screen: pick2@1 split")
    assert "On pick2@1, a pick split written for round 2" in table and "| music | L15:1 add 30 (below target) | 50% | 1.80 |" in table
