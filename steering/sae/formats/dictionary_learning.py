"""dictionary_learning BatchTopK (ae.pt + config.json); at inference a global-threshold rule -> jumprelu.

`f = relu((x - b_dec) @ encoder.weight.T + encoder.bias)`, kept where `f > threshold` (one global scalar).
"""

from __future__ import annotations

from pathlib import Path

from steering.sae.layout import Layout, SAEFormat, pick, read_json, require_keys
from steering.sae.names import SAEFormatError
from steering.sae.storage import torch_header

_NAMES = {
    "W_enc": "encoder.weight",  # (F, d): canonical transposed
    "W_dec": "decoder.weight",  # (d, F): canonical transposed
    "b_enc": "encoder.bias",
    "b_dec": "b_dec",
    "threshold": "threshold",  # one global scalar
}


def convert(weights: Path) -> Layout:
    """The `Layout` of an `ae.pt`, sized by the `config.json` beside it."""
    cfg_path = weights.parent / "config.json"
    cfg = read_json(cfg_path)
    if "trainer" not in cfg:
        raise SAEFormatError(f"{cfg_path}: missing the 'trainer' section; found keys {sorted(cfg)}")
    trainer = cfg["trainer"]
    require_keys(trainer, ["activation_dim", "dict_size", "k"], f"{cfg_path} ['trainer']")
    dict_class = trainer.get("dict_class", "BatchTopKSAE")
    if dict_class != "BatchTopKSAE":
        raise SAEFormatError(f"{cfg_path}: dict_class {dict_class!r} is not supported; supported: BatchTopKSAE")
    records = torch_header(weights)
    tensors = {c: pick(records, n, c, weights) for c, n in _NAMES.items()}
    k = int(trainer["k"])
    if "k" in records and records["k"].shape == () and int(records["k"].read_all_small()) != k:
        raise SAEFormatError(
            f"{weights}: buffer k={int(records['k'].read_all_small())} disagrees with {cfg_path} trainer.k={k}"
        )
    layer = trainer.get("layer")
    layer = None if layer is None else int(layer)
    meta = {
        "layer": layer,
        "hook_name": None if layer is None else f"blocks.{layer}.hook_resid_post",
        "model_name": trainer.get("lm_name"),
        "k": k,  # BatchTopK's training k; inference uses the threshold
        "dict_class": dict_class,
    }
    return Layout(
        d_in=int(trainer["activation_dim"]),
        d_sae=int(trainer["dict_size"]),
        activation="jumprelu",
        tensors=tensors,
        transposed=frozenset({"W_enc", "W_dec"}),
        apply_b_dec_to_input=True,
        layer=layer,
        cfg=cfg,
        meta=meta,
        scalar_ok=frozenset({"threshold"}),
    )


FORMAT = SAEFormat(weights=("ae.pt",), config="config.json", open=convert)
