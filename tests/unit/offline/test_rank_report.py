"""steering/offline/rank_report.py: the counting and the tables (the steering runs themselves are measured)."""

from steering.offline.rank_report import LISTS, cell, count, markdown, meets


def _run(mode, inclusion, ratio, strength=30.0):
    return {"mode": mode, "strength": strength, "inclusion": inclusion, "fluency_ratio": ratio}


RUNS = {
    1: [_run("add", 0.75, 1.9), _run("clamp", 0.5, 1.2)],      # add meets
    2: [_run("add", 1.0, 2.1), _run("clamp", 0.7, 2.0)],       # clamp meets exactly at both bounds
    3: [_run("add", 0.625, 1.1), _run("clamp", 0.9, 2.01)],    # neither
    4: [_run("add", 0.8, 1.5), _run("clamp", 0.8, 1.5)],       # both
}


def test_meets_uses_the_evaluations_bounds_inclusively():
    assert meets(_run("add", 0.7, 2.0))
    assert not meets(_run("add", 0.69, 1.0))
    assert not meets(_run("add", 1.0, 2.0001))


def test_count_a_feature_once_when_any_setting_meets_and_per_mode():
    assert count([1, 2, 3, 4], RUNS) == {"n": 4, "steers": 3, "add": 2, "clamp": 2}
    assert count([3], RUNS) == {"n": 1, "steers": 0, "add": 0, "clamp": 0}
    assert count([], RUNS) == {"n": 0, "steers": 0}


def test_cell():
    assert cell({"n": 10, "steers": 3, "add": 2, "clamp": 3}) == "**3**/10 (add 2, clamp 3)"
    assert cell({"n": 0, "steers": 0}) == "**0**/0"


def _concept(rankings, unsteered=0.125):
    feats = {str(i): {"label": f"f{i} | x", "differential": 0.5, "live_output": 0.01, "shipped_output": None,
                      "runs": RUNS[i]} for i in {i for r in rankings.values() for i in r}}
    order = list(dict.fromkeys(i for k in LISTS for i in rankings[k]))
    return {"unsteered_inclusion": unsteered, "rankings": rankings, "order": order, "features": feats,
            "counts": {k: count(rankings[k], RUNS) for k in LISTS}}


def test_markdown_summary_rows_totals_and_feature_tables():
    report = {"settings": [["add", 30.1], ["clamp", 40.7]], "concepts": {
        "music": _concept({"differential": [1, 3], "live_output": [2, 1], "shipped_output": [3, 4]}),
        "food": _concept({"differential": [4], "live_output": [4], "shipped_output": [3]}, unsteered=0.0)}}
    lines = markdown(report).splitlines()
    assert lines[0].startswith("| concept | unsteered inclusion | top 10 by input differential | top 10 by live output")
    assert lines[1] == "|---|---|---|---|---|---|"
    assert lines[2] == ("| music | 12% | **1**/2 (add 1, clamp 0) | **2**/2 (add 1, clamp 1) | "
                        "**1**/2 (add 1, clamp 1) | 1 / 1 |")
    assert lines[3] == "| food | 0% | **1**/1 (add 1, clamp 1) | **1**/1 (add 1, clamp 1) | **0**/1 (add 0, clamp 0) | 1 / 0 |"
    assert lines[4] == "| **all** | | **2**/3 (add 2, clamp 1) | **3**/3 (add 2, clamp 2) | **1**/3 (add 1, clamp 1) | |"
    music = lines.index("### music")
    assert lines[music + 2] == "| feature | label | lists (rank) | diff | live | shipped | add 30.1 | clamp 40.7 |"
    # feature 1: first by differential, second by live output; its label's "|" cannot break the table
    assert lines[music + 4] == "| 1 | f1 / x | differential 1, live 2 | 0.5 | 0.01 | - | 75% / 1.90 ✓ | 50% / 1.20 |"
    assert lines[music + 4 + 3] == ("| 4 | f4 / x | shipped 2 | 0.5 | 0.01 | - | 80% / 1.50 ✓ | 80% / 1.50 ✓ |")
