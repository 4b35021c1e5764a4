"""Find a model's decoder layers, wherever its architecture keeps them."""

from __future__ import annotations

import torch

DECODER_LAYER_PATHS = (
    "model.layers",  # Llama, Qwen, Gemma, Mistral, Phi-3, OLMo
    "model.language_model.layers",  # multimodal wrappers (Gemma 3, Llava)
    "language_model.model.layers",
    "model.decoder.layers",  # OPT
    "transformer.h",  # GPT-2, GPT-J, Falcon, Bloom
    "transformer.blocks",  # MPT
    "gpt_neox.layers",  # Pythia, GPT-NeoX
    "layers",  # bare decoders (LlamaModel)
    "h",  # bare GPT2Model
)

"""Attribute paths tried in order; the first that is a non-empty ModuleList wins."""


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The transformer blocks in order, wherever this architecture keeps them."""
    for path in DECODER_LAYER_PATHS:
        found = _get_path(model, path)
        if isinstance(found, torch.nn.ModuleList) and len(found) > 0:
            return found
    raise ValueError(
        f"Cannot find the decoder layers of {type(model).__name__}: tried {', '.join(DECODER_LAYER_PATHS)}. "
        f"Add this architecture's path to steering.model.layers.DECODER_LAYER_PATHS."
    )


def _get_path(root: object, path: str) -> object | None:
    obj = root
    for attr in path.split("."):
        obj = getattr(obj, attr, None)
        if obj is None:
            return None
    return obj


def num_layers(model: torch.nn.Module) -> int:
    return len(decoder_layers(model))
