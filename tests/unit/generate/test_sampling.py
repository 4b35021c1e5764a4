"""steering.generate.sampling against hand computations (float64 `math`, not torch)."""

import math

import pytest
import torch

from steering.generate.sampling import (
    repetition_penalty,
    sample_token,
    seeded_generator,
    top_p_filter,
)

NEG = float("-inf")


def _softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def _kept_by_hand(logits, top_p):
    """Indices of the smallest most-probable set whose probability reaches top_p (the first always kept)."""
    p = _softmax(logits)
    order = sorted(range(len(p)), key=lambda i: -p[i])
    kept, mass = [], 0.0
    for i in order:
        if kept and mass >= top_p:
            break
        kept.append(i)
        mass += p[i]
    return set(kept)


@pytest.mark.parametrize("top_p", [0.01, 0.5, 0.64, 0.65, 0.9, 0.97, 0.99])
def test_top_p_keeps_the_smallest_set_reaching_top_p(top_p):
    rows = [[0.0, 2.0, -1.0, 1.0], [3.0, 3.5, -2.0, 0.5]]  # unsorted, so the mask is mapped back through the sort
    out = top_p_filter(torch.tensor(rows), top_p)
    for row, got in zip(rows, out.tolist()):
        kept = _kept_by_hand(row, top_p)
        assert [i for i, v in enumerate(got) if v != NEG] == sorted(kept)
        assert all(got[i] == row[i] for i in kept)  # kept logits are untouched


def test_top_p_by_hand_figures_and_top_p_one_is_a_no_op():
    # p = softmax([2, 1, 0, -1]) = [0.644, 0.237, 0.087, 0.032]: 0.5 keeps one token, 0.9 three
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    assert top_p_filter(logits, 0.5).tolist() == [[2.0, NEG, NEG, NEG]]
    assert top_p_filter(logits, 0.9).tolist() == [[2.0, 1.0, 0.0, NEG]]
    assert top_p_filter(logits, 1.0) is logits


def test_temperature_zero_is_argmax_per_row():
    logits = torch.tensor([[0.1, 0.9, 0.3], [2.0, -1.0, 1.9]])
    assert sample_token(logits, 0.0, 0.9, None).tolist() == [1, 0]


def test_sampling_follows_the_tempered_distribution_and_never_a_filtered_token():
    logits = torch.tensor([1.0, 0.0, -0.5, -3.0])
    n, t = 20000, 2.0
    draws = sample_token(logits.expand(n, 4), t, 1.0, seeded_generator(0, "cpu"))
    freq = torch.bincount(draws, minlength=4).double() / n
    expected = _softmax([x / t for x in logits.tolist()])
    assert max(abs(f - e) for f, e in zip(freq.tolist(), expected)) < 0.015
    filtered = sample_token(logits.expand(n // 10, 4), t, 0.5, seeded_generator(0, "cpu"))  # top-p draws row by row
    kept = _kept_by_hand([x / t for x in logits.tolist()], 0.5)
    assert set(filtered.tolist()) == kept


def test_a_seed_reproduces_the_draws_and_no_seed_gives_fresh_ones():
    logits = torch.zeros(64, 50)
    a, b = (sample_token(logits, 1.0, 1.0, seeded_generator(7, "cpu")) for _ in range(2))
    assert torch.equal(a, b)
    assert not torch.equal(sample_token(logits, 1.0, 1.0, seeded_generator(8, "cpu")), a)
    g1, g2 = seeded_generator(None, "cpu"), seeded_generator(None, torch.device("cpu"))
    assert g1.initial_seed() != g2.initial_seed()


def test_repetition_penalty_by_hand():
    scores = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    seen = torch.tensor([[1, 3, 3]])
    # transformers' rule on the seen ids: a positive score is divided by the penalty, a negative one multiplied
    assert repetition_penalty(scores.clone(), seen, 2.0).tolist() == [[2.0, -2.0, 0.5, 1.5]]
    assert repetition_penalty(scores, seen, 1.0) is scores
    assert repetition_penalty(scores, torch.zeros(1, 0, dtype=torch.long), 2.0) is scores


@pytest.mark.parametrize("seed, top_p", [(s, p) for s in range(4) for p in (0.3, 0.9, 0.99)])
def test_top_p_candidates_are_top_p_filters_set_with_its_probabilities(seed, top_p):
    """Same set as the full sort (up to a boundary token whose preceding mass is top_p within float
    rounding), most probable first, with the softmax probabilities of the whole vocabulary."""
    from steering.generate.sampling import top_p_candidates

    x = torch.randn(5000, generator=torch.Generator().manual_seed(seed)) * (seed + 1)
    ids, probs = top_p_candidates(x, top_p)
    kept = set(torch.isfinite(top_p_filter(x.unsqueeze(0), top_p)[0]).nonzero().squeeze(-1).tolist())
    full = x.double().softmax(-1)
    for token in set(ids.tolist()) ^ kept:
        before = float(full[full > full[token]].sum())
        assert abs(before - top_p) < 1e-5
    torch.testing.assert_close(probs.double(), full[ids], rtol=1e-5, atol=1e-9)
    assert torch.all(probs[:-1] >= probs[1:])


def test_top_p_candidates_fall_back_to_the_whole_vocabulary(monkeypatch):
    from steering.generate import sampling

    monkeypatch.setattr(sampling, "TOP_P_CANDIDATES", 4)
    x = torch.zeros(50)  # uniform: 0.9 of the mass needs 45 tokens, more than the 4 candidates
    ids, probs = sampling.top_p_candidates(x, 0.9)
    assert len(ids) == 45 and torch.allclose(probs, torch.full((45,), 0.02))
