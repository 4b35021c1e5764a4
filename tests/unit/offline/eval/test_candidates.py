"""steering/offline/eval/candidates.py: the settings it takes, the strengths it writes, and that the screen config it
writes is one `eval pick` accepts, with every candidate at every setting."""

import pytest
import yaml

from steering.offline.eval import candidates as cand
from steering.offline.eval.parse import parse_run_config
from tests.helpers import ROOT


def test_settings_are_modes_with_numbers_and_a_bad_one_is_named_with_its_fix():
    assert cand.parse_settings(["add:0.2,0.3", "clamp:0.25"]) == [("add", [0.2, 0.3]), ("clamp", [0.25])]
    with pytest.raises(ValueError, match=r"'shove:0.2'.*not a mode.*Fix: one of add"):
        cand.parse_settings(["shove:0.2"])
    with pytest.raises(ValueError, match=r"'add'.*give numbers after the colon.*Fix: add:0.16,0.24"):
        cand.parse_settings(["add"])
    with pytest.raises(ValueError, match="give numbers"):
        cand.parse_settings(["add:x,y"])


def test_fractions_become_strengths_of_the_layer_s_norm_and_degrees_stay_degrees():
    assert cand.strengths("add", [0.2, 0.3], 544.4) == [109, 163]
    assert cand.strengths("clamp", [0.25], 544.4) == [136]
    assert cand.strengths("angular", [80, 75], 544.4) == [80.0, 75.0]


def test_the_written_screen_is_a_pick_run_of_every_candidate_at_every_setting(tmp_path):
    found = {"dogs": [{"index": 11, "live_output": 0.31, "label": "dog # puppy", "matched": True},
                      {"index": 42, "live_output": 0.12, "label": None, "matched": False}],
             "fear": [{"index": 7, "live_output": 0.2, "label": "afraid", "matched": True}]}
    settings = [("add", [0.2, 0.3]), ("clamp", [0.25])]
    text = cand.render("screen", "../demo.yaml", "pick3", 16, 15, 180.0, settings, found, "the command")
    assert "# the command" in text and "live output score 0.310, word match" in text and "differential" in text
    data = yaml.safe_load(text)
    (tmp_path / "screen.yaml").write_text(text)
    data["engine"]["config"] = str(ROOT / "demo.yaml")
    cfg = parse_run_config(data, tmp_path, role="pick")
    got = [(f.layer, f.index, f.concept, f.settings) for f in cfg.features]
    adds, clamp = [("add", 36.0), ("add", 54.0)], [("clamp", 45.0)]
    assert got == [(15, 11, "dogs", adds), (15, 11, "dogs", clamp), (15, 42, "dogs", adds), (15, 42, "dogs", clamp),
                   (15, 7, "fear", adds), (15, 7, "fear", clamp)]
    assert (cfg.split, cfg.n_prompts, cfg.seeds, cfg.scorer.kind) == ("pick3@1", 16, (0,), "light")


class _Cards:
    """Four features: two name dogs in what they say, one only in its label; output scores as shipped."""

    def __init__(self):
        import torch

        self.output_scores = torch.tensor([0.05, 0.40, 0.10, 0.90])
        feats = [{"label": "dog / puppy", "top_words": [["dog", 1.0]], "says": []},
                 {"label": "of / the", "top_words": [["the", 1.0]], "says": [" dog", " dogs"]},
                 {"label": "bark", "top_words": [["bark", 1.0]], "says": [" dog"]},
                 {"label": "rain", "top_words": [["rain", 1.0]], "says": [" rain"]}]
        self.contexts = type("C", (), {"features": feats})()

    def __len__(self):
        return 4

    def label(self, i):
        return self.contexts.features[i]["label"]


def test_the_says_pool_ranked_by_output_score_needs_no_model():
    from steering.offline.eval.lexicons import concept

    got = cand.candidates(None, _Cards(), concept("dogs"), 26, 544.0, 2, pools=("says",), rank="output")
    assert [(r["index"], r["output_score"]) for r in got] == [(1, pytest.approx(0.40)), (2, pytest.approx(0.10))]
    text = cand.render("s", "../demo.yaml", "pick3", 16, 26, 544.0, [("add", [0.2])], {"dogs": got}, "cmd")
    assert "#1 \"of / the\", output score 0.400, word match" in text
