"""Each format against its own encode formula, lazy reads, validation messages, and safe loading."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from steering.config import SAE_FORMATS
from steering.sae_formats import (
    FORMATS,
    SAEFormatError,
    detect_format,
    load_sae,
    open_sae,
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
    assert set(SAE_FORMATS) == set(FORMATS) | {"auto"}, "config.SAE_FORMATS must list every registered format"


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


# ---- Gemma Scope: params.npz / params.safetensors, JumpReLU, no b_dec on the input


def gemma_state(d=D, f=F, seed=20) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "W_enc": (rng.standard_normal((d, f)) / 3).astype(np.float32),  # (d, F)
        "W_dec": rng.standard_normal((f, d)).astype(np.float32),  # (F, d)
        "b_enc": (rng.standard_normal(f) / 3).astype(np.float32),
        "b_dec": (rng.standard_normal(d) * 2).astype(np.float32),
        "threshold": (rng.random(f) * 0.6).astype(np.float32),
    }


GEMMA_KINDS = ("npz", "npz_compressed", "safetensors")


def write_gemma(root: Path, state: dict, kind="npz", layer=5) -> Path:
    folder = root / "gemma-scope-2b-pt-res" / f"layer_{layer}" / "width_16k" / "average_l0_71"
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "npz":
        np.savez(folder / "params.npz", **state)
    elif kind == "npz_compressed":
        np.savez_compressed(folder / "params.npz", **state)
    else:
        save_file({n: torch.from_numpy(a) for n, a in state.items()}, str(folder / "params.safetensors"))
    return folder


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


def test_npz_member_offsets_are_lazy_only_when_stored(tmp_path):
    from steering.sae_formats import npz_header

    state = gemma_state()
    stored = npz_header(write_gemma(tmp_path / "a", state, "npz") / "params.npz")
    assert all(r.zip_member is None and r.byte_offset > 0 for r in stored.values())
    compressed = npz_header(write_gemma(tmp_path / "b", state, "npz_compressed") / "params.npz")
    assert all(r.zip_member == f"{n}.npy" and r.byte_offset == -1 for n, r in compressed.items())
    assert stored["W_enc"].shape == compressed["W_enc"].shape == (D, F) and stored["W_enc"].dtype == torch.float32


def test_npz_fortran_order_and_other_dtypes_read_correctly(tmp_path, x):
    state = gemma_state()
    swapped = state["threshold"].astype(">f4" if np.little_endian else "<f4")  # foreign byte order: full-load path
    state = state | {"W_dec": np.asfortranarray(state["W_dec"]), "W_enc": state["W_enc"].astype(np.float16),
                     "threshold": swapped}  # fmt: skip
    folder = write_gemma(tmp_path, state, "npz")
    handle = open_sae(folder)
    assert handle.layout.tensors["threshold"].zip_member == "threshold.npy"
    np.testing.assert_array_equal(handle.decoder_rows([1, 50]).numpy(), state["W_dec"][[1, 50]])
    sae = handle.load()
    np.testing.assert_array_equal(sae.W_enc.numpy(), state["W_enc"].astype(np.float32))
    np.testing.assert_array_equal(sae.threshold.numpy(), state["threshold"].astype(np.float32))
    rules = handle.feature_rules([2, 9])
    assert [float(r.threshold) for r in rules] == [float(state["threshold"][2]), float(state["threshold"][9])]
    for rule in rules:
        torch.testing.assert_close(rule.activation(x), sae.encode(x)[..., rule.index])


# ---- Qwen-Scope: layer{n}.sae.pt, transposed, TopK without ReLU, k from the repo name


def qwen_state(d=D, f=F, seed=30) -> dict:
    return {
        "W_enc": randn(f, d, seed=seed) / 3,  # (F, d)
        "W_dec": randn(d, f, seed=seed + 1),  # (d, F)
        "b_enc": randn(f, seed=seed + 2) / 3 - 0.5,
        "b_dec": randn(d, seed=seed + 3) * 2,
    }


def write_qwen(root: Path, state: dict, layers=(3,), repo="SAE-Res-Qwen3-8B-Base-W64K-L0_60") -> Path:
    folder = root / repo
    folder.mkdir(parents=True, exist_ok=True)
    for layer in layers:
        torch.save(state, folder / f"layer{layer}.sae.pt")
    return folder


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


# ---- EleutherAI sparsify: layers.N/cfg.json + sae.safetensors, TopK after b_dec subtraction


def sparsify_state(d=D, f=F, seed=40) -> dict:
    return {
        "encoder.weight": randn(f, d, seed=seed) / 3,  # (F, d)
        "encoder.bias": randn(f, seed=seed + 1) / 3,
        "W_dec": randn(f, d, seed=seed + 2),  # (F, d)
        "b_dec": randn(d, seed=seed + 3),
    }


def write_sparsify(root: Path, state: dict, layer=6, d=D, **cfg) -> Path:
    folder = root / f"layers.{layer}"
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "sae.safetensors"))
    cfg = {"expansion_factor": F // D, "normalize_decoder": True, "num_latents": 0, "k": 8, "multi_topk": False,
           "skip_connection": False, "d_in": d} | cfg  # fmt: skip
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder


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


def test_sparsify_config_problems(tmp_path):
    with pytest.raises(SAEFormatError, match=r"skip_connection/transcode SAEs \(transcoders\) are not supported"):
        open_sae(write_sparsify(tmp_path / "a", sparsify_state(), skip_connection=True))
    with pytest.raises(SAEFormatError, match=r"needs 'num_latents' or 'expansion_factor'"):
        open_sae(write_sparsify(tmp_path / "b", sparsify_state(), expansion_factor=0))
    with pytest.raises(SAEFormatError, match=rf"'encoder.weight' has shape \({F}, {D}\), expected \({2 * F}, {D}\)"):
        open_sae(write_sparsify(tmp_path / "c", sparsify_state(), num_latents=2 * F))


# ---- Goodfire: one .pth state dict, ReLU, decoder bias not subtracted


def goodfire_state(d=D, f=F, seed=50) -> dict:
    return {
        "encoder_linear.weight": randn(f, d, seed=seed) / 3,  # (F, d)
        "encoder_linear.bias": randn(f, seed=seed + 1) / 3,
        "decoder_linear.weight": randn(d, f, seed=seed + 2),  # (d, F)
        "decoder_linear.bias": randn(d, seed=seed + 3) * 2,
    }


def write_goodfire(root: Path, state: dict, name="Llama-3.1-8B-Instruct-SAE-l19.pth") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    torch.save(state, root / name)
    return root


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


def test_goodfire_is_only_a_fallback(tmp_path):
    folder = write_dl(tmp_path / "dl", dl_state())
    torch.save({"unrelated": torch.zeros(2)}, folder / "optimizer.pt")
    assert detect_format(folder) == "dictionary_learning", "a named format wins over goodfire's *.pt wildcard"


# ---- every format: lazy reads equal full loads, detection, validation


def every_format(tmp_path):
    """(name, path, per-feature rule?) for one small SAE of each format and variant."""
    yield "dictionary_learning", write_dl(tmp_path / "dl", dl_state()), True
    for arch in ("standard", "jumprelu"):
        yield "saelens", write_saelens(tmp_path / arch, saelens_state(arch), arch), True
    yield "saelens", write_saelens(tmp_path / "topk", saelens_state("topk"), "topk", k=5), False
    for kind in GEMMA_KINDS:
        yield "gemma_scope", write_gemma(tmp_path / kind, gemma_state(), kind), True
    yield "qwen_scope", write_qwen(tmp_path, qwen_state()), False
    yield "sparsify", write_sparsify(tmp_path, sparsify_state()), False
    yield "goodfire", write_goodfire(tmp_path / "gf", goodfire_state()), True


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


BIG_D2, BIG_F2 = 256, 16384  # 16 MiB per fp32 matrix
PICKS2 = [3, 4100, 9000, 12000, BIG_F2 - 1]  # more than _MERGE_GAP apart


def test_new_formats_read_rows_not_the_matrix(tmp_path):
    """Lazy reads of a canonical (npz), a transposed (.sae.pt) and a .pth file: bytes read << the matrix."""
    marks = torch.zeros(BIG_F2, BIG_D2)  # (F, d)
    for i in PICKS2:
        marks[i] = torch.arange(BIG_D2) + i
    expected = marks[PICKS2]
    gemma = gemma_state(d=BIG_D2, f=BIG_F2) | {"W_dec": marks.numpy(), "W_enc": marks.T.contiguous().numpy()}
    qwen = qwen_state(d=BIG_D2, f=BIG_F2) | {"W_dec": marks.T.contiguous(), "W_enc": marks}
    goodfire = goodfire_state(d=BIG_D2, f=BIG_F2) | {"decoder_linear.weight": marks.T.contiguous(),
                                                     "encoder_linear.weight": marks}  # fmt: skip
    paths = [write_gemma(tmp_path / "g", gemma), write_qwen(tmp_path, qwen, repo="q-L0_64"),
             write_goodfire(tmp_path / "gf", goodfire)]  # fmt: skip
    del gemma, qwen, goodfire
    for path in paths:
        before = bytes_read()
        handle = open_sae(path)
        rows = handle.decoder_rows(PICKS2)
        rules = handle.feature_rules(PICKS2) if handle.activation != "topk_raw" else []
        read = bytes_read() - before
        assert torch.equal(rows, expected), path
        assert all(torch.equal(r.w_enc, e) for r, e in zip(rules, expected))
        assert read < 0.01 * BIG_D2 * BIG_F2 * 4, f"{handle.format}: read {read / 2**20:.1f} MiB to get 5 features"


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
