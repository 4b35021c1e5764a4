"""steering/offline/axbench_report.py and the CLI's merge: tables checked exactly, the plot written."""

import math

from steering.offline.axbench_cli import _merge, write
from steering.offline.axbench_report import markdown

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


def test_write_makes_json_markdown_and_a_plot_for_bars_and_sweeps(tmp_path):
    write(result([{"mode": "add", "strength": 30.0, "summary": S}]), tmp_path / "one")
    sweep = [{"mode": "add", "strength": s, "summary": dict(S, score=s / 40)} for s in (20.0, 30.0, 40.0)]
    write(result(sweep), tmp_path / "sweep")
    for name in ("one", "sweep"):
        for ext in (".json", ".md", ".png"):
            assert (tmp_path / name).with_suffix(ext).stat().st_size > 0
