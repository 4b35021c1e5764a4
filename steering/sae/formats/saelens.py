"""SAELens native: cfg.json + sae_weights.safetensors, already in canonical names and orientation.

As sae-lens 6 computes them (sae_lens/saes/{standard,topk,jumprelu}_sae.py), with
`pre = (x - b_dec [if cfg apply_b_dec_to_input, default true]) @ W_enc + b_enc`:
- standard -> relu(pre); jumprelu -> relu(pre) * (pre > threshold);
- topk -> keep the k largest of pre, relu on the kept values. With `rescale_acts_by_decoder_norm: true` (how
  `TopKTrainingSAE.save_model` writes training checkpoints) encode ranks `pre_i * |W_dec[i]|` and decode divides
  the codes by `|W_dec[i]|` again: read with the norms folded in, as `save_inference_model` would write it.
  sae-lens reads that key only for topk (other configs drop it), and so does this reader.
`batchtopk` (and `matryoshka_batchtopk`) files are training checkpoints whose encode depends on the whole batch;
sae-lens cannot load them for inference either, so they are refused: `save_inference_model` writes them as
jumprelu with the learned threshold. `topk_raw` and `groupmax` are this library's own (see `SAE.save`).
"""

from __future__ import annotations

from pathlib import Path

from steering.sae.core import SELECTION_RULES
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
    "groupmax": "groupmax",
}  # fmt: skip
_TRAINING_ONLY = ("batchtopk", "matryoshka_batchtopk")


def _activation(cfg: dict, cfg_path: Path) -> str:
    """The canonical rule for cfg `architecture`, or a refusal naming it and what is supported."""
    architecture = cfg.get("architecture", "standard")
    if architecture in _TRAINING_ONLY:
        raise SAEFormatError(
            f"{cfg_path}: architecture {architecture!r} is a sae-lens training checkpoint (save_model): its "
            f"BatchTopK encode depends on the whole batch. Write it with sae-lens's save_inference_model, which "
            f"saves it as 'jumprelu' with the learned threshold, and read that"
        )
    if architecture not in _ACTIVATION:
        raise SAEFormatError(
            f"{cfg_path}: sae-lens architecture {architecture!r} is not supported; supported: {sorted(_ACTIVATION)}"
        )
    return _ACTIVATION[architecture]


def convert(weights: Path) -> Layout:
    """The `Layout` of a SAELens `sae_weights.safetensors`, sized and ruled by the `cfg.json` beside it."""
    cfg_path = weights.parent / "cfg.json"
    cfg = read_json(cfg_path)
    require_keys(cfg, ["d_in", "d_sae"], str(cfg_path))
    activation = _activation(cfg, cfg_path)
    if cfg.get("normalize_activations") not in (None, "none"):
        raise SAEFormatError(
            f"{cfg_path}: normalize_activations={cfg['normalize_activations']!r} is not supported "
            f"(encode would need the input rescaled); only 'none'"
        )
    k = cfg.get("k", (cfg.get("activation_fn_kwargs") or {}).get("k"))
    if activation in SELECTION_RULES and k is None:
        raise SAEFormatError(
            f"{cfg_path}: architecture {cfg.get('architecture')!r} needs 'k' or 'activation_fn_kwargs': {{'k': ...}}"
        )
    rescale = activation == "topk" and bool(cfg.get("rescale_acts_by_decoder_norm", False))
    records = safetensors_header(weights)
    names = ["W_enc", "W_dec", "b_enc", "b_dec"] + (["threshold"] if activation == "jumprelu" else [])
    meta = dict(cfg.get("metadata") or {})
    hook_name = cfg.get("hook_name", meta.get("hook_name"))
    layer = cfg.get("hook_layer", meta.get("layer"))
    layer = layer_from_hook(hook_name) if layer is None else int(layer)
    meta.update(hook_name=hook_name, layer=layer, model_name=cfg.get("model_name", meta.get("model_name")),
                decoder_norms_folded=rescale)  # fmt: skip
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
        fold_decoder_norms=rescale,
    )


FORMAT = SAEFormat(weights=("sae_weights.safetensors",), config="cfg.json", open=convert)
