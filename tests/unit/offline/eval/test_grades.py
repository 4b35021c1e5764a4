"""steering/offline/eval/grades.py: each grade, the score's zero rule and the probe, on hand-made cases."""

import pytest
import torch

from steering.offline.eval.grades import (
    DiffMeanProbe,
    Thresholds,
    best_threshold,
    grade_high,
    grade_low,
    harmonic,
    percentile,
    rep_ngram,
    summarise,
)


def test_harmonic_mean_of_the_three_grades():
    assert harmonic([2, 2, 2]) == 2.0
    assert harmonic([1, 2, 2]) == pytest.approx(3 / (1 + 0.5 + 0.5))
    assert harmonic([1, 1, 2]) == pytest.approx(1.2)
    assert harmonic([1, 1, 1]) == 1.0


@pytest.mark.parametrize("grades", [[0, 2, 2], [2, 0, 2], [2, 2, 0], [0, 0, 0]])
def test_any_zero_grade_makes_the_score_zero(grades):
    assert harmonic(grades) == 0.0


def test_three_gram_repetition():
    assert rep_ngram("the cat sat on the mat") == 0.0
    assert rep_ngram("a b c a b c") == pytest.approx(1 - 3 / 4)  # abc bca cab abc
    assert rep_ngram("Go team, GO TEAM, go team!") == pytest.approx(1 - 2 / 4)  # case and punctuation ignored
    assert rep_ngram("la " * 20) == pytest.approx(1 - 1 / 18)
    assert rep_ngram("two words") == 0.0 and rep_ngram("") == 0.0


def test_threshold_grading_is_inclusive_at_each_threshold():
    assert [grade_high(v, 0.1, 0.5) for v in (0.6, 0.5, 0.3, 0.1, 0.0)] == [2, 2, 1, 1, 0]
    assert [grade_low(v, 1.5, 3.0) for v in (1.0, 1.5, 2.0, 3.0, 3.1)] == [2, 2, 1, 1, 0]


def test_percentile_interpolates():
    assert percentile([1, 2, 3, 4, 5], 50) == 3.0
    assert percentile([0, 10], 25) == 2.5


def test_thresholds_are_fitted_on_unsteered_answers():
    rel = [0.1 * i for i in range(1, 9)]  # 0.1 .. 0.8: P25 = 0.275
    mismatched = [-0.2, -0.1, 0.0, 0.05, 0.1]  # P90 = 0.08
    ppl = [4.0, 5.0, 6.0, 8.0, 10.0]  # median 6; ratios 4/6 .. 10/6, P95 = (8 + 0.8 * 2) / 6
    th = Thresholds.fit(rel, mismatched, ppl)
    assert th.t2 == pytest.approx(0.275) and th.t1 == pytest.approx(0.08)
    assert th.ppl_ref == 6.0 and th.q2 == pytest.approx(9.6 / 6) and th.q1 == pytest.approx(2 * 9.6 / 6)
    assert [th.instruction(r) for r in (0.3, 0.1, 0.0)] == [2, 1, 0]
    assert th.fluency(6.0, 0.0) == 2
    assert th.fluency(6.0 * 2.0, 0.0) == 1  # ratio 2 <= q1
    assert th.fluency(6.0 * 3.3, 0.0) == 0
    assert th.fluency(6.0, 0.2) == 1 and th.fluency(6.0, 0.5) == 0  # repetition caps fluency


def test_the_instruction_floor_never_exceeds_the_bar_for_2():
    th = Thresholds.fit([0.1, 0.2, 0.3], [0.5, 0.6, 0.7], [5.0, 5.0, 5.0])
    assert th.t1 == th.t2


def test_best_threshold_is_the_middle_of_the_gap_when_separable():
    t, acc = best_threshold([5.0, 6.0, 7.0], [1.0, 2.0, 3.0])
    assert acc == 1.0 and t == pytest.approx(4.0)  # anywhere in (3, 5); the middle


def test_best_threshold_maximises_balanced_accuracy_when_overlapping():
    t, acc = best_threshold([2.0, 5.0, 6.0, 7.0], [1.0, 3.0, 4.0, 8.0])
    assert acc == pytest.approx(0.75)
    assert 4.0 < t < 5.0


def test_diff_of_means_probe_finds_the_planted_direction():
    g = torch.Generator().manual_seed(0)
    d = 16
    shift = torch.zeros(d)
    shift[3] = 4.0

    def sample(n, pos):
        return torch.randn(n, d, generator=g) + (shift if pos else 0) + 10.0  # a common offset

    probe = DiffMeanProbe.fit(sample(40, True), sample(40, False), sample(20, True), sample(20, False))
    assert probe.direction.norm() == pytest.approx(1.0)
    assert abs(float(probe.direction[3])) > 0.9 and float(probe.direction[3]) > 0
    assert probe.heldout["balanced_accuracy"] >= 0.95 and probe.heldout["n_pos"] == 20
    test_pos, test_neg = sample(50, True), sample(50, False)
    assert probe.fires(test_pos).float().mean() > 0.9 and probe.fires(test_neg).float().mean() < 0.1


def test_summarise_means_each_grade():
    rows = [dict(concept=2, instruction=2, fluency=1, score=1.5, lexicon=1, probe=1),
            dict(concept=0, instruction=2, fluency=2, score=0.0, lexicon=0, probe=0)]
    s = summarise(rows)
    assert s == {"concept": 1.0, "instruction": 2.0, "fluency": 1.5, "score": 0.75, "lexicon": 0.5, "probe": 0.5, "n": 2}


def test_summarise_takes_only_what_every_row_has():
    light = [dict(lexicon=1, nll=3.0, tokens=2), dict(lexicon=0, nll=1.0, tokens=1)]
    assert summarise(light) == {"lexicon": 0.5, "n": 2}
    assert summarise([]) == {"n": 0}
