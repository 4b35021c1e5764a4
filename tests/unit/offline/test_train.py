"""TopK SAE training end to end on a tiny budget of real SmolLM2 activations."""

import torch

from steering.offline.train import TrainConfig, train


def test_warm_start_reads_the_saved_sae_back_exactly():
    """`init`: with a zero learning rate the result is the initial SAE (its input scale unfolded and refolded)."""
    import pytest

    torch.manual_seed(0)
    acts = (torch.randn(600, 16) @ torch.randn(16, 16)) * 7 + 3
    cfg = TrainConfig(d_sae=32, k=4, batch_size=100, epochs=1, warmup_steps=2, dead_tokens=200)
    first, _ = train(acts, cfg, progress=False)
    again, hist = train(acts, TrainConfig(**{**cfg.__dict__, "lr": 0.0}), progress=False, init=first)
    assert hist["steps"] == 6
    for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
        torch.testing.assert_close(getattr(again, name), getattr(first, name), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="pass the same --k and --d-sae"):
        train(acts, TrainConfig(**{**cfg.__dict__, "k": 8}), progress=False, init=first)


def test_training_resumes_from_its_checkpoint(tmp_path):
    torch.manual_seed(0)
    acts = torch.randn(3000, 32) @ torch.randn(32, 32)
    cfg = TrainConfig(d_sae=64, k=4, batch_size=100, epochs=2, warmup_steps=2, dead_tokens=500, checkpoint_every=7)
    full, hist = train(acts, cfg, progress=False)
    _, part = train(acts, cfg, out=tmp_path, progress=False, stop_after=25)  # interrupted
    assert part["steps"] == 25 and (tmp_path / "checkpoint.pt").exists()
    resumed, hist_b = train(acts, cfg, out=tmp_path, progress=False)
    assert hist_b["steps"] == hist["steps"] == 60
    torch.testing.assert_close(torch.tensor(hist_b["fve"]), torch.tensor(hist["fve"]))
    torch.testing.assert_close(resumed.W_dec, full.W_dec)
