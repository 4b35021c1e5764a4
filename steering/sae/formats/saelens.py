"""SAELens native: cfg.json + sae_weights.safetensors, already in canonical names and orientation.

Rules: standard -> relu, jumprelu -> jumprelu, topk -> topk (relu on the kept values); pre subtracts b_dec
first when cfg `apply_b_dec_to_input` (default true). `topk_raw` is this library's own (see `SAE.save`).
"""

from __future__ import annotations

from pathlib import Path

from steering.sae.core import TOPK_RULES
from steering.sae.layout import (
    Layout,
    SAEFormat,
    layer_from_hook,
    pick,
    read_json,
    require_keys,
)
from steering.sae.names import SAEFormatError
from steering.sae.storage import safetensors_header

_ACTIVATION = {
    "standard": "relu", "relu": "relu", "topk": "topk", "jumprelu": "jumprelu", "topk_raw": "topk_raw",
}  # fmt: skip


def convert(weights: Path) -> Layout:
    """The `Layout` of a SAELens `sae_weights.safetensors`, sized and ruled by the `cfg.json` beside it."""
    cfg_path = weights.parent / "cfg.json"
    cfg = read_json(cfg_path)
    require_keys(cfg, ["d_in", "d_sae"], str(cfg_path))
    architecture = cfg.get("architecture", "standard")
    if architecture not in _ACTIVATION:
        raise SAEFormatError(
            f"{cfg_path}: architecture {architecture!r} is not supported; supported: {sorted(_ACTIVATION)}"
        )
    if cfg.get("normalize_activations") not in (None, "none"):
        raise SAEFormatError(
            f"{cfg_path}: normalize_activations={cfg['normalize_activations']!r} is not supported "
            f"(encode would need the input rescaled); only 'none'"
        )
    activation = _ACTIVATION[architecture]
    k = cfg.get("k", (cfg.get("activation_fn_kwargs") or {}).get("k"))
    if activation in TOPK_RULES and k is None:
        raise SAEFormatError(
            f"{cfg_path}: architecture {architecture!r} needs 'k' or 'activation_fn_kwargs': {{'k': ...}}"
        )
    records = safetensors_header(weights)
    names = ["W_enc", "W_dec", "b_enc", "b_dec"] + (["threshold"] if activation == "jumprelu" else [])
    meta = dict(cfg.get("metadata") or {})
    hook_name = cfg.get("hook_name", meta.get("hook_name"))
    layer = cfg.get("hook_layer", meta.get("layer"))
    layer = layer_from_hook(hook_name) if layer is None else int(layer)
    meta.update(hook_name=hook_name, layer=layer, model_name=cfg.get("model_name", meta.get("model_name")))
    return Layout(
        d_in=int(cfg["d_in"]),
        d_sae=int(cfg["d_sae"]),
        activation=activation,
        tensors={n: pick(records, n, n, weights) for n in names},
        k=None if k is None else int(k),
        apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)),
        layer=layer,
        cfg=cfg,
        meta=meta,
    )


FORMAT = SAEFormat(weights=("sae_weights.safetensors",), config="cfg.json", open=convert)
