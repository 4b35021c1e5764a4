"""steering.offline.quality on the real model: exact figures for an identity SAE."""

import torch

from tests.helpers import TRAIN_LAYER as LAYER
from tests.helpers import TRAIN_TEXTS as TEXTS


def test_quality_metrics_are_exact_for_an_identity_sae(smollm2):
    """An SAE that reconstructs perfectly explains all variance and recovers all loss."""
    from steering.offline.quality import evaluate_windows
    from steering.sae import SAE

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
