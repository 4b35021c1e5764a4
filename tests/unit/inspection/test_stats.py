"""Inspector statistics against hand computations on small code matrices."""

import pytest
import torch

from steering.inspection.stats import (
    FeatureActivation,
    differential_features,
    fire_rate,
    format_ranking,
    scan_prompts_for_feature,
    top_features,
)

POS = torch.tensor([[0.0, 2.0, 0.0, 1.0], [0.0, 4.0, 3.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
NEG = torch.tensor([[5.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 1.0]])


def test_differential_ranking_by_hand():
    rows = differential_features(POS, NEG, n=4)
    # means+: [1/3, 2, 1, 1/3]; means-: [3, 0.5, 0, 1]; scores: [-8/3, 1.5, 1, -2/3]
    assert [r.index for r in rows] == [1, 2, 3, 0]
    r = rows[0]
    assert r.score == pytest.approx(1.5) and r.mean_pos == pytest.approx(2.0) and r.mean_neg == pytest.approx(0.5)
    assert r.fire_pos == pytest.approx(2 / 3) and r.fire_neg == pytest.approx(0.5)
    assert rows[-1].score == pytest.approx(1 / 3 - 3)
    assert len(differential_features(POS, NEG, n=2)) == 2


def test_differential_refuses_mismatched_widths_and_empty_sets():
    with pytest.raises(ValueError, match="different SAE widths \\(4 vs 3 features\\)"):
        differential_features(POS, NEG[:, :3])
    with pytest.raises(ValueError, match="at least one prompt"):
        differential_features(POS[:0], NEG)


def test_scan_and_fire_rate_by_hand():
    assert scan_prompts_for_feature(POS, 1).tolist() == [2.0, 4.0, 0.0]
    assert fire_rate(POS, 2) == pytest.approx(1 / 3)
    assert fire_rate(POS).tolist() == pytest.approx([1 / 3, 2 / 3, 1 / 3, 1 / 3])
    with pytest.raises(IndexError, match="outside this SAE \\(0..3\\)"):
        scan_prompts_for_feature(POS, 4)


def test_top_features_are_nonzero_and_descending():
    code = torch.tensor([0.0, 3.0, -0.0, 0.5, 7.0, 0.0])
    assert top_features(code, n=10) == [FeatureActivation(4, 7.0), FeatureActivation(1, 3.0), FeatureActivation(3, 0.5)]
    assert top_features(code, n=1) == [FeatureActivation(4, 7.0)]
    assert top_features(torch.zeros(5)) == []


def test_format_ranking_shows_labels_and_rates():
    text = format_ranking(differential_features(POS, NEG, n=2), labels={1: "bridges"})
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["rank", "feature", "score"]
    assert lines[1].split() == ["1", "1", "1.500", "2.000", "0.500", "67%", "50%", "bridges"]
    assert "(no features)" == format_ranking([])
    assert format_ranking([FeatureActivation(3, 1.25)]).splitlines()[1].split() == ["1", "3", "1.250"]
