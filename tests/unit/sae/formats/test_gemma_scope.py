"""Gemma Scope (params.npz / params.safetensors, JumpReLU, no b_dec on the input) against its formula."""


import numpy as np
import pytest
import torch

from steering.sae.registry import detect_format, open_sae
from tests.unit.sae.writers import (
    GEMMA_KINDS,
    D,
    F,
    gemma_state,
    np_,
    write_gemma,
)


def gemma_expected(state: dict, x: torch.Tensor) -> np.ndarray:
    pre = np_(x) @ state["W_enc"].astype(np.float64) + state["b_enc"]
    return np.maximum(pre, 0) * (pre > state["threshold"])


@pytest.mark.parametrize("kind", GEMMA_KINDS)
def test_gemma_scope_encode_matches_formula(kind, tmp_path, x):
    state = gemma_state()
    folder = write_gemma(tmp_path, state, kind)
    assert detect_format(folder) == "gemma_scope"
    handle = open_sae(folder)
    assert (handle.format, handle.d_in, handle.d_sae, handle.layer) == ("gemma_scope", D, F, 5)
    assert handle.activation == "jumprelu"
    sae = handle.load()
    assert not sae.apply_b_dec_to_input and sae.meta["average_l0"] == 71 and sae.meta["site"] == "res"
    assert sae.meta["hook_name"] == "blocks.5.hook_resid_post"
    expected = gemma_expected(state, x)
    np.testing.assert_allclose(sae.encode(x).numpy(), expected, atol=1e-5)
    pre = np_(x) @ state["W_enc"] + state["b_enc"]
    assert ((pre > 0) & (pre <= state["threshold"])).any(), "the threshold must zero some positive activations"
    with_b_dec = gemma_expected(state, x - torch.from_numpy(state["b_dec"]))
    assert not np.allclose(with_b_dec, expected, atol=1e-3), "subtracting b_dec must change the codes"
    np.testing.assert_allclose(np_(sae.decode(sae.encode(x))), expected @ state["W_dec"] + state["b_dec"], atol=1e-4)


def test_gemma_scope_prefers_safetensors_and_reads_a_file_path(tmp_path):
    state = gemma_state()
    folder = write_gemma(tmp_path, state, "npz")
    write_gemma(tmp_path, state | {"W_dec": state["W_dec"] * 2}, "safetensors")
    assert open_sae(folder).weights.name == "params.safetensors"
    assert open_sae(folder / "params.npz").weights.name == "params.npz"
    assert torch.equal(open_sae(folder / "params.npz").decoder_rows([3]) * 2, open_sae(folder).decoder_rows([3]))
