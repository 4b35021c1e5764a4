"""TopK SAE training end to end on a tiny budget of real SmolLM2 activations."""

import torch

from steering.offline.activations import cache_activations, load_cache, load_windows
from steering.offline.train import fve
from tests.helpers import TRAIN_LAYER as LAYER
from tests.helpers import TRAIN_TEXTS as TEXTS


def test_tiny_budget_training_runs_end_to_end(smollm2, tmp_path):
    """`python -m steering.offline.train` on a few thousand tokens: caches, trains, saves; the error goes down."""
    import json

    from steering.offline.train import main
    from steering.sae import load_sae

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
