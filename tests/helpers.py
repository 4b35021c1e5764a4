"""Small SAE files the tests write themselves (never shipped as real features)."""

from __future__ import annotations

from pathlib import Path

import torch

from steering.sae import SAE


def random_sae(d: int, n_features: int, activation: str = "jumprelu", seed: int = 0, layer: int | None = None, tied: bool = True) -> SAE:
    """Unit-norm decoder rows; with `tied`, W_enc = W_dec^T so w_i . d_i = 1 (pin sets features exactly)."""
    g = torch.Generator().manual_seed(seed)
    W_dec = torch.randn(n_features, d, generator=g)
    W_dec = W_dec / W_dec.norm(dim=1, keepdim=True)
    W_enc = W_dec.T.clone() if tied else torch.randn(d, n_features, generator=g) / d**0.5
    return SAE(
        W_enc=W_enc.contiguous(),
        W_dec=W_dec,
        b_enc=torch.randn(n_features, generator=g) * 0.1,
        b_dec=torch.randn(d, generator=g) * 0.05,
        activation=activation,
        threshold=torch.full((n_features,), 0.05) if activation == "jumprelu" else None,
        k=8 if activation == "topk" else None,
        meta={"layer": layer, "hook_name": None if layer is None else f"blocks.{layer}.hook_resid_post"},
    )


def write_sae(folder: Path, sae: SAE) -> Path:
    """Save in the project's own format (SAELens-native layout) in fp32 so tests compare exactly."""
    sae.save(folder, dtype=torch.float32)
    return folder
