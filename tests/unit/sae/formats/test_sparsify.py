"""EleutherAI sparsify (layers.N/cfg.json + sae.safetensors, TopK after b_dec subtraction) against its formula."""


import numpy as np
import pytest
import torch

from steering.sae.names import SAEFormatError
from steering.sae.registry import detect_format, open_sae
from tests.unit.sae.writers import (
    D,
    F,
    np_,
    sparsify_state,
    write_sparsify,
)


@pytest.mark.parametrize("cfg", [{}, {"num_latents": F, "expansion_factor": 99}])
def test_sparsify_encode_matches_formula(cfg, tmp_path, x):
    state = sparsify_state()
    folder = write_sparsify(tmp_path, state, **cfg)
    assert detect_format(folder) == "sparsify"
    handle = open_sae(folder)
    assert (handle.d_in, handle.d_sae, handle.layer, handle.k, handle.activation) == (D, F, 6, 8, "topk")
    sae = handle.load()
    assert sae.meta["hook_name"] == "blocks.6.hook_resid_post" and sae.meta["normalize_decoder"] is True
    pre = (np_(x) - np_(state["b_dec"])) @ np_(state["encoder.weight"]).T + np_(state["encoder.bias"])
    relu = np.maximum(pre, 0)
    expected = np.zeros_like(relu)
    top = np.argsort(-relu, axis=-1)[..., :8]
    np.put_along_axis(expected, top, np.take_along_axis(relu, top, -1), -1)
    np.testing.assert_allclose(sae.encode(x).numpy(), expected, atol=1e-5)


def test_sparsify_groupmax_keeps_each_groups_max(tmp_path, x):
    """`activation: groupmax`: the F latents in k groups of F/k consecutive ones, each keeping its relu'd max."""
    state = sparsify_state()
    sae = open_sae(write_sparsify(tmp_path, state, activation="groupmax", k=12)).load()
    assert (sae.activation, sae.k) == ("groupmax", 12)
    relu = np.maximum((np_(x) - np_(state["b_dec"])) @ np_(state["encoder.weight"]).T + np_(state["encoder.bias"]), 0)
    groups = relu.reshape(*relu.shape[:-1], 12, F // 12)
    expected = np.where(groups == groups.max(-1, keepdims=True), groups, 0).reshape(relu.shape)
    np.testing.assert_allclose(sae.encode(x).numpy(), expected, atol=1e-5)


def test_sparsify_multi_topk_is_plain_topk(tmp_path, x):
    """multi_topk changes the training loss only: encode is the same top-k."""
    state = sparsify_state()
    plain = open_sae(write_sparsify(tmp_path / "a", state)).load()
    multi = open_sae(write_sparsify(tmp_path / "b", state, multi_topk=True))
    assert multi.activation == "topk" and multi.meta["multi_topk"] is True
    assert torch.equal(multi.load().encode(x), plain.encode(x))


def test_sparsify_config_problems(tmp_path):
    with pytest.raises(SAEFormatError, match=r"sparsify activation 'softmax' is not supported; supported: "
                                             r"\['groupmax', 'topk'\]"):  # fmt: skip
        open_sae(write_sparsify(tmp_path / "d", sparsify_state(), activation="softmax"))
    with pytest.raises(SAEFormatError, match=r"'groupmax' splits the 96 latents into k=7 equal groups"):
        open_sae(write_sparsify(tmp_path / "e", sparsify_state(), activation="groupmax", k=7))
    with pytest.raises(SAEFormatError, match=r"skip_connection/transcode SAEs \(transcoders\) are not supported"):
        open_sae(write_sparsify(tmp_path / "a", sparsify_state(), skip_connection=True))
    with pytest.raises(SAEFormatError, match=r"needs 'num_latents' or 'expansion_factor'"):
        open_sae(write_sparsify(tmp_path / "b", sparsify_state(), expansion_factor=0))
    with pytest.raises(SAEFormatError, match=rf"'encoder.weight' has shape \({F}, {D}\), expected \({2 * F}, {D}\)"):
        open_sae(write_sparsify(tmp_path / "c", sparsify_state(), num_latents=2 * F))
