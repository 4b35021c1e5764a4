"""Small SAE files of every format, written by the tests themselves with random weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

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
