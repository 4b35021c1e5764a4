"""EleutherAI sparsify: one folder per hookpoint (`layers.N`) with cfg.json + sae.safetensors.

`encoder.weight` (F, d), `encoder.bias` (F), `W_dec` (F, d), `b_dec` (d). As sparsify 1.3 computes it
(sparsify/sparse_coder.py `encode`, sparsify/fused_encoder.py): `pre = relu((x - b_dec) @ encoder.weight.T +
encoder.bias)`, then by cfg `activation`:
- "topk" (default): keep the k largest -> rule "topk";
- "groupmax": `pre.unflatten(-1, (k, -1)).max(-1)`, the F latents in k groups of F/k consecutive ones, each
  keeping its maximum -> rule "groupmax".
Decode is `codes @ W_dec + b_dec`. `multi_topk` changes only the training loss and `forward()`'s reconstruction
(top 4k), never `encode`, so it is read as plain top-k. F is cfg `num_latents`, or `expansion_factor * d_in` when
that is 0 or absent. Transcoders (`transcode`, `skip_connection`) are refused.
"""

from __future__ import annotations

import re
from pathlib import Path

from steering.sae.layout import Layout, SAEFormat, pick, read_json, require_keys
from steering.sae.names import SAEFormatError
from steering.sae.storage import safetensors_header

_ACTIVATION = {"topk": "topk", "groupmax": "groupmax"}


def _activation(cfg: dict, k: int, d_sae: int, cfg_path: Path) -> str:
    """The canonical rule for cfg `activation`, or a refusal naming it and what is supported."""
    activation = cfg.get("activation", "topk")
    if activation not in _ACTIVATION:
        raise SAEFormatError(
            f"{cfg_path}: sparsify activation {activation!r} is not supported; supported: {sorted(_ACTIVATION)}"
        )
    if activation == "groupmax" and (k <= 0 or d_sae % k):
        raise SAEFormatError(
            f"{cfg_path}: activation 'groupmax' splits the {d_sae} latents into k={k} equal groups; "
            f"k must divide num_latents"
        )
    return _ACTIVATION[activation]


def convert(weights: Path) -> Layout:
    """The `Layout` of a `sae.safetensors`, sized by the `cfg.json` beside it."""
    cfg_path = weights.parent / "cfg.json"
    cfg = read_json(cfg_path)
    require_keys(cfg, ["d_in", "k"], str(cfg_path))
    if cfg.get("skip_connection") or cfg.get("transcode"):
        raise SAEFormatError(f"{cfg_path}: skip_connection/transcode SAEs (transcoders) are not supported")
    d_in, k = int(cfg["d_in"]), int(cfg["k"])
    d_sae = int(cfg.get("num_latents") or 0) or int(cfg.get("expansion_factor") or 0) * d_in
    if d_sae <= 0:
        raise SAEFormatError(
            f"{cfg_path}: needs 'num_latents' or 'expansion_factor' to size the SAE; found {sorted(cfg)}"
        )
    activation = _activation(cfg, k, d_sae, cfg_path)
    records = safetensors_header(weights)
    names = {"W_enc": "encoder.weight", "b_enc": "encoder.bias", "W_dec": "W_dec", "b_dec": "b_dec"}
    tensors = {c: pick(records, n, c, weights) for c, n in names.items()}
    hookpoint = weights.parent.name
    match = re.fullmatch(r"layers\.(\d+)", hookpoint)
    layer = int(match.group(1)) if match else None
    meta = {"layer": layer, "hookpoint": hookpoint, "normalize_decoder": bool(cfg.get("normalize_decoder", True)),
            "multi_topk": bool(cfg.get("multi_topk", False)),
            "hook_name": None if layer is None else f"blocks.{layer}.hook_resid_post"}  # fmt: skip
    return Layout(d_in=d_in, d_sae=d_sae, activation=activation, tensors=tensors, transposed=frozenset({"W_enc"}),
                  k=k, apply_b_dec_to_input=True, layer=layer, cfg=cfg, meta=meta)  # fmt: skip


FORMAT = SAEFormat(weights=("sae.safetensors",), config="cfg.json", open=convert)
