"""EleutherAI sparsify TopK: one folder per hookpoint (`layers.N`) with cfg.json + sae.safetensors.

`encoder.weight` (F, d), `encoder.bias` (F), `W_dec` (F, d), `b_dec` (d);
`f = relu((x - b_dec) @ encoder.weight.T + encoder.bias)`, keep the top k: rule "topk", apply_b_dec_to_input.
F is cfg `num_latents`, or `expansion_factor * d_in` when that is 0 or absent.
"""

from __future__ import annotations

import re
from pathlib import Path

from steering.sae.layout import Layout, SAEFormat, pick, read_json, require_keys
from steering.sae.names import SAEFormatError
from steering.sae.storage import safetensors_header


def convert(weights: Path) -> Layout:
    """The `Layout` of a `sae.safetensors`, sized by the `cfg.json` beside it."""
    cfg_path = weights.parent / "cfg.json"
    cfg = read_json(cfg_path)
    require_keys(cfg, ["d_in", "k"], str(cfg_path))
    if cfg.get("skip_connection") or cfg.get("transcode"):
        raise SAEFormatError(f"{cfg_path}: skip_connection/transcode SAEs (transcoders) are not supported")
    if cfg.get("multi_topk"):
        raise SAEFormatError(f"{cfg_path}: multi_topk is not supported (its encode differs from plain TopK)")
    d_in = int(cfg["d_in"])
    d_sae = int(cfg.get("num_latents") or 0) or int(cfg.get("expansion_factor") or 0) * d_in
    if d_sae <= 0:
        raise SAEFormatError(
            f"{cfg_path}: needs 'num_latents' or 'expansion_factor' to size the SAE; found {sorted(cfg)}"
        )
    records = safetensors_header(weights)
    names = {"W_enc": "encoder.weight", "b_enc": "encoder.bias", "W_dec": "W_dec", "b_dec": "b_dec"}
    tensors = {c: pick(records, n, c, weights) for c, n in names.items()}
    hookpoint = weights.parent.name
    match = re.fullmatch(r"layers\.(\d+)", hookpoint)
    layer = int(match.group(1)) if match else None
    meta = {"layer": layer, "hookpoint": hookpoint, "normalize_decoder": bool(cfg.get("normalize_decoder", True)),
            "hook_name": None if layer is None else f"blocks.{layer}.hook_resid_post"}  # fmt: skip
    return Layout(d_in=d_in, d_sae=d_sae, activation="topk", tensors=tensors, transposed=frozenset({"W_enc"}),
                  k=int(cfg["k"]), apply_b_dec_to_input=True, layer=layer, cfg=cfg, meta=meta)  # fmt: skip


FORMAT = SAEFormat(weights=("sae.safetensors",), config="cfg.json", open=convert)
