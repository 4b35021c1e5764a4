"""The AxBench-style scorer end to end on the real model and the shipped demo.yaml: 3-token answers to two
report prompts, thresholds fitted on two pick prompts, probes on 1-token texts of a reduced probe set (two
subjects per concept, two neutral subjects, four neutral instructions), nothing cached."""

import json
from dataclasses import replace

import pytest
import torch

from steering.config import load_config
from tests.helpers import ROOT


@pytest.fixture
def small_probe_set(monkeypatch):
    from steering.offline import axbench
    from steering.offline.axbench_concepts import (
        NEUTRAL_INSTRUCTIONS,
        PROBE_TEMPLATES,
        TIGHT,
    )

    subjects, instructions = ("a pencil", "a ladder"), NEUTRAL_INSTRUCTIONS[:4]
    monkeypatch.setattr(axbench, "NEUTRAL_SUBJECTS", subjects)
    monkeypatch.setattr(axbench, "PROBE_HELDOUT_INSTRUCTIONS", 2)
    monkeypatch.setattr(axbench, "neutral_probe_prompts",
                        lambda: [t.format(s) for t in PROBE_TEMPLATES for s in subjects] + list(instructions))
    monkeypatch.setitem(axbench.TIGHT, "music", replace(TIGHT["music"], subjects=TIGHT["music"].subjects[:2]))
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # on a busy 2-core machine, ~10x faster than two threads
    yield
    torch.set_num_threads(before)


def test_score_writes_grades_for_a_feature_its_baseline_and_unsteered_answers(tmp_path, small_probe_set):
    from steering.offline.axbench_cli import score

    r = score(str(ROOT / "demo.yaml"), tmp_path / "ax", features=["L15:8241"], seeds=[0], max_new_tokens=3,
              n_prompts=2, concepts={"L15:8241": "music"}, cache=False, fit_prompts=2, probe_tokens=1)
    (e,) = r["features"]
    music = next(f for f in load_config(ROOT / "demo.yaml").features if f.index == 8241)
    assert (e["key"], e["concept"], [(x["mode"], x["strength"]) for x in e["runs"]]) == (
        "L15:8241", "music", [(music.mode, music.strength)])  # the config's own setting
    for cond in (e["runs"][0], e["baseline"], e["unsteered"]):
        assert cond["summary"]["n"] == 2 and 0.0 <= cond["summary"]["score"] <= 2.0
        for row in cond["rows"]:
            assert row["concept"] == row["lexicon"] + row["probe"]
            assert {row["instruction"], row["fluency"]} <= {0, 1, 2}
    assert r["thresholds"]["t1"] <= r["thresholds"]["t2"]
    assert r["probes"]["music"]["heldout"]["n_pos"] == 4  # 2 held-out templates x 2 subjects
    assert r["probes"]["music"]["heldout"]["n_neg"] == 2 * 2 + 2  # templates x subjects, instructions (no i % 3 == 2)
    assert json.loads((tmp_path / "ax.json").read_text())["split"] == "report"
    assert (tmp_path / "ax.md").exists() and (tmp_path / "ax.png").exists()
