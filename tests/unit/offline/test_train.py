"""TopK SAE training end to end on a tiny budget of real SmolLM2 activations."""

import torch

from steering.offline.train import TopKTrainer, TrainConfig, train

LAYER = 15
TEXTS = [
    "The ocean covers most of the planet, and its waves shape every coast they reach.",
    "To install the package, run pip install and restart the terminal before importing it.",
    "She baked bread every morning, and the smell of warm loaves filled the small kitchen.",
    "The committee approved the budget after a long debate about roads and schools.",
    "Dogs are loyal companions; a puppy needs patience, walks and a little training each day.",
    "Stars form in clouds of gas and dust, and some end their lives as black holes.",
]


def test_sparse_path_matches_dense_reference():
    torch.manual_seed(0)
    m = TopKTrainer(16, 64, k=4, seed=1)
    with torch.no_grad():
        m.b_enc.normal_()
        m.b_dec.normal_()
    x = torch.randn(10, 16)
    x_hat, idx, acts = m(x)
    pre = (x - m.b_dec) @ m.enc.T + m.b_enc
    v, i = pre.topk(4, dim=-1)
    dense = torch.zeros_like(pre).scatter(-1, i, v.relu())
    torch.testing.assert_close(x_hat, dense @ m.W_dec + m.b_dec, atol=1e-5, rtol=1e-5)
    # the saved SAE (input scale folded in) computes the same on raw inputs
    sae = m.to_sae(scale=3.0, meta={})
    torch.testing.assert_close(sae.decode(sae.encode(3.0 * x)), 3.0 * x_hat.detach(), atol=1e-4, rtol=1e-4)


def test_selected_preacts_gradients_match_autograd_through_a_gather():
    """The hand-written backward equals autograd through an explicit gather of the selected encoder rows."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    m = TopKTrainer(12, 48, k=5, seed=2).double()
    with torch.no_grad():
        m.b_enc.normal_()
        m.b_dec.normal_()
    x = torch.randn(9, 12, dtype=torch.float64)
    target = torch.randn(9, 12, dtype=torch.float64)
    mask = torch.rand(48) > 0.3

    def reference(m):
        xc = x - m.b_dec
        with torch.no_grad():
            pre = (xc @ m.enc.T + m.b_enc).masked_fill(~mask, float("-inf"))
            idx = pre.topk(5, dim=-1).indices
        values = torch.relu(torch.einsum("bkd,bd->bk", F.embedding(idx, m.enc), xc) + m.b_enc[idx])
        return idx, values

    grads = []
    for select in (lambda: m.select(x, 5, mask=mask.unsqueeze(0)), lambda: reference(m)):
        m.zero_grad()
        idx, values = select()
        ((m.decode_sparse(idx, values) + m.b_dec - target).pow(2).sum() + values.pow(3).sum()).backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-10, atol=1e-10)
    assert grads[0]["enc"].abs().sum() > 0 and grads[0]["b_dec"].abs().sum() > 0


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
