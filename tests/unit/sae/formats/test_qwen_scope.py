"""Qwen-Scope (layer{n}.sae.pt, transposed, TopK without ReLU, k from the repo name) against its formula."""


import numpy as np
import pytest
import torch

from steering.sae.names import SAEFormatError
from steering.sae.registry import detect_format, load_sae, open_sae
from tests.unit.sae.writers import (
    D,
    F,
    gemma_state,
    np_,
    qwen_state,
    write_gemma,
    write_qwen,
)


def qwen_expected(state: dict, x: torch.Tensor, k: int) -> np.ndarray:
    pre = np_(x) @ np_(state["W_enc"]).T + np_(state["b_enc"])  # no b_dec subtraction
    out = np.zeros_like(pre)
    top = np.argsort(-pre, axis=-1)[..., :k]
    np.put_along_axis(out, top, np.take_along_axis(pre, top, -1), -1)  # kept as they are: no relu
    return out


def test_qwen_scope_encode_matches_formula(tmp_path, x):
    state = qwen_state()
    folder = write_qwen(tmp_path, state)
    handle = open_sae(folder)
    assert (handle.format, handle.d_in, handle.d_sae, handle.layer, handle.k) == ("qwen_scope", D, F, 3, 60)
    sae = handle.load()
    assert (sae.activation, sae.apply_b_dec_to_input) == ("topk_raw", False)
    expected = qwen_expected(state, x, 60)
    assert (expected < 0).any(), "some kept pre-activations must be negative, else ReLU would not be tested"
    np.testing.assert_allclose(sae.encode(x).numpy(), expected, atol=1e-5)
    assert ((sae.encode(x) != 0).sum(-1) == 60).all()
    np.testing.assert_allclose(np_(sae.decode(sae.encode(x))), expected @ np_(state["W_dec"]).T + np_(state["b_dec"]),
                               atol=1e-4)  # fmt: skip


def test_qwen_scope_k_from_name_argument_or_refused(tmp_path, x):
    state = qwen_state()
    assert open_sae(write_qwen(tmp_path, state, repo="SAE-Res-Qwen3-8B-Base-W64K-L0_50")).k == 50
    hub = tmp_path / "hub" / "models--Qwen--SAE-Res-Qwen3-1.7B-Base-W32K-L0_100" / "snapshots" / "abc123"
    assert open_sae(write_qwen(hub.parent, qwen_state(f=128), repo="abc123") / "layer3.sae.pt").k == 100
    explicit = open_sae(write_qwen(tmp_path, state, repo="plain"), k=7)
    assert explicit.k == 7 and explicit.meta["k_from"] == "the k= argument"
    np.testing.assert_allclose(explicit.load().encode(x).numpy(), qwen_expected(state, x, 7), atol=1e-5)
    assert load_sae(tmp_path / "SAE-Res-Qwen3-8B-Base-W64K-L0_50", k=9).k == 9, "the argument overrides the name"
    with pytest.raises(SAEFormatError, match=r"TopK k is unknown.*'L0_<k>'.*open_sae\(path, 'qwen_scope', k=50\)"):
        open_sae(tmp_path / "plain")
    with pytest.raises(SAEFormatError, match=rf"k=500 from the k= argument is outside \[1, {F}\]"):
        open_sae(tmp_path / "plain", k=500)
    with pytest.raises(SAEFormatError, match=r"format 'gemma_scope' takes no \['k'\] option"):
        open_sae(write_gemma(tmp_path, gemma_state()), k=5)


def test_qwen_scope_folder_of_layers_needs_a_file(tmp_path):
    folder = write_qwen(tmp_path, qwen_state(), layers=(0, 3, 12))
    with pytest.raises(SAEFormatError, match=r"holds 3 qwen_scope weight files.*sae.path: \"layer\{layer\}.sae.pt\""):
        open_sae(folder)
    assert open_sae(folder / "layer12.sae.pt").layer == 12
    assert detect_format(folder / "layer0.sae.pt") == "qwen_scope"
