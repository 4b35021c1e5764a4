"""steering.offline.quality on the tiny random Llama: the residual splice, the figures for an SAE that
reconstructs exactly (and a clean CE computed here by hand), dead features, windows from a jsonl file.
The same identity check on the real model: tests/integration/test_quality.py."""

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from steering.offline.activations import windows
from steering.offline.quality import (
    dead_fraction,
    evaluate_windows,
    mean_residual_from,
    replace_residual,
    windows_from_jsonl,
)
from steering.sae.core import SAE
from tests.helpers import TINY_WORDS, random_sae, tiny_tokenizer

LAYER, D = 1, 32
IDS = torch.tensor([[5, 9, 14, 3, 27, 8, 41, 12]])
WINDOWS = [[5, 9, 14, 3, 27, 8, 41, 12], [7, 7, 30, 2, 11], [60, 61, 62, 63, 64, 65, 66]]


def _identity_sae(d=D):
    """relu(x) - relu(-x) = x: 2d features with k = 2d reconstruct exactly."""
    eye = torch.eye(d)
    return SAE(W_enc=torch.cat([eye, -eye], 1), W_dec=torch.cat([eye, -eye], 0), b_enc=torch.zeros(2 * d),
               b_dec=torch.zeros(d), activation="topk", k=2 * d)


def test_replace_residual_edits_positions_after_the_first_and_is_removed_after(tiny_llama):
    shift = torch.full((D,), 0.5)
    with torch.no_grad():
        plain = tiny_llama(input_ids=IDS).logits
        with replace_residual(tiny_llama, LAYER, lambda h: h + shift):
            spliced = tiny_llama(input_ids=IDS, output_hidden_states=True)

        def manual(module, args, output):
            h = (output[0] if isinstance(output, tuple) else output).clone()
            h[:, 1:] += shift
            return (h, *output[1:]) if isinstance(output, tuple) else h

        handle = tiny_llama.model.layers[LAYER].register_forward_hook(manual)
        try:
            expected = tiny_llama(input_ids=IDS).logits
        finally:
            handle.remove()
        after = tiny_llama(input_ids=IDS).logits
    torch.testing.assert_close(spliced.logits, expected)
    assert torch.equal(after, plain) and not torch.allclose(spliced.logits, plain)


def _clean_ce_by_hand(model, wins):
    total, n = 0.0, 0
    with torch.no_grad():
        for w in wins:
            logits = model(input_ids=torch.tensor([w])).logits[0]
            total += float(F.cross_entropy(logits[1:-1], torch.tensor(w[2:]), reduction="sum"))  # predictions at >= 1
            n += len(w) - 2
    return total / n


def test_an_exact_sae_explains_everything_and_recovers_all_the_loss(tiny_llama):
    r = evaluate_windows(tiny_llama, _identity_sae(), LAYER, WINDOWS, torch.zeros(D), pad=0, batch_size=2)
    assert r["tokens"] == sum(len(w) - 1 for w in WINDOWS) and r["sink_positions_left_out"] == 0
    assert r["fve"] == pytest.approx(1, abs=1e-5) and r["fve_uncentered"] == pytest.approx(1, abs=1e-5)
    assert r["l0"] == D  # one of each +/- pair fires per dimension
    assert r["ce_clean"] == pytest.approx(_clean_ce_by_hand(tiny_llama, WINDOWS), rel=1e-4)
    assert r["ce_spliced"] == pytest.approx(r["ce_clean"], abs=1e-4) and r["ce_increase"] == pytest.approx(0, abs=1e-4)
    assert r["ce_mean_ablated"] != pytest.approx(r["ce_clean"], abs=1e-3)
    assert r["loss_recovered"] == pytest.approx(1, abs=1e-3)


def test_an_sae_that_reconstructs_nothing_explains_no_variance(tiny_llama):
    zero = SAE(W_enc=torch.zeros(D, 4), W_dec=torch.zeros(4, D), b_enc=torch.zeros(4), b_dec=torch.zeros(D),
               activation="relu")
    r = evaluate_windows(tiny_llama, zero, LAYER, WINDOWS, torch.zeros(D))
    assert r["fve_uncentered"] == pytest.approx(0, abs=1e-6) and r["l0"] == 0 and r["fired_fraction"] == 0
    assert r["ce_spliced"] == pytest.approx(r["ce_mean_ablated"], abs=1e-5)  # both put zeros in place of the residual
    assert r["loss_recovered"] == pytest.approx(0, abs=1e-4)


def test_dead_fraction_counts_features_that_never_fire():
    sae = random_sae(16, 24, "relu", seed=2, tied=False)
    acts = torch.randn(50, 16, generator=torch.Generator().manual_seed(3))
    fraction, counts = dead_fraction(sae, acts, batch_size=7)
    expected = (sae.encode(acts) > 0).sum(0)
    assert torch.equal(counts, expected) and fraction == pytest.approx(float((expected == 0).float().mean()))


def test_windows_from_jsonl_and_the_mean_residual_file(tmp_path):
    tok = tiny_tokenizer()
    docs = [{"text": " ".join(TINY_WORDS[i:] + TINY_WORDS[:i])} for i in range(5)]
    (tmp_path / "heldout.jsonl").write_text("".join(json.dumps(d) + "\n\n" for d in docs))
    expected = windows([tok(d["text"], add_special_tokens=False)["input_ids"] for d in docs], 20)
    assert windows_from_jsonl(tok, tmp_path / "heldout.jsonl", ctx=20) == expected
    capped = windows_from_jsonl(tok, tmp_path / "heldout.jsonl", ctx=20, max_tokens=30)
    assert capped == expected[: len(capped)] and sum(len(w) - 1 for w in capped[:-1]) < 30 <= sum(len(w) - 1 for w in capped)
    mean = torch.randn(D, dtype=torch.float16)
    save_file({"mean": mean}, str(tmp_path / "mean_residual.safetensors"))
    got = mean_residual_from(tmp_path)
    assert got.dtype == torch.float32 and torch.equal(got, mean.float())
