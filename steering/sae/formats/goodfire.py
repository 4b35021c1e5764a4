"""Goodfire: a `.pth`/`.pt` state dict, ReLU encoder, no b_dec on the input, no config.

`encoder_linear.weight` (F, d), `encoder_linear.bias` (F), `decoder_linear.weight` (d, F),
`decoder_linear.bias` (d): `f = relu(x @ encoder_linear.weight.T + encoder_linear.bias)`,
`decode = f @ decoder_linear.weight.T + decoder_linear.bias`. Canonical b_dec is the decoder bias, with
apply_b_dec_to_input False. The layer is taken from a `-l{N}` / `layer{N}` in the file or folder name.
"""

from __future__ import annotations

from pathlib import Path

from steering.sae.layout import Layout, SAEFormat, first_int, pick, shape_2d
from steering.sae.storage import torch_header


def convert(weights: Path) -> Layout:
    """The `Layout` of a Goodfire state dict; sizes from the encoder weight."""
    records = torch_header(weights)
    names = {"W_enc": "encoder_linear.weight", "b_enc": "encoder_linear.bias",
             "W_dec": "decoder_linear.weight", "b_dec": "decoder_linear.bias"}  # fmt: skip
    tensors = {c: pick(records, n, c, weights) for c, n in names.items()}
    d_sae, d_in = shape_2d(tensors["W_enc"], "encoder weight (d_sae, d_in)")
    layer = first_int(r"(?:^|[-_.])(?:l|layer)_?(\d+)(?=$|[-_.])", [weights.stem, weights.parent.name])
    return Layout(d_in=d_in, d_sae=d_sae, activation="relu", tensors=tensors,
                  transposed=frozenset({"W_enc", "W_dec"}), apply_b_dec_to_input=False, layer=layer,
                  meta={"layer": layer})  # fmt: skip


FORMAT = SAEFormat(weights=("*.pth", "*.pt"), exclude=("ae.pt", "*.sae.pt"), open=convert, fallback=True)
