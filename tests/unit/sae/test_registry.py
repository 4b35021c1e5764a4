"""Detection, the handle's lazy reads and feature rules against full loads, for every format, and its errors."""


import pytest
import torch

from steering.sae.names import SAEFormatError
from steering.sae.registry import FORMATS, detect_format, load_sae, open_sae
from tests.unit.sae.writers import (
    D,
    F,
    dl_state,
    every_format,
    gemma_state,
    qwen_state,
    saelens_state,
    write_dl,
    write_gemma,
    write_goodfire,
    write_saelens,
)


def both_formats(tmp_path):
    yield "dictionary_learning", write_dl(tmp_path / "dl", dl_state())
    yield "standard", write_saelens(tmp_path / "st", saelens_state("standard"), "standard")
    yield "jumprelu", write_saelens(tmp_path / "jr", saelens_state("jumprelu"), "jumprelu")


def test_lazy_rows_equal_full_load_rows(tmp_path):
    indices = [5, 0, F - 1, 5, 40]
    for _, folder in both_formats(tmp_path):
        handle = open_sae(folder)
        rows = handle.decoder_rows(indices)
        assert rows.shape == (5, D) and rows.dtype == torch.float32
        assert torch.equal(rows, handle.load().decoder_directions(indices))
        assert handle.decoder_rows([]).shape == (0, D)


def test_feature_rules_reproduce_encode(tmp_path, x):
    indices = list(range(0, F, 7))
    for name, folder in both_formats(tmp_path):
        handle = open_sae(folder)
        codes = handle.load().encode(x)  # (B, T, F)
        assert (codes[..., indices] != 0).any(), name
        for rule in handle.feature_rules(indices):
            torch.testing.assert_close(rule.activation(x), codes[..., rule.index], atol=1e-5, rtol=1e-5)


def test_feature_rules_refused_for_topk(tmp_path):
    handle = open_sae(write_saelens(tmp_path / "s", saelens_state("topk"), "topk", k=5))
    with pytest.raises(ValueError, match="cannot be reduced to per-feature encoder rows"):
        handle.feature_rules([1])


def test_out_of_range_index(tmp_path):
    handle = open_sae(write_dl(tmp_path / "dl", dl_state()))
    with pytest.raises(IndexError, match=rf"\[{F}\] out of range \[0, {F}\)"):
        handle.decoder_rows([1, F])


def test_unknown_format(tmp_path):
    (tmp_path / "weights.gguf").write_bytes(b"")
    with pytest.raises(SAEFormatError, match=r"unknown SAE format; found files \['weights.gguf'\]. Known formats need"):
        detect_format(tmp_path)
    known = r"\['dictionary_learning', 'gemma_scope', 'goodfire', 'qwen_scope', 'saelens', 'sparsify'\]"
    with pytest.raises(SAEFormatError, match=rf"unknown SAE format 'npz'; known: {known}"):
        open_sae(tmp_path, format="npz")
    missing = r"format 'saelens' needs .*missing \['cfg.json', 'sae_weights.safetensors'\]"
    with pytest.raises(SAEFormatError, match=missing):
        open_sae(tmp_path, format="saelens")
    assert set(FORMATS) == {"saelens", "dictionary_learning", "gemma_scope", "qwen_scope", "sparsify", "goodfire"}


def test_goodfire_is_only_a_fallback(tmp_path):
    folder = write_dl(tmp_path / "dl", dl_state())
    torch.save({"unrelated": torch.zeros(2)}, folder / "optimizer.pt")
    assert detect_format(folder) == "dictionary_learning", "a named format wins over goodfire's *.pt wildcard"


def test_every_format_lazy_rows_and_rules_equal_full_load(tmp_path, x):
    indices = [5, 0, F - 1, 5, 40]
    seen = set()
    for name, folder, per_feature in every_format(tmp_path):
        handle = open_sae(folder)
        seen.add(handle.format)
        assert handle.format == name and detect_format(folder) == name
        sae = handle.load()
        rows = handle.decoder_rows(indices)
        assert rows.shape == (5, D) and rows.dtype == torch.float32
        assert torch.equal(rows, sae.decoder_directions(indices)), folder
        if not per_feature:
            with pytest.raises(ValueError, match="cannot be reduced to per-feature encoder rows"):
                handle.feature_rules([1])
            continue
        codes = sae.encode(x)  # (B, T, F)
        for rule in handle.feature_rules(range(0, F, 5)):
            assert rule.apply_b_dec_to_input == sae.apply_b_dec_to_input
            torch.testing.assert_close(rule.activation(x), codes[..., rule.index], atol=1e-5, rtol=1e-5)
    assert seen == set(FORMATS)


def test_width_mismatch_with_the_model(tmp_path):
    for _, folder, _ in every_format(tmp_path):
        handle = open_sae(folder)
        handle.check_width(D)
        message = rf"reads residual vectors of width d_in={D}, but the model's residual width .* is d_model=2048"
        with pytest.raises(SAEFormatError, match=message):
            handle.check_width(2048)
        with pytest.raises(SAEFormatError, match=message):
            open_sae(folder, d_model=2048)
    assert load_sae(folder, d_model=D).d_in == D


def test_wrong_format_named(tmp_path):
    gemma = write_gemma(tmp_path, gemma_state())
    expected = r"format 'sparsify' needs \['cfg.json', 'sae.safetensors'\]; missing \['cfg.json', 'sae.safetensors'\]"
    with pytest.raises(SAEFormatError, match=expected):
        open_sae(gemma, "sparsify")
    with pytest.raises(SAEFormatError, match=r"params.npz: not a 'qwen_scope' weights file; .* needs layer\*.sae.pt"):
        open_sae(gemma / "params.npz", "qwen_scope")
    with pytest.raises(SAEFormatError, match=r"x.pth: missing tensor 'encoder_linear.weight'"):
        open_sae(write_goodfire(tmp_path / "gf", qwen_state(), name="x.pth"))  # a Qwen-Scope dict under a .pth name
    (gemma / "params.npz").write_bytes(b"not a zip")
    with pytest.raises(SAEFormatError, match="params.npz: not a numpy .npz archive"):
        open_sae(gemma)
    with pytest.raises(SAEFormatError, match="no such file or folder"):
        open_sae(tmp_path / "nowhere")
