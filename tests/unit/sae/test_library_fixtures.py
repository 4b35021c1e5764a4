"""SAE files written by the real libraries (sae-lens, sparsify, dictionary_learning), read by this project's loaders
and compared with what each library itself computed on them (tests/fixtures/sae_libraries, made by
tools/sae_fixtures/make_fixtures.py; the libraries are not needed here).

Every accepted case must give the library's encode, decode, decoder directions (lazily read rows, the loaded
SAE's rows, and the steering vectors `python -m steering.cli.extract` writes) and per-feature activations (pin
mode's encoder rows, or `TopKFeature` for selection rules) at float32 tolerance. Refused cases must be refused by
name. A few checks make sure the fixtures can tell the rules apart (a wrong rule would fail them).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from steering.cli.extract import main as extract_main
from steering.sae import SAE, SAEFormatError, TopKFeature, load_sae, open_sae
from steering.sae.core import PER_FEATURE_RULES, SELECTION_RULES
from steering.sae.storage import safetensors_header, torch_header
from steering.steer.vectors import load_vectors
from tests.helpers import layer_config

ROOT = Path(__file__).resolve().parents[2] / "fixtures" / "sae_libraries"
CASES = {str(p.parent.relative_to(ROOT)): json.loads(p.read_text()) for p in sorted(ROOT.glob("*/*/case.json"))}
ACCEPTED = [c for c, info in CASES.items() if not info["refused"]]
ATOL = 1e-5

EXPECTED = {  # case -> (format, activation) the loader must report
    "saelens/standard": ("saelens", "relu"),
    "saelens/topk": ("saelens", "topk"),
    "saelens/topk_rescale": ("saelens", "topk"),
    "saelens/topk_rescale_inference": ("saelens", "topk"),
    "saelens/jumprelu": ("saelens", "jumprelu"),
    "saelens/batchtopk_inference": ("saelens", "jumprelu"),
    "sparsify/topk": ("sparsify", "topk"),
    "sparsify/groupmax": ("sparsify", "groupmax"),
    "sparsify/multi_topk": ("sparsify", "topk"),
    "dictionary_learning/batch_topk": ("dictionary_learning", "jumprelu"),
    "dictionary_learning/matryoshka_batch_topk": ("dictionary_learning", "jumprelu"),
    "dictionary_learning/topk": ("dictionary_learning", "topk"),
    "dictionary_learning/jumprelu": ("dictionary_learning", "jumprelu"),
    "dictionary_learning/autoencoder": ("dictionary_learning", "relu"),
}
REFUSED = {  # case -> what the refusal must say
    "saelens/batchtopk_training": r"architecture 'batchtopk' is a sae-lens training checkpoint.*save_inference_model",
    "saelens/gated": r"sae-lens architecture 'gated' is not supported; supported: \[.*'jumprelu'.*'topk'",
    "dictionary_learning/gated": r"dict_class 'GatedAutoEncoder' is not supported; supported: \[.*'AutoEncoderTopK'.*"
                                 r"'JumpReluAutoEncoder'",
}  # fmt: skip


def folder(case: str) -> Path:
    return ROOT / case / CASES[case]["sae"]


def outputs(case: str) -> dict[str, torch.Tensor]:
    return load_file(ROOT / case / "outputs.safetensors")


def test_every_case_is_checked_and_the_fixtures_stay_small():
    assert set(ACCEPTED) == set(EXPECTED) and set(CASES) - set(ACCEPTED) == set(REFUSED)
    assert {info["library"] for info in CASES.values()} == {"sae-lens", "eai-sparsify", "dictionary-learning"}
    assert sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file()) < 512 * 1024


@pytest.mark.parametrize("case", ACCEPTED)
def test_encode_and_decode_match_the_library(case):
    out = outputs(case)
    handle = open_sae(folder(case))
    assert (handle.format, handle.activation) == EXPECTED[case]
    assert handle.layer == 3 and handle.meta["hook_name"] == "blocks.3.hook_resid_post"
    sae = handle.load()
    codes = sae.encode(out["x"])
    torch.testing.assert_close(codes, out["encode"], atol=ATOL, rtol=0)
    assert torch.equal(codes != 0, out["encode"] != 0), "the same features must fire"
    torch.testing.assert_close(sae.decode(out["encode"]), out["decode"], atol=ATOL, rtol=0)
    torch.testing.assert_close(sae.decode(codes), out["decode"], atol=ATOL, rtol=0)
    assert (out["encode"] > 0).any() and (out["encode"] == 0).any()


@pytest.mark.parametrize("case", ACCEPTED)
def test_decoder_rows_match_the_library_directions(case):
    directions = outputs(case)["directions"]  # (F, d): decode(one-hot i) - decode(0), by the library
    handle = open_sae(folder(case))
    some = [0, 5, 17, handle.d_sae - 1]
    torch.testing.assert_close(handle.decoder_rows(some), directions[some], atol=ATOL, rtol=0)
    torch.testing.assert_close(handle.decoder_rows(range(handle.d_sae)), directions, atol=ATOL, rtol=0)
    torch.testing.assert_close(handle.load().decoder_directions(some), directions[some], atol=ATOL, rtol=0)


@pytest.mark.parametrize("case", ACCEPTED)
def test_one_feature_activation_matches_the_library(case):
    """Pin mode's reader: per-feature encoder rows read lazily, or TopKFeature on the loaded SAE."""
    out = outputs(case)
    handle = open_sae(folder(case))
    sae = handle.load()
    features = range(handle.d_sae)
    if handle.activation in PER_FEATURE_RULES:
        readers = handle.feature_rules(features)
        for i, rule in enumerate(readers):
            torch.testing.assert_close(rule.activation(out["x"]), out["encode"][:, i], atol=ATOL, rtol=0)
    else:
        assert handle.activation in SELECTION_RULES
        for i in features:
            torch.testing.assert_close(TopKFeature(sae, i)(out["x"]), out["encode"][:, i], atol=ATOL, rtol=0)
    for i in (0, 9, handle.d_sae - 1):
        torch.testing.assert_close(sae.encode_feature(out["x"], i), out["encode"][:, i], atol=ATOL, rtol=0)


@pytest.mark.parametrize("case", ACCEPTED)
def test_extracted_steering_vectors_match_the_library(case, tmp_path):
    out = outputs(case)
    indices = [0, 17, 63]
    sae_section = {"source": str(ROOT / case), "format": "auto", "path": CASES[case]["sae"]}
    cfg = layer_config(tmp_path, [[3, i, 1.0] for i in indices], sae_section=sae_section)
    assert extract_main([str(tmp_path / "demo.yaml"), "--out", str(tmp_path / "v.pt")]) == 0
    vectors = load_vectors(tmp_path / "v.pt")
    assert vectors.model == cfg.model
    for i in indices:
        v, expected = vectors.get(3, i), out["directions"][i]
        torch.testing.assert_close(v.direction, expected / expected.norm(), atol=ATOL, rtol=0)
        assert v.norm == pytest.approx(float(expected.norm()), abs=ATOL)
        if v.rule is not None:
            torch.testing.assert_close(v.rule.activation(out["x"]), out["encode"][:, i], atol=ATOL, rtol=0)
        else:
            assert EXPECTED[case][1] in SELECTION_RULES


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_by_name(case):
    with pytest.raises(SAEFormatError, match=REFUSED[case]):
        open_sae(folder(case))


# ---- the fixtures tell the rules apart -------------------------------------------------------------------


def raw_saelens(case: str, **change) -> SAE:
    """The sae-lens file's tensors as they are stored, under a rule of our choosing."""
    weights = load_file(folder(case) / "sae_weights.safetensors")
    names = ("W_enc", "W_dec", "b_enc", "b_dec")
    return SAE(**{n: weights[n] for n in names}, **({"activation": "topk", "k": 6} | change))


def test_rescale_matters_in_the_topk_training_checkpoint():
    """Reading `rescale_acts_by_decoder_norm` as plain top-k (the old reading) is far off; the norms vary."""
    out = outputs("saelens/topk_rescale")
    plain = raw_saelens("saelens/topk_rescale")
    assert json.loads((folder("saelens/topk_rescale") / "cfg.json").read_text())["rescale_acts_by_decoder_norm"]
    norms = plain.W_dec.norm(dim=-1)
    assert norms.min() < 0.7 and norms.max() > 1.5
    assert (plain.encode(out["x"]) - out["encode"]).abs().max() > 1
    assert (plain.decode(out["encode"]) - out["decode"]).abs().max() > 1
    assert not torch.equal(plain.encode(out["x"]) != 0, out["encode"] != 0), "rescaling changes which features fire"


def test_the_inference_file_of_the_rescaled_topk_sae_encodes_the_same():
    a, b = outputs("saelens/topk_rescale"), outputs("saelens/topk_rescale_inference")
    torch.testing.assert_close(a["encode"], b["encode"], atol=ATOL, rtol=0)
    torch.testing.assert_close(load_sae(folder("saelens/topk_rescale")).W_dec,
                               load_sae(folder("saelens/topk_rescale_inference")).W_dec, atol=ATOL, rtol=0)  # fmt: skip


def test_groupmax_keeps_one_per_group_and_differs_from_topk():
    out = outputs("sparsify/groupmax")
    cfg = json.loads((folder("sparsify/groupmax") / "cfg.json").read_text())
    groups = out["encode"].unflatten(-1, (cfg["k"], -1))  # (N, k, F/k)
    assert ((groups != 0).sum(-1) <= 1).all() and ((groups != 0).sum((-1, -2)) == cfg["k"]).all()
    topk = load_sae(folder("sparsify/groupmax"))
    topk.activation = "topk"
    assert not torch.allclose(topk.encode(out["x"]), out["encode"], atol=1e-3)


def test_thresholds_zero_some_positive_pre_activations():
    for case in ("saelens/jumprelu", "saelens/batchtopk_inference", "dictionary_learning/batch_topk",
                 "dictionary_learning/jumprelu", "dictionary_learning/matryoshka_batch_topk"):  # fmt: skip
        out, sae = outputs(case), load_sae(folder(case))
        pre = sae.pre_activation(out["x"])
        assert ((pre > 0) & (out["encode"] == 0)).any(), case


def test_dictionary_learning_saves_transposed_views_and_unnormalised_autoencoders():
    """The trainers save `encoder.weight` as a transposed view of another tensor's storage: read by its strides."""
    for case, name in (("dictionary_learning/topk", "encoder.weight"), ("dictionary_learning/jumprelu", "W_enc")):
        stored = torch_header(folder(case) / "ae.pt")[name]
        assert stored.strides[0] < stored.strides[1], f"{case}: {name} is not stored transposed"
    stored = torch_header(folder("dictionary_learning/autoencoder") / "ae.pt")["decoder.weight"]  # (d, F)
    norms = torch.load(stored.path, weights_only=True)["decoder.weight"].norm(dim=0)
    assert norms.min() < 0.7 and norms.max() > 1.5, "load_dictionary's decoder normalisation must matter"


def test_jumprelu_autoencoder_is_read_without_b_dec_on_the_input():
    out, sae = outputs("dictionary_learning/jumprelu"), load_sae(folder("dictionary_learning/jumprelu"))
    assert not sae.apply_b_dec_to_input
    sae.apply_b_dec_to_input = True
    assert not torch.allclose(sae.encode(out["x"]), out["encode"], atol=1e-3)


def test_saelens_headers_are_canonical():
    for case in ("saelens/standard", "saelens/topk_rescale"):
        header = safetensors_header(folder(case) / "sae_weights.safetensors")
        assert header["W_enc"].shape == (16, 64) and header["W_dec"].shape == (64, 16)
