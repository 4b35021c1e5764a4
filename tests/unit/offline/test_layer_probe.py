"""steering.offline.layer_probe: the margin, the per-layer summary and its table (no model)."""

import pytest

from steering.offline import layer_probe
from steering.offline.layer_probe import margin, markdown, summary_rows


def _run(index, inclusion, ratio, mode="add", strength=40.0):
    return {"index": index, "mode": mode, "strength": strength, "inclusion": inclusion, "fluency_ratio": ratio}


def test_margin_is_the_nearer_edge_of_the_target_in_its_units():
    assert margin(_run(1, 0.8, 1.5)) == pytest.approx(1.0)  # 10 points of inclusion above 70%; 0.5 of ratio below 2 is 2 units
    assert margin(_run(1, 0.9, 1.9)) == pytest.approx(0.4)
    assert margin(_run(1, 0.6, 1.0)) < 0 and margin(_run(1, 1.0, 2.5)) < 0
    assert margin(_run(1, 0.7, 2.0)) == pytest.approx(0.0, abs=1e-12)  # on the boundary


def _results():
    return {"tokens": 1000, "epochs": 2.0, "n_prompts": 8, "max_new_tokens": 48, "command": "python -m x",
            "layers": {
                "22": {"quality": {"fve_centred": 0.9}, "output_scores": {"q50": 0.01, "q90": 0.1, "q99": 0.5,
                                                                         "share_above_0.1": 0.1},
                       "screen": {"concepts": {
                           "music": {"runs": [_run(5, 0.9, 1.8), _run(6, 0.95, 2.4)]},
                           "dogs": {"runs": [_run(7, 0.5, 1.5)]}}}},
                "18": {"quality": {"fve_centred": 0.95}, "screen": {"concepts": {}}},
            }}


def test_summary_counts_concepts_and_runs_that_meet_the_target_per_layer():
    rows = summary_rows(_results())
    assert [r["layer"] for r in rows] == [18, 22]
    r22 = rows[1]
    assert r22["best"]["music"]["index"] == 5 and r22["best"]["dogs"]["index"] == 7
    assert (r22["met"], r22["runs_met"], r22["steering_runs"]) == (1, 1, 3)
    assert (rows[0]["met"], rows[0]["steering_runs"]) == (0, 0)


def test_markdown_has_a_row_per_layer_and_marks_met_runs():
    text = markdown(_results())
    assert "| 22 | 0.900 | 0.01 | 0.1 | 0.5 | 10.0% | 1/2 | 1/3 |" in text
    assert "| 18 | 0.950 | - | - | - |" in text
    assert "#5 add 40: 90% / 1.80 ✓" in text and "#7 add 40: 50% / 1.50 |" in text


def test_settings_stay_near_the_layer_15_defaults():
    assert all(0.1 <= f <= 0.35 for _, f in layer_probe.SETTINGS)
    assert len(layer_probe.CONCEPTS) == 8


def test_the_recorded_command_reruns_the_whole_probe():
    argv = ["--corpus", "c", "--steps", "screen", "--layers", "18,22", "--steps=train"]
    assert layer_probe.rerun_command(argv) == "python -m steering.offline.layer_probe --corpus c --layers 18,22"


def test_a_run_that_adds_layers_records_a_command_for_all_of_them():
    """A screen of 22 and 26 added to results that hold 18 as well: the command reruns all three."""
    held = [18, 22, 26]
    base = "python -m steering.offline.layer_probe --corpus c"
    assert layer_probe.rerun_command(["--corpus", "c", "--layers", "22,26", "--steps", "screen"], held) == \
        f"{base} --layers 18,22,26"
    assert layer_probe.rerun_command(["--corpus", "c", "--layers=22,26"], held) == f"{base} --layers=18,22,26"
    assert layer_probe.rerun_command(["--corpus", "c"], held) == f"{base} --layers 18,22,26"


def test_written_paths_name_the_home_folder_as_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    argv = ["--corpus", f"{tmp_path}/.cache/steering/corpus-wide", "--out", "benchmarks/runs/layer_probe"]
    assert layer_probe.rerun_command(argv) == ("python -m steering.offline.layer_probe --corpus "
                                               "~/.cache/steering/corpus-wide --out benchmarks/runs/layer_probe")
    assert layer_probe.portable("/elsewhere/x") == "/elsewhere/x"
