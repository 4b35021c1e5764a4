"""A converter's layout against its stored tensors: a missing tensor or a wrong shape is named with the fix."""


import numpy as np
import pytest
import torch

from steering.sae.names import SAEFormatError
from steering.sae.registry import open_sae
from tests.unit.sae.writers import (
    D,
    F,
    dl_state,
    gemma_state,
    goodfire_state,
    qwen_state,
    saelens_state,
    sparsify_state,
    write_dl,
    write_gemma,
    write_goodfire,
    write_qwen,
    write_saelens,
    write_sparsify,
)


def test_missing_tensor(tmp_path):
    state = dl_state()
    del state["encoder.bias"]
    with pytest.raises(SAEFormatError, match=r"ae.pt: missing tensor 'encoder.bias' \(canonical b_enc\); found"):
        open_sae(write_dl(tmp_path / "dl", state))
    state = saelens_state("jumprelu")
    del state["threshold"]
    with pytest.raises(SAEFormatError, match=r"missing tensor 'threshold'"):
        open_sae(write_saelens(tmp_path / "s", state, "jumprelu"))


def test_wrong_shape(tmp_path):
    state = dl_state() | {"decoder.weight": torch.zeros(F, D)}
    expected = rf"tensor 'decoder.weight' has shape \({F}, {D}\), expected \({D}, {F}\) = \(d_in, d_sae\)"
    with pytest.raises(SAEFormatError, match=expected):
        open_sae(write_dl(tmp_path / "dl", state))


def test_width_mismatch_between_config_and_weights(tmp_path):
    folder = write_saelens(tmp_path / "s", saelens_state("standard"), "standard", f=F * 2)
    with pytest.raises(SAEFormatError, match=rf"'W_enc' has shape \({D}, {F}\), expected \({D}, {2 * F}\).*disagree"):
        open_sae(folder)


@pytest.mark.parametrize(
    ("write", "drop", "stored", "canonical"),
    [
        (lambda p, s: write_gemma(p, s, "npz"), "threshold", "threshold", "threshold"),
        (lambda p, s: write_gemma(p, s, "safetensors"), "b_dec", "b_dec", "b_dec"),
        (write_qwen, "W_dec", "W_dec", "W_dec"),
        (write_sparsify, "encoder.bias", "encoder.bias", "b_enc"),
        (lambda p, s: write_goodfire(p / "gf", s), "decoder_linear.bias", "decoder_linear.bias", "b_dec"),
    ],
)
def test_new_formats_missing_tensor(write, drop, stored, canonical, tmp_path):
    state = {"threshold": gemma_state, "b_dec": gemma_state, "W_dec": qwen_state, "encoder.bias": sparsify_state,
             "decoder_linear.bias": goodfire_state}[drop]()  # fmt: skip
    del state[drop]
    with pytest.raises(SAEFormatError, match=rf"missing tensor '{stored}' \(canonical {canonical}\); found \["):
        open_sae(write(tmp_path, state))


def test_new_formats_wrong_shape(tmp_path):
    gemma = gemma_state() | {"threshold": np.zeros(F + 1, np.float32)}
    with pytest.raises(SAEFormatError, match=rf"'threshold' has shape \({F + 1},\), expected \({F},\) = \(d_sae\)"):
        open_sae(write_gemma(tmp_path, gemma))
    qwen = qwen_state() | {"W_dec": torch.zeros(F, D)}  # canonical orientation where Qwen-Scope stores (d, F)
    with pytest.raises(SAEFormatError, match=rf"'W_dec' has shape \({F}, {D}\), expected \({D}, {F}\) = \(d_in, d_sae\)"):
        open_sae(write_qwen(tmp_path, qwen))
    goodfire = goodfire_state() | {"encoder_linear.weight": torch.zeros(F)}
    with pytest.raises(SAEFormatError, match=r"'encoder_linear.weight' has shape \(96,\); expected a 2-D"):
        open_sae(write_goodfire(tmp_path / "gf", goodfire))
