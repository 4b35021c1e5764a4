"""dictionary_learning BatchTopK against its own encode formula, its metadata and its config checks."""


import json

import numpy as np
import pytest
import torch

from steering.sae.names import SAEFormatError
from steering.sae.registry import detect_format, load_sae, open_sae
from tests.unit.sae.writers import (
    D,
    F,
    dl_state,
    np_,
    randn,
    write_dl,
)


def test_dictionary_learning_encode_matches_formula(tmp_path, x):
    state = dl_state()
    sae = load_sae(write_dl(tmp_path / "dl", state))
    W, b, bd, thr = np_(state["encoder.weight"]), np_(state["encoder.bias"]), np_(state["b_dec"]), 0.3
    xs = np_(x)
    relu = np.maximum((xs - bd) @ W.T + b, 0)
    expected = np.where(relu > thr, relu, 0)
    np.testing.assert_allclose(sae.encode(x).numpy(), expected, atol=1e-5)

    assert ((relu > 0) & (relu <= thr)).any(), "the threshold must zero some positive activations"
    no_b_dec = np.maximum(xs @ W.T + b, 0)
    assert not np.allclose(np.where(no_b_dec > thr, no_b_dec, 0), expected, atol=1e-3)
    np.testing.assert_allclose(np_(sae.decode(sae.encode(x))), np_(sae.encode(x)) @ np_(state["decoder.weight"]).T
                               + bd, atol=1e-4)  # fmt: skip


def test_dictionary_learning_metadata(tmp_path):
    folder = write_dl(tmp_path / "resid_post_layer_19" / "trainer_1", dl_state(k=7))
    assert detect_format(folder) == "dictionary_learning"
    handle = open_sae(folder)
    assert (handle.format, handle.d_in, handle.d_sae, handle.layer) == ("dictionary_learning", D, F, 19)
    sae = handle.load()
    assert sae.W_enc.shape == (D, F) and sae.W_dec.shape == (F, D) and sae.threshold.shape == (F,)
    assert sae.meta["k"] == 7 and sae.meta["hook_name"] == "blocks.19.hook_resid_post"
    assert sae.meta["model_name"] == "meta-llama/Llama-3.1-8B-Instruct" and sae.meta["source"] == str(folder)


def test_dictionary_learning_k_buffer_must_match_config(tmp_path):
    folder = write_dl(tmp_path / "dl", dl_state(k=32), k=64)
    with pytest.raises(SAEFormatError, match=r"buffer k=32 disagrees with .*trainer.k=64"):
        open_sae(folder)


@pytest.mark.parametrize("dict_class", ["GatedAutoEncoder", "AutoEncoderNew", "SomethingElse"])
def test_dictionary_learning_unknown_dict_class_refused_by_name(dict_class, tmp_path):
    folder = write_dl(tmp_path / "dl", dl_state(), dict_class=dict_class)
    with pytest.raises(SAEFormatError, match=rf"dict_class '{dict_class}' is not supported; supported: "
                                             r"\['AutoEncoder', 'AutoEncoderTopK', 'BatchTopKSAE', 'JumpReluAutoEncoder'"):  # fmt: skip
        open_sae(folder)


def test_dictionary_learning_jumprelu_needs_no_k(tmp_path):
    """JumpReluAutoEncoder's config has no `k`: the class is read, not refused for a missing key."""
    d, f = D, F
    state = {"W_enc": randn(d, f, seed=1), "b_enc": randn(f, seed=2), "W_dec": randn(f, d, seed=3),
             "b_dec": randn(d, seed=4), "threshold": randn(f, seed=5).abs()}  # fmt: skip
    folder = tmp_path / "dl"
    folder.mkdir()
    torch.save(state, folder / "ae.pt")
    trainer = {"dict_class": "JumpReluAutoEncoder", "activation_dim": d, "dict_size": f, "layer": 4}
    (folder / "config.json").write_text(json.dumps({"trainer": trainer}))
    handle = open_sae(folder)
    assert (handle.activation, handle.k, handle.layout.apply_b_dec_to_input) == ("jumprelu", None, False)
    (folder / "config.json").write_text(json.dumps({"trainer": trainer | {"dict_class": "AutoEncoderTopK"}}))
    with pytest.raises(SAEFormatError, match=r"missing config keys \['k'\]"):
        open_sae(folder)
