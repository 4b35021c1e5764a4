"""TopK SAE training end to end on a tiny budget of real SmolLM2 activations."""

import torch

from steering.train_sae import TopKTrainer, TrainConfig, cache_activations, fve, load_cache, load_windows, train

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


def test_tiny_budget_training_runs_end_to_end(smollm2, tmp_path):
    """`python -m steering.train_sae` on a few thousand tokens: caches, trains, saves; the error goes down."""
    import json

    from steering.sae_formats import load_sae
    from steering.train_sae import main

    model, tok = smollm2
    docs = [{"text": " ".join(TEXTS[i:] + TEXTS[:i])} for i in range(len(TEXTS))] * 6
    docs += [{"messages": [{"role": "user", "content": t}, {"role": "assistant", "content": TEXTS[-1 - i]}]}
             for i, t in enumerate(TEXTS)]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "train.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (corpus / "heldout.jsonl").write_text(json.dumps({"text": TEXTS[0]}) + "\n")
    out, cache = tmp_path / "sae", tmp_path / "cache"
    main(["--layer", str(LAYER), "--corpus", str(corpus), "--out", str(out), "--cache", str(cache), "--ctx", "64",
          "--d-sae", "512", "--k", "16", "--batch-size", "256", "--epochs", "4", "--lr", "1e-3",
          "--warmup-steps", "5", "--dead-tokens", "1024", "--checkpoint-every", "10", "--device", "cpu"])
    meta = json.loads((cache / "meta.json").read_text())
    assert 2000 <= meta["tokens"] <= 20000 and meta["shards"] >= 1
    data = load_cache(cache)
    assert data["acts"].shape == (meta["tokens"], 576) and data["acts"].dtype == torch.float16
    assert int(data["pos"].min()) == 1  # position 0 (attention sink) is never stored
    assert len(load_windows(cache)) == meta["windows"]
    # a complete cache is not recomputed
    assert cache_activations(model, tok, docs, LAYER, cache, ctx=64) == meta

    info = json.loads((out / "training.json").read_text())
    curve = info["curve"]["fve"]
    assert curve[-1] > curve[0] + 0.2  # the reconstruction error went down
    sae = load_sae(out)
    assert sae.activation == "topk" and sae.k == 16 and sae.d_sae == 512
    x = data["acts"].float()
    assert float(fve(x, sae.decode(sae.encode(x)).float())) > 0.6
    torch.testing.assert_close(sae.W_dec.float().norm(dim=1), torch.ones(512), atol=2e-3, rtol=0)  # unit-norm decoder
    assert (sae.encode(x[:50]) > 0).sum(-1).max() <= 16
    assert not (out / "checkpoint.pt").exists()


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


def test_quality_metrics_are_exact_for_an_identity_sae(smollm2):
    """An SAE that reconstructs perfectly explains all variance and recovers all loss."""
    from steering.sae import SAE
    from steering.sae_quality import evaluate_windows

    model, tok = smollm2
    d = 576
    # relu(x) - relu(-x) = x: a 2d-feature "SAE" with k = 2d is exactly the identity
    eye = torch.eye(d)
    sae = SAE(W_enc=torch.cat([eye, -eye], 1), W_dec=torch.cat([eye, -eye], 0), b_enc=torch.zeros(2 * d),
              b_dec=torch.zeros(d), activation="topk", k=2 * d)
    wins = [tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS[:3]]
    r = evaluate_windows(model, sae, LAYER, wins, torch.zeros(d), tok.pad_token_id)
    assert abs(r["fve"] - 1) < 1e-5 and abs(r["ce_spliced"] - r["ce_clean"]) < 1e-3
    assert abs(r["loss_recovered"] - 1) < 1e-3 and r["ce_mean_ablated"] > r["ce_clean"] + 1
