"""Each format against its own encode formula, lazy reads, validation messages, and safe loading."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from steering.sae_formats import (
    FORMATS,
    SAEFormatError,
    detect_format,
    load_sae,
    open_sae,
    resolve_sae_folder,
)

D, F = 16, 96


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def dl_state(d=D, f=F, k=7, threshold=0.3, seed=0) -> dict:
    return {
        "encoder.weight": randn(f, d, seed=seed) / 3,  # (F, d)
        "encoder.bias": randn(f, seed=seed + 1) / 3,
        "decoder.weight": randn(d, f, seed=seed + 2),  # (d, F)
        "b_dec": randn(d, seed=seed + 3),
        "k": torch.tensor(k, dtype=torch.int64),
        "threshold": torch.tensor(threshold, dtype=torch.float32),
    }


def write_dl(folder: Path, state: dict, d=D, f=F, k=7, layer=19, dict_class="BatchTopKSAE") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "ae.pt")
    trainer = {"activation_dim": d, "dict_size": f, "k": k, "layer": layer,
               "lm_name": "meta-llama/Llama-3.1-8B-Instruct", "dict_class": dict_class}  # fmt: skip
    (folder / "config.json").write_text(json.dumps({"trainer": trainer}))
    return folder


def saelens_state(architecture: str, d=D, f=F, seed=10) -> dict:
    state = {
        "W_enc": randn(d, f, seed=seed) / 3,
        "W_dec": randn(f, d, seed=seed + 1),
        "b_enc": randn(f, seed=seed + 2) / 3,
        "b_dec": randn(d, seed=seed + 3),
    }
    if architecture == "jumprelu":
        state["threshold"] = torch.rand(f, generator=torch.Generator().manual_seed(seed + 4)) * 0.6
    return state


def write_saelens(folder: Path, state: dict, architecture: str, d=D, f=F, **cfg) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "sae_weights.safetensors"))
    cfg = {"architecture": architecture, "d_in": d, "d_sae": f, "hook_name": "blocks.12.hook_resid_post",
           "apply_b_dec_to_input": True, "model_name": "tiny"} | cfg  # fmt: skip
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder


def np_(t: torch.Tensor) -> np.ndarray:
    return t.double().numpy()


@pytest.fixture
def x() -> torch.Tensor:
    return randn(4, 3, D, seed=99)  # (B, T, d)


# ---- dictionary_learning


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


def test_dictionary_learning_other_dict_class_refused(tmp_path):
    folder = write_dl(tmp_path / "dl", dl_state(), dict_class="AutoEncoderTopK")
    with pytest.raises(SAEFormatError, match="dict_class 'AutoEncoderTopK' is not supported"):
        open_sae(folder)


# ---- saelens


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


# ---- lazy reads and feature rules


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


def bytes_read() -> int:
    """Bytes this process has passed through read()/pread() (`rchar`): exact, unlike RSS, which
    the allocator's reuse of freed memory and the page cache make unreliable."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise RuntimeError("no rchar in /proc/self/io")


BIG_D, BIG_F = 512, 131072  # 256 MiB per fp32 matrix
PICKS = [3, 777, 65536, 100003, BIG_F - 1]


def marked(*shape) -> torch.Tensor:
    """Zeros except a recognisable value at each picked feature along the last axis of length BIG_F."""
    t = torch.zeros(*shape)
    for i in PICKS:
        if shape[-1] == BIG_F:
            t[..., i] = torch.arange(BIG_D) + i
        else:
            t[i] = torch.arange(BIG_D) + i
    return t


def assert_reads_rows_only(folder: Path, matrix_bytes: int) -> None:
    before = bytes_read()
    handle = open_sae(folder)
    rows = handle.decoder_rows(PICKS)
    rules = handle.feature_rules(PICKS)
    read = bytes_read() - before
    expected = torch.stack([torch.arange(BIG_D) + i for i in PICKS]).float()
    assert torch.equal(rows, expected)
    assert all(torch.equal(r.w_enc, e) for r, e in zip(rules, expected))
    assert read < 0.01 * matrix_bytes, f"read {read / 2**20:.1f} MiB to get 5 features"


def test_extraction_reads_rows_not_the_matrix(tmp_path):
    matrix_bytes = BIG_D * BIG_F * 4
    big = {"encoder.weight": marked(BIG_F, BIG_D), "decoder.weight": marked(BIG_D, BIG_F)}
    state = dl_state(d=BIG_D, f=BIG_F) | big
    dl = write_dl(tmp_path / "dl", state, d=BIG_D, f=BIG_F)
    del state, big
    assert_reads_rows_only(dl, matrix_bytes)

    before = bytes_read()
    full = torch.load(dl / "ae.pt", weights_only=True)["decoder.weight"]
    assert bytes_read() - before > matrix_bytes, "a full load must show up in the measure, else the check above proves nothing"
    del full
    (dl / "ae.pt").unlink()

    state = saelens_state("standard", d=BIG_D, f=BIG_F) | {"W_enc": marked(BIG_D, BIG_F), "W_dec": marked(BIG_F, BIG_D)}
    st = write_saelens(tmp_path / "st", state, "standard", d=BIG_D, f=BIG_F)
    del state
    assert_reads_rows_only(st, matrix_bytes)
    (st / "sae_weights.safetensors").unlink()


# ---- errors


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


def test_unknown_format(tmp_path):
    (tmp_path / "params.npz").write_bytes(b"")
    with pytest.raises(SAEFormatError, match=r"unknown SAE format; found files \['params.npz'\]. Known formats need"):
        detect_format(tmp_path)
    with pytest.raises(SAEFormatError, match=r"unknown SAE format 'npz'; known: \['dictionary_learning', 'saelens'\]"):
        open_sae(tmp_path, format="npz")
    with pytest.raises(SAEFormatError, match=r"format 'saelens' needs .*missing \['cfg.json'"):
        open_sae(tmp_path, format="saelens")
    assert set(FORMATS) == {"saelens", "dictionary_learning"}


_MARKER_WRITES = []


def write_marker(path: str) -> None:
    _MARKER_WRITES.append(path)
    Path(path).write_text("pwned")


class RunsCode:
    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return write_marker, (self.path,)


def test_pickled_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "marker"
    folder = write_dl(tmp_path / "dl", dl_state() | {"extra": RunsCode(marker)})
    assert not marker.exists()
    with pytest.raises(SAEFormatError, match="refused to load.*weights_only=True"):
        open_sae(folder)
    assert not marker.exists() and not _MARKER_WRITES


# ---- sources


def test_resolve_local_folder(tmp_path):
    folder = write_dl(tmp_path / "resid_post_layer_3" / "trainer_1", dl_state())
    assert resolve_sae_folder(str(tmp_path), "resid_post_layer_3/trainer_1") == folder
    assert resolve_sae_folder(str(folder)) == folder
    with pytest.raises(SAEFormatError, match="no subfolder 'trainer_9'"):
        resolve_sae_folder(str(tmp_path), "trainer_9")
    with pytest.raises(SAEFormatError, match="neither a local folder nor a Hub repo id"):
        resolve_sae_folder(str(tmp_path / "missing" / "deeper"))


def test_resolve_hub_offline_gives_clear_error(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SAEFormatError, match=r"could not fetch SAE 'nobody-here/no-such-sae' \(subfolder='layer_3'"):
        resolve_sae_folder("nobody-here/no-such-sae", "layer_3")
