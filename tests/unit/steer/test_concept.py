"""steering.steer.concept against independent numpy computations: difference of means, top cosines and the
orthogonal-matching-pursuit least-squares decomposition."""

import numpy as np
import pytest
import torch

from steering.steer.concept import diff_of_means, least_squares, top_cosines


def test_diff_of_means_is_the_mean_of_each_set_subtracted():
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(7, 5, generator=g), torch.randn(3, 5, generator=g)
    expected = pos.double().numpy().mean(0) - neg.double().numpy().mean(0)
    np.testing.assert_allclose(diff_of_means(pos, neg).numpy(), expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(N, d\) and \(M, d\).*\(7, 5\) and \(3, 4\)"):
        diff_of_means(pos, neg[:, :4])
    with pytest.raises(ValueError, match="at least one"):
        diff_of_means(pos[:0], neg)


def test_top_cosines_rank_rows_by_cosine_whatever_their_norm():
    d = torch.tensor([[1.0, 0.0], [10.0, 10.0], [0.0, -3.0], [0.5, 0.1]])
    u = torch.tensor([1.0, 0.2])
    rows = d.double().numpy()
    cos = rows @ u.double().numpy() / (np.linalg.norm(rows, axis=1) * np.linalg.norm(u.double().numpy()))
    got = top_cosines(u, d, n=3)
    assert [i for i, _ in got] == list(np.argsort(-cos)[:3])
    np.testing.assert_allclose([c for _, c in got], np.sort(cos)[::-1][:3], rtol=1e-6)


def test_least_squares_recovers_an_exact_sparse_combination():
    g = torch.Generator().manual_seed(1)
    d = torch.randn(64, 16, generator=g)
    units = d / d.norm(dim=1, keepdim=True)
    u = 2.0 * units[5] - 1.5 * units[40] + 0.7 * units[9]
    got = least_squares(u, d, k=3)
    assert sorted(i for i, _ in got.terms) == [5, 9, 40]
    assert dict(got.terms) == pytest.approx({5: 2.0, 40: -1.5, 9: 0.7}, abs=1e-4)
    assert got.explained == pytest.approx(1.0, abs=1e-6)
    assert [i for i, _ in got.terms] == [5, 40, 9]  # largest |coefficient| first


def test_least_squares_coefficients_are_the_exact_fit_on_the_chosen_features():
    g = torch.Generator().manual_seed(2)
    d = torch.randn(50, 12, generator=g)
    u = torch.randn(12, generator=g)
    got = least_squares(u, d, k=4)
    chosen = [i for i, _ in got.terms]
    units = (d / d.norm(dim=1, keepdim=True)).double().numpy()[chosen]
    coef, *_ = np.linalg.lstsq(units.T, u.double().numpy(), rcond=None)
    np.testing.assert_allclose([c for _, c in got.terms], coef, rtol=1e-4, atol=1e-5)
    resid = u.double().numpy() - units.T @ coef
    assert got.explained == pytest.approx(1 - resid @ resid / (u.double().numpy() @ u.double().numpy()), abs=1e-5)
    assert 0.0 < got.explained < 1.0
