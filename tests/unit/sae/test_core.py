"""Canonical SAE math against independent numpy formulas, the TopK single-feature reader, and the SAELens
save/load round trip."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from steering.sae.core import SAE, FeatureRule, TopKFeature, fold_decoder_norms
from steering.sae.registry import load_sae
from tests.helpers import random_sae

D_IN, D_SAE = 16, 64


def make_sae(activation: str, seed: int = 0, **kwargs) -> SAE:
    g = torch.Generator().manual_seed(seed)
    threshold = torch.rand(D_SAE, generator=g) * 0.5 if activation == "jumprelu" else None
    return SAE(
        W_enc=torch.randn(D_IN, D_SAE, generator=g) / 4,
        W_dec=torch.randn(D_SAE, D_IN, generator=g),
        b_enc=torch.randn(D_SAE, generator=g) / 4,
        b_dec=torch.randn(D_IN, generator=g),
        activation=activation,
        threshold=threshold,
        meta={"layer": 3, "hook_name": "blocks.3.hook_resid_post", "model_name": "tiny"},
        **({"k": 8 if activation in ("topk", "topk_raw", "groupmax") else None} | kwargs),
    )


def numpy_pre(sae: SAE, x: np.ndarray) -> np.ndarray:
    W, b, bd = (t.double().numpy() for t in (sae.W_enc, sae.b_enc, sae.b_dec))
    x = x - bd if sae.apply_b_dec_to_input else x
    return x @ W + b


def numpy_encode(sae: SAE, x: np.ndarray) -> np.ndarray:
    pre = numpy_pre(sae, x)
    if sae.activation == "relu":
        return np.maximum(pre, 0)
    if sae.activation == "jumprelu":
        return np.where(pre > sae.threshold.double().numpy(), np.maximum(pre, 0), 0)
    out = np.zeros_like(pre)
    for row, p in zip(out.reshape(-1, D_SAE), pre.reshape(-1, D_SAE)):
        if sae.activation == "groupmax":
            size = D_SAE // sae.k
            top = np.array([g * size + np.argmax(p[g * size : (g + 1) * size]) for g in range(sae.k)])
        else:
            top = np.argsort(-p)[: sae.k]
        row[top] = p[top] if sae.activation == "topk_raw" else np.maximum(p[top], 0)
    return out


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(3, 5, D_IN, generator=torch.Generator().manual_seed(1))  # (B, T, d)


@pytest.mark.parametrize("activation", ["relu", "topk", "topk_raw", "jumprelu", "groupmax"])
@pytest.mark.parametrize("apply_b_dec", [True, False])
def test_encode_matches_formula(activation, apply_b_dec, x):
    sae = make_sae(activation, apply_b_dec_to_input=apply_b_dec)
    f = sae.encode(x)
    assert f.shape == (3, 5, D_SAE) and f.dtype == torch.float32
    np.testing.assert_allclose(f.numpy(), numpy_encode(sae, x.double().numpy()), atol=1e-5)


def test_jumprelu_threshold_matters(x):
    sae = make_sae("jumprelu")
    pre = numpy_pre(sae, x.double().numpy())
    between = (pre > 0) & (pre <= sae.threshold.double().numpy())
    assert between.any(), "some positive pre-activations must sit below the threshold"
    assert (sae.encode(x).numpy()[between] == 0).all()


def test_topk_keeps_k(x):
    sae = make_sae("topk")
    assert ((sae.encode(x) != 0).sum(-1) <= sae.k).all()


def test_topk_raw_keeps_negative_values(x):
    sae = make_sae("topk_raw", k=40)
    f, pre = sae.encode(x), sae.pre_activation(x)
    assert ((f != 0).sum(-1) == 40).all()
    kept_negative = (f < 0) & (f == pre)
    assert kept_negative.any(), "topk_raw keeps the k largest pre-activations as they are, negative ones included"
    assert (make_sae("topk", k=40).encode(x) >= 0).all()


def test_encode_half_precision_input_computes_in_float32(x):
    sae = make_sae("relu")
    np.testing.assert_allclose(sae.encode(x.half()).numpy(), sae.encode(x.half().float()).numpy())


def test_decode_and_directions(x):
    sae = make_sae("relu")
    f = sae.encode(x)
    expected = f.double().numpy() @ sae.W_dec.double().numpy() + sae.b_dec.double().numpy()
    np.testing.assert_allclose(sae.decode(f).numpy(), expected, atol=1e-4)
    rows = sae.decoder_directions([5, 0, 63])
    assert rows.shape == (3, D_IN)
    assert torch.equal(rows, sae.W_dec[[5, 0, 63]])
    assert torch.equal(sae.decoder_directions(7), sae.W_dec[[7]])


@pytest.mark.parametrize("activation", ["relu", "jumprelu"])
def test_encode_feature_and_rule_match_encode(activation, x):
    sae = make_sae(activation)
    f = sae.encode(x)
    for i in range(D_SAE):
        torch.testing.assert_close(sae.encode_feature(x, i), f[..., i], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sae.feature_rule(i).activation(x), f[..., i], atol=1e-5, rtol=1e-5)
    assert (f != 0).any() and (f == 0).any()


def test_topk_has_no_feature_rule_but_encode_feature_works(x):
    sae = make_sae("topk")
    with pytest.raises(ValueError, match="cannot be reduced to one encoder row"):
        sae.feature_rule(3)
    with pytest.raises(ValueError, match="'topk_raw' SAE cannot be reduced to one encoder row"):
        make_sae("topk_raw").feature_rule(3)
    torch.testing.assert_close(make_sae("topk_raw").encode_feature(x, 3), make_sae("topk_raw").encode(x)[..., 3])
    with pytest.raises(ValueError, match="full SAE"):
        FeatureRule(0, torch.zeros(D_IN), torch.tensor(0.0), torch.zeros(D_IN), None, "topk")
    torch.testing.assert_close(sae.encode_feature(x, 3), sae.encode(x)[..., 3])


@pytest.mark.parametrize("activation", ["topk", "topk_raw", "groupmax"])
def test_topk_feature_equals_full_encode(activation):
    sae = random_sae(32, 64, "topk", seed=3, tied=False)
    sae = replace(sae, activation=activation)
    x = torch.randn(5, 7, 32, generator=torch.Generator().manual_seed(1)) * 3
    codes = sae.encode(x)
    for i in range(64):
        assert torch.equal(TopKFeature(sae, i)(x), codes[..., i])
    assert (codes != 0).sum(-1).max() <= sae.k


def test_groupmax_keeps_one_per_group(x):
    sae = make_sae("groupmax", k=8)
    groups = sae.encode(x).unflatten(-1, (8, D_SAE // 8))  # (..., 8, 8)
    assert ((groups != 0).sum(-1) <= 1).all() and ((groups != 0).sum((-1, -2)) > 1).any()
    with pytest.raises(ValueError, match=r"'groupmax' needs k dividing d_sae into equal groups; k=7, d_sae=64"):
        make_sae("groupmax", k=7)


def test_fold_decoder_norms_keeps_rescaled_codes_and_reconstructions(x):
    """A rescaled TopK SAE (rank pre * |W_dec[i]|, decode f / |W_dec[i]|) equals the folded plain one."""
    sae = make_sae("topk")
    norms = sae.W_dec.norm(dim=-1)
    pre = sae.pre_activation(x) * norms
    values, top = pre.topk(sae.k, dim=-1)
    codes = torch.zeros_like(pre).scatter(-1, top, values.relu())
    W_enc, b_enc, W_dec = fold_decoder_norms(sae.W_enc, sae.b_enc, sae.W_dec)
    folded = replace(sae, W_enc=W_enc, b_enc=b_enc, W_dec=W_dec)
    torch.testing.assert_close(folded.encode(x), codes, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(folded.decode(codes), (codes / norms) @ sae.W_dec + sae.b_dec, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(W_dec.norm(dim=-1), torch.ones(D_SAE))
    zero = fold_decoder_norms(sae.W_enc, sae.b_enc, sae.W_dec * 0)[2]
    assert torch.isfinite(zero).all(), "a zero decoder row is floored, not divided by zero"


def test_to_copies_and_casts():
    sae = make_sae("jumprelu")
    half = sae.to(dtype=torch.float16)
    assert half.W_enc.dtype == half.threshold.dtype == torch.float16
    assert sae.W_enc.dtype == torch.float32
    assert half.meta == sae.meta and half.meta is not sae.meta


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"activation": "gelu"}, "activation must be one of"),
        ({"W_dec": torch.zeros(D_SAE, D_IN + 1)}, r"W_dec has shape \(64, 17\), expected \(64, 16\)"),
        ({"threshold": None}, "needs a threshold"),
    ],
)
def test_invalid_sae_is_refused(change, message):
    fields = make_sae("jumprelu").__dict__ | change
    with pytest.raises(ValueError, match=message):
        SAE(**fields)


@pytest.mark.parametrize("activation", ["topk", "topk_raw", "groupmax"])
def test_topk_needs_k(activation):
    fields = make_sae(activation).__dict__ | {"k": None}
    with pytest.raises(ValueError, match=rf"activation '{activation}' needs an integer k"):
        SAE(**fields)


@pytest.mark.parametrize("activation", ["relu", "topk", "topk_raw", "jumprelu", "groupmax"])
def test_save_load_round_trip_exact(activation, tmp_path, x):
    sae = make_sae(activation, apply_b_dec_to_input=activation != "relu")
    sae.save(tmp_path, dtype=torch.float32)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["architecture"] == {"relu": "standard"}.get(activation, activation)
    assert cfg["d_in"] == D_IN and cfg["d_sae"] == D_SAE and cfg["hook_name"] == "blocks.3.hook_resid_post"
    loaded = load_sae(tmp_path)
    for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
        assert torch.equal(getattr(loaded, name), getattr(sae, name))
    assert (loaded.activation, loaded.k, loaded.apply_b_dec_to_input) == (activation, sae.k, sae.apply_b_dec_to_input)
    assert loaded.meta["layer"] == 3 and loaded.meta["model_name"] == "tiny" and loaded.meta["format"] == "saelens"
    assert torch.equal(loaded.encode(x), sae.encode(x))


def test_save_default_half_precision(tmp_path):
    sae = make_sae("jumprelu")
    sae.save(tmp_path)
    loaded = load_sae(tmp_path)
    assert json.loads((tmp_path / "cfg.json").read_text())["dtype"] == "float16"
    torch.testing.assert_close(loaded.W_dec, sae.W_dec.half().float())
    torch.testing.assert_close(loaded.threshold, sae.threshold.half().float())
