"""The shipped SAE for SmolLM2-135M-Instruct layer 15: it loads, its quality figures hold, and its
default demo features steer the model toward their concepts."""

import json
from pathlib import Path

import pytest
import torch

from steering.offline.eval.lexicons import BROAD, concept_for
from steering.offline.quality import (
    evaluate_windows,
    mean_residual_from,
    sink_threshold_of,
    windows_from_jsonl,
)
from steering.sae import load_sae

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "saes" / "smollm2-135m-instruct" / "layer_15"
pytestmark = pytest.mark.skipif(not (FOLDER / "cfg.json").exists(), reason="no shipped SAE")


def test_shipped_sae_loads_as_topk_and_is_small():
    sae = load_sae(FOLDER)
    cfg = json.loads((FOLDER / "cfg.json").read_text())
    assert sae.activation == "topk" and sae.k == cfg["k"] and cfg["architecture"] == "topk"
    assert sae.d_in == 576 and sae.d_sae == cfg["d_sae"] and cfg["hook_layer"] == 15
    assert (FOLDER / "sae_weights.safetensors").stat().st_size < 50e6
    torch.testing.assert_close(sae.W_dec.float().norm(dim=1), torch.ones(sae.d_sae), atol=2e-3, rtol=0)
    assert (FOLDER / "README.md").exists()


def test_stored_quality_matches_a_recomputation(smollm2):
    model, tok = smollm2
    quality = json.loads((FOLDER / "quality.json").read_text())
    stored = quality["sample"]
    got = evaluate_windows(model, load_sae(FOLDER), 15, windows_from_jsonl(tok, FOLDER / "heldout_sample.jsonl"),
                           mean_residual_from(FOLDER), tok.pad_token_id, sink_threshold=sink_threshold_of(FOLDER))
    assert got["tokens"] == stored["tokens"]
    for key, tol in (("fve", 0.005), ("l0", 0.5), ("ce_clean", 0.01), ("ce_spliced", 0.02),
                     ("ce_mean_ablated", 0.05), ("loss_recovered", 0.01)):
        assert abs(got[key] - stored[key]) <= tol, (key, got[key], stored[key])
    # the small sample tells the same story as the full held-out set
    assert abs(stored["fve"] - quality["heldout"]["fve"]) < 0.05
    assert stored["loss_recovered"] > 0.9


ANSWER = ("I spent the weekend at home. On Saturday I read a book, tidied my room and called my sister. "
          "On Sunday I went for a long walk with a friend, and in the evening we watched a film.")


def _concept_mass(model, ids, n_answer, token_ids):
    """Mean probability, over the answer's positions, that the next token starts a concept word."""
    with torch.inference_mode():
        probs = model(input_ids=ids).logits[0, -n_answer - 1 : -1].float().softmax(-1)  # (n_answer, V)
    return float(probs[:, token_ids].sum(-1).mean())


def test_default_features_raise_their_concept_words():
    """Teacher-forced on a fixed prompt and a fixed neutral answer, steering with each default feature at its
    default strength makes the model expect the feature's concept words far more often."""
    from steering.engine import Engine
    from steering.steer.hooks import steering

    s = Engine.from_config(ROOT / "demo.yaml", device="cpu", dtype="float32")
    assert 4 <= len(s.features) <= 8
    tok = s.tokenizer
    answer = tok(ANSWER, add_special_tokens=False, return_tensors="pt")["input_ids"]
    ids = torch.cat([s.encode([{"role": "user", "content": "Tell me about your weekend."}]), answer], 1)
    for f in s.features:
        concept = concept_for(f.label, BROAD)
        assert concept is not None, f"feature {f.key} label {f.label!r} names no evaluated concept"
        variants = {v for k in concept.words for v in (" " + k, " " + k.capitalize())}
        token_ids = sorted({tok(v, add_special_tokens=False)["input_ids"][0] for v in variants})
        plain = _concept_mass(s.model, ids, answer.shape[1], token_ids)
        with steering(s.model, s.plan({f.key: f.strength}, features=[f])):
            steered = _concept_mass(s.model, ids, answer.shape[1], token_ids)
        assert steered > 2 * plain, (f.label, plain, steered)
