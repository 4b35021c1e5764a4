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
