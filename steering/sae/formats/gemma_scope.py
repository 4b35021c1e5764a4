"""Gemma Scope JumpReLU: params.npz (or params.safetensors) with canonical names and orientation, no config.

`pre = x @ W_enc + b_enc; f = relu(pre) * (pre > threshold)`, threshold per feature, NO b_dec subtraction
(apply_b_dec_to_input False). Sizes come from W_enc (d, F); layer and L0 from the release's folder names
(`layer_{L}/width_{W}/average_l0_{N}`), the site (res/mlp/att) from a `gemma-scope-...-res` repo or folder
name; hook_name is set only for residual-stream (res) SAEs. An uncompressed .npz is read lazily; a
compressed one loads a whole member for each read (see `npz_header`).
"""

from __future__ import annotations

import re
from pathlib import Path

from steering.sae.layout import Layout, SAEFormat, first_int, pick, shape_2d
from steering.sae.storage import npz_header, safetensors_header

_NAMES = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")


def convert(weights: Path) -> Layout:
    """The `Layout` of a `params.npz` or `params.safetensors`; sizes from W_enc, the rest from folder names."""
    records = npz_header(weights) if weights.suffix == ".npz" else safetensors_header(weights)
    tensors = {n: pick(records, n, n, weights) for n in _NAMES}
    d_in, d_sae = shape_2d(tensors["W_enc"], "W_enc (d_in, d_sae)")
    parts = [p.name for p in (weights.parent, *weights.parent.parents)]
    layer = first_int(r"^layer_(\d+)$", parts)
    site = next((m.group(1) for p in parts if (m := re.search(r"gemma-scope-.*-(res|mlp|att)(?:$|[-_])", p))), None)
    meta = {
        "layer": layer,
        "site": site,  # from the release name: res (residual stream), mlp or att outputs; None when unknown
        "hook_name": f"blocks.{layer}.hook_resid_post" if layer is not None and site == "res" else None,
        "average_l0": first_int(r"^average_l0_(\d+)$", parts),
    }
    return Layout(d_in=d_in, d_sae=d_sae, activation="jumprelu", tensors=tensors, apply_b_dec_to_input=False,
                  layer=layer, meta=meta)  # fmt: skip


FORMAT = SAEFormat(weights=("params.safetensors", "params.npz"), open=convert)
