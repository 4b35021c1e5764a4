"""SAELens native files against each architecture's encode formula."""


import numpy as np
import pytest
import torch

from steering.sae.names import SAEFormatError
from steering.sae.registry import load_sae, open_sae
from tests.unit.sae.writers import (
    np_,
    saelens_state,
    write_saelens,
)


def saelens_expected(state: dict, architecture: str, x: torch.Tensor, k=5) -> np.ndarray:
    pre = (np_(x) - np_(state["b_dec"])) @ np_(state["W_enc"]) + np_(state["b_enc"])
    if architecture == "standard":
        return np.maximum(pre, 0)
    if architecture == "jumprelu":
        return np.where(pre > np_(state["threshold"]), np.maximum(pre, 0), 0)
    out = np.zeros_like(pre)
    kth = -np.sort(-pre, axis=-1)[..., k - 1 : k]
    keep = pre >= kth
    out[keep] = np.maximum(pre[keep], 0)
    return out


@pytest.mark.parametrize(
    ("architecture", "cfg"),
    [("standard", {}), ("jumprelu", {}), ("topk", {"k": 5}), ("topk", {"activation_fn_kwargs": {"k": 5}})],
)
def test_saelens_encode_matches_formula(architecture, cfg, tmp_path, x):
    state = saelens_state(architecture)
    sae = load_sae(write_saelens(tmp_path / "s", state, architecture, **cfg))
    assert sae.meta["layer"] == 12 and sae.meta["format"] == "saelens"
    np.testing.assert_allclose(sae.encode(x).numpy(), saelens_expected(state, architecture, x), atol=1e-5)
    if architecture == "topk":
        assert sae.k == 5 and ((sae.encode(x) != 0).sum(-1) <= 5).all()


def test_saelens_topk_without_k_is_refused(tmp_path):
    folder = write_saelens(tmp_path / "s", saelens_state("topk"), "topk")
    with pytest.raises(SAEFormatError, match="needs 'k'"):
        open_sae(folder)


def test_saelens_topk_rescaled_by_decoder_norm(tmp_path, x):
    """`rescale_acts_by_decoder_norm`: top-k of pre * |W_dec[i]|, decode divides the codes by the norms again."""
    state = saelens_state("topk")
    state["W_dec"] = state["W_dec"] * torch.linspace(0.3, 3.0, state["W_dec"].shape[0]).unsqueeze(-1)
    handle = open_sae(write_saelens(tmp_path / "s", state, "topk", k=5, rescale_acts_by_decoder_norm=True))
    sae = handle.load()
    norms = np.linalg.norm(np_(state["W_dec"]), axis=-1)
    pre = ((np_(x) - np_(state["b_dec"])) @ np_(state["W_enc"]) + np_(state["b_enc"])) * norms
    expected = np.zeros_like(pre)
    top = np.argsort(-pre, axis=-1)[..., :5]
    np.put_along_axis(expected, top, np.maximum(np.take_along_axis(pre, top, -1), 0), -1)
    np.testing.assert_allclose(sae.encode(x).numpy(), expected, atol=1e-4)
    decoded = (expected / norms) @ np_(state["W_dec"]) + np_(state["b_dec"])
    np.testing.assert_allclose(np_(sae.decode(sae.encode(x))), decoded, atol=1e-4)
    unit = np_(state["W_dec"]) / norms[:, None]
    np.testing.assert_allclose(handle.decoder_rows([0, 7]).double().numpy(), unit[[0, 7]], atol=1e-6)
    assert sae.meta["decoder_norms_folded"] is True
    plain = load_sae(write_saelens(tmp_path / "p", state, "topk", k=5))
    assert not np.allclose(plain.encode(x).numpy(), expected, atol=1e-2), "the rescale must matter here"
    assert not open_sae(write_saelens(tmp_path / "j", saelens_state("jumprelu"), "jumprelu",
                                      rescale_acts_by_decoder_norm=True)).layout.fold_decoder_norms  # fmt: skip


@pytest.mark.parametrize(
    ("architecture", "message"),
    [
        ("batchtopk", r"'batchtopk' is a sae-lens training checkpoint \(save_model\).*save_inference_model"),
        ("matryoshka_batchtopk", r"'matryoshka_batchtopk' is a sae-lens training checkpoint"),
        ("gated", r"sae-lens architecture 'gated' is not supported; supported: \['groupmax', 'jumprelu'"),
    ],
)
def test_saelens_unreadable_architectures_are_refused_by_name(architecture, message, tmp_path):
    with pytest.raises(SAEFormatError, match=message):
        open_sae(write_saelens(tmp_path / "s", saelens_state("topk"), architecture, k=5))
