"""Top-activating contexts and automatic labels: the streaming top-k, the labeller, the shipped file."""

import pytest
import torch

from steering.offline.contexts import auto_label, top_activations
from tests.helpers import ROOT, random_sae

SHIPPED = ROOT / "saes" / "smollm2-135m-instruct" / "layer_15"


@pytest.mark.parametrize("rule", ["topk", "jumprelu", "relu"])
def test_streaming_top_activations_match_brute_force(rule):
    sae = random_sae(16, 40, rule, seed=3)
    acts = torch.randn(1000, 16) * 2
    values, rows, counts = top_activations(sae, acts, top=5, batch_size=128, progress=False)
    codes = sae.encode(acts)  # (N, F)
    assert torch.equal(counts, (codes > 0).sum(0))
    for f in range(40):
        col = codes[:, f]
        n = min(5, int((col > 0).sum()))
        expect = col.topk(n).values
        torch.testing.assert_close(values[f, :n], expect)
        assert torch.equal(col[rows[f, :n]], values[f, :n])
        assert (rows[f, n:] == -1).all()


def test_auto_label_prefers_words_then_promoted_tokens():
    assert auto_label([(" Ocean", 9.0), (" sea", 5.0), (" ocean", 4.0), (",", 3.0), (" waves", 2.0)], []) == "ocean / sea / waves"
    assert auto_label([(",", 3.0), (".", 1.0)], [" dog", " puppy", "!"]) == "→ dog / puppy"
    assert auto_label([], []) == "(dead)"
