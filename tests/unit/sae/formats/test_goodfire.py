"""Goodfire (one .pth state dict, ReLU, decoder bias not subtracted) against its formula."""


import numpy as np

from steering.sae.registry import detect_format, open_sae
from tests.unit.sae.writers import (
    D,
    F,
    goodfire_state,
    np_,
    write_goodfire,
)


def test_goodfire_encode_and_decode_match_formula(tmp_path, x):
    state = goodfire_state()
    folder = write_goodfire(tmp_path / "Llama-3.1-8B-Instruct-SAE-l19", state)
    assert detect_format(folder) == "goodfire"
    handle = open_sae(folder)
    assert (handle.d_in, handle.d_sae, handle.layer, handle.activation) == (D, F, 19, "relu")
    sae = handle.load()
    assert not sae.apply_b_dec_to_input
    expected = np.maximum(np_(x) @ np_(state["encoder_linear.weight"]).T + np_(state["encoder_linear.bias"]), 0)
    np.testing.assert_allclose(sae.encode(x).numpy(), expected, atol=1e-5)
    decoded = expected @ np_(state["decoder_linear.weight"]).T + np_(state["decoder_linear.bias"])
    np.testing.assert_allclose(np_(sae.decode(sae.encode(x))), decoded, atol=1e-4)
    assert open_sae(write_goodfire(tmp_path / "other", state, name="sae.pt")).layer is None
