"""The steering evaluation's search and sweep on the real model and the shipped demo.yaml."""

import yaml

from steering.offline.eval.splits import split
from tests.helpers import ROOT


def test_find_ranks_and_screens_on_the_real_model():
    from steering.offline.evaluate import find

    rows = find(str(ROOT / "demo.yaml"), ["music"], n=1, screen=1, search=0)["music"]
    assert len(rows) == 1 and rows[0]["found_by"] == "differential"
    assert rows[0]["screen_inclusion"] * 8 == int(rows[0]["screen_inclusion"] * 8)  # a share of the 8 screen prompts
    assert rows[0]["screen_fluency_ratio"] > 0 and rows[0]["screen_example"]


def test_sweep_at_the_config_settings_runs_each_feature_once(tmp_path):
    from steering.config import load_config
    from steering.offline.evaluate import sweep

    result = sweep(str(ROOT / "demo.yaml"), tmp_path / "eval", None, max_new_tokens=3, prompts=split("neutral").prompts[:2], seed=1)
    config = load_config(ROOT / "demo.yaml")
    assert result["strengths"] == "config" and result["seed"] == 1
    assert [(e["key"], [(r["mode"], r["strength"]) for r in e["runs"]]) for e in result["features"]] == [
        (str(f.key), [(f.mode or config.mode, f.strength)]) for f in config.features]
    for name in ("config.yaml", "results.json", "table.md", "plot.png"):  # a run directory
        assert (tmp_path / "eval" / name).stat().st_size > 0
    assert yaml.safe_load((tmp_path / "eval" / "config.yaml").read_text())["seed"] == 1
