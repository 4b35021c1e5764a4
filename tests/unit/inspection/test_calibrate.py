"""steering.inspection.calibrate without a model: the words a feature is looked for by, whole-word matching,
the margin, and the on-disk cache with shipped calibrations."""

import json

import pytest

from steering.inspection.calibrate import (
    PROMPTS,
    SWEEP,
    Calibration,
    CalibrationCache,
    feature_words,
    margin,
    says_any,
)


def test_feature_words_take_the_label_and_what_steering_raises_without_stopwords():
    assert feature_words("dogs (pets)", [" puppy", " Dog", "the", "of", "ok"]) == ("dog", "dogs", "pets", "puppy")
    assert feature_words(None, []) == ()


@pytest.mark.parametrize("text,words,expected", [
    ("My dog is cute", ["dogs"], True), ("Dogs bark", ["dog"], True), ("I love dancing", ["dance"], True),
    ("It was raining", ["rain"], True), ("A dogma", ["dogs"], False), ("hotdogs", ["dog"], False),
    ("anything", [], False),
])
def test_says_any_matches_whole_words_and_their_endings(text, words, expected):
    assert says_any(text, words) is expected


def test_margin_is_positive_inside_the_target_only():
    assert margin(0.8, 1.5) == pytest.approx(1.0)
    assert margin(0.9, 1.95) == pytest.approx(0.2)
    assert margin(0.6, 1.0) < 0 < margin(0.75, 1.9)
    assert margin(1.0, 2.1) < 0


def _cal(index=3, strength=30.0):
    return Calibration(15, index, "add", strength, 0.8, 1.7, True, ("dog",), ({"mode": "add", "strength": strength},))


def test_cache_round_trip_and_shipped_calibrations_are_read_but_never_written(tmp_path):
    shipped_folder = tmp_path / "sae"
    shipped_folder.mkdir()
    (shipped_folder / "calibration.json").write_text(json.dumps({"L15:7": _cal(7, 44.0).to_dict()}))
    cache = CalibrationCache.for_sae(tmp_path / "cache", {"source": "x", "path": "layer_{layer}"}, [shipped_folder])
    assert cache.get(15, 3) is None
    assert cache.get(15, 7) == _cal(7, 44.0)
    cache.put(_cal(3))
    assert cache.get(15, 3) == _cal(3)
    cache.put(_cal(7, 20.0))  # a computed one overrides the shipped one, which stays as it is on disk
    assert cache.get(15, 7).strength == 20.0
    assert json.loads((shipped_folder / "calibration.json").read_text())["L15:7"]["strength"] == 44.0
    other = CalibrationCache.for_sae(tmp_path / "cache", {"source": "y", "path": "layer_{layer}"})
    assert other.get(15, 3) is None  # another SAE: another folder


def test_summary_says_whether_the_target_is_met():
    assert _cal().summary().startswith("add 30: 80% of 6 answers say it at fluency ratio 1.70 (meets the target")


def test_sweep_and_prompts_are_small_and_near_the_shipped_defaults():
    assert len(PROMPTS) * (len(SWEEP) + 1) <= 64
    assert all(0.1 <= f <= 0.35 for _, f in SWEEP)
