"""Qwen-Scope TopK: `layer{n}.sae.pt`, a plain dict W_enc (F, d), W_dec (d, F), b_enc (F), b_dec (d).

`pre = x @ W_enc.T + b_enc`; keep the k largest values of pre AS THEY ARE (no relu), zero elsewhere; no b_dec
subtraction: rule "topk_raw". The files carry no config, so k is the explicit `k`, else the `L0_{k}` in the
nearest folder name (a Hub cache folder `models--Qwen--SAE-Res-...-L0_50` counts), else refused.
"""

from __future__ import annotations

from pathlib import Path

from steering.sae.layout import Layout, SAEFormat, first_int, pick, shape_2d
from steering.sae.names import SAEFormatError
from steering.sae.storage import torch_header

_K_IN_NAME = r"(?:^|[^A-Za-z0-9])L0_(\d+)(?![0-9])"  # `..._L0_50` in the repo / folder name


def convert(weights: Path, k: int | None = None) -> Layout:
    """The `Layout` of a `layer{n}.sae.pt`; `k` overrides the one in the folder name."""
    records = torch_header(weights)
    names = {"W_enc": "W_enc", "W_dec": "W_dec", "b_enc": "b_enc", "b_dec": "b_dec"}
    tensors = {c: pick(records, n, c, weights) for c, n in names.items()}
    d_sae, d_in = shape_2d(tensors["W_enc"], "W_enc (d_sae, d_in)")
    parts = [p.name for p in weights.parents]
    origin = "the k= argument"
    if k is None:
        k = first_int(_K_IN_NAME, parts)
        origin = "the folder name"
    if k is None:
        raise SAEFormatError(
            f"{weights}: Qwen-Scope files carry no config, so the TopK k is unknown: none of the folder names "
            f"{parts[:3]} has 'L0_<k>' (as the release names do, e.g. SAE-Res-Qwen3-8B-Base-W64K-L0_50). "
            f"Pass it explicitly: open_sae(path, 'qwen_scope', k=50)"
        )
    if not 0 < int(k) <= d_sae:
        raise SAEFormatError(f"{weights}: k={k} from {origin} is outside [1, {d_sae}] (d_sae={d_sae})")
    layer = first_int(r"^layer(\d+)\.sae\.pt$", [weights.name])
    meta = {"layer": layer, "k": int(k), "k_from": origin}
    return Layout(d_in=d_in, d_sae=d_sae, activation="topk_raw", tensors=tensors,
                  transposed=frozenset({"W_enc", "W_dec"}), k=int(k), apply_b_dec_to_input=False, layer=layer,
                  meta=meta)  # fmt: skip


FORMAT = SAEFormat(weights=("layer*.sae.pt",), open=convert, options=("k",))
