"""steering.offline.feature_stats: density and activation histogram against a brute-force count on a tiny random
SAE (attention sinks left out)."""

import pytest
import torch

from steering.offline.feature_stats import EDGES, density_histogram
from tests.helpers import random_sae


@pytest.mark.parametrize("rule", ["topk", "jumprelu"])
def test_density_and_histogram_match_a_brute_force_count(rule):
    sae = random_sae(16, 40, rule, seed=4)
    acts = torch.randn(1000, 16) * 3
    acts[::97] *= 100  # a few sink-like positions
    edges = torch.tensor([0.0, 0.5, 1.0, 2.0, 4.0, 100.0])
    counts, hist, n = density_histogram(sae, acts, edges, batch_size=128, sink_threshold=200.0)
    kept = acts[acts.norm(dim=-1) <= 200.0]
    assert n == len(kept) < 1000
    codes = sae.encode(kept)
    for f in range(40):
        col = codes[:, f]
        assert int(counts[f]) == int((col > 0).sum())
        on = col[col > 0].tolist()
        expected = [0] * 5
        for a in on:  # bin j: edges[j] <= a < edges[j + 1]; below edge 1 -> bin 0, above edge 4 -> bin 4
            j = sum(a >= e for e in edges[1:-1].tolist())
            expected[j] += 1
        assert hist[f].tolist() == expected
    assert int(hist.sum()) == int(counts.sum())


def test_the_shipped_edges_are_log_spaced():
    assert len(EDGES) == 17 and EDGES[0] == pytest.approx(0.1) and EDGES[-1] == pytest.approx(100.0)
    ratios = EDGES[1:] / EDGES[:-1]
    torch.testing.assert_close(ratios, torch.full_like(ratios, float(ratios[0])))
