"""The shipped SAEs for SmolLM2-135M-Instruct (layers 15 and 26): each loads, its quality figures hold, and the
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
SHIPPED = ROOT / "saes" / "smollm2-135m-instruct"
LAYERS = (15, 26)


@pytest.mark.parametrize("layer", LAYERS)
def test_shipped_sae_loads_as_topk_and_is_small(layer):
    folder = SHIPPED / f"layer_{layer}"
    sae = load_sae(folder)
    cfg = json.loads((folder / "cfg.json").read_text())
    assert sae.activation == "topk" and sae.k == cfg["k"] and cfg["architecture"] == "topk"
    assert sae.d_in == 576 and sae.d_sae == cfg["d_sae"] and cfg["hook_layer"] == layer
    assert (folder / "sae_weights.safetensors").stat().st_size < 50e6
    torch.testing.assert_close(sae.W_dec.float().norm(dim=1), torch.ones(sae.d_sae), atol=2e-3, rtol=0)
    for name in ("README.md", "quality.json", "training.json", "feature_stats.safetensors", "feature_contexts.json.gz",
                 "mean_residual.safetensors", "heldout_sample.jsonl"):
        assert (folder / name).exists(), name


@pytest.mark.parametrize("layer", LAYERS)
def test_stored_quality_matches_a_recomputation(smollm2, layer):
    model, tok = smollm2
    folder = SHIPPED / f"layer_{layer}"
    quality = json.loads((folder / "quality.json").read_text())
    stored = quality["sample"]
    got = evaluate_windows(model, load_sae(folder), layer, windows_from_jsonl(tok, folder / "heldout_sample.jsonl"),
                           mean_residual_from(folder), tok.pad_token_id, sink_threshold=sink_threshold_of(folder))
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
