"""Top-activating contexts and automatic labels: the streaming top-k, the labeller, the shipped file."""

import pytest
import torch

from steering.offline.contexts import load_caches, top_activations
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


def test_caches_are_read_in_order_with_window_indices_renumbered(tmp_path):
    from safetensors.torch import save_file

    for name, n_win, rows in (("a", 2, 5), ("b", 3, 4)):
        folder = tmp_path / name
        folder.mkdir()
        ids = list(range(n_win * 4))
        save_file({"ids": torch.tensor(ids, dtype=torch.int32), "offsets": torch.arange(0, n_win * 4 + 1, 4)},
                  str(folder / "windows.safetensors"))
        save_file({"acts": torch.randn(rows, 3).half(), "window": torch.arange(rows, dtype=torch.int32) % n_win,
                   "pos": torch.ones(rows, dtype=torch.int32)}, str(folder / "shard_00000.safetensors"))
    data, wins = load_caches([tmp_path / "a", tmp_path / "b"], tokens=7)
    assert len(data["acts"]) == 7 and len(wins) == 5
    assert data["window"].tolist() == [0, 1, 0, 1, 0, 2, 3]  # the second cache's windows follow the first's
    data, wins = load_caches([tmp_path / "a", tmp_path / "b"], tokens=3)
    assert len(data["acts"]) == 3 and len(wins) == 2
