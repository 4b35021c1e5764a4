"""Steering edits as pure functions on residual vectors.

Definitions follow docs/steering-math.md: h is the residual (resid_post) at one
position, u a unit decoder direction, d the raw decoder direction, s a strength.
Every function works on any leading shape (..., d) and returns a new tensor in h's dtype;
the arithmetic runs in float32 so bf16 models get the same edit as fp32 ones.
"""

from __future__ import annotations

import torch
from torch import Tensor

from steering.config import MODES  # noqa: F401  (re-exported: the modes these functions implement)


def add(h: Tensor, u: Tensor, s: float) -> Tensor:
    """`h' = h + s * u`."""
    return (h.float() + s * u.float()).to(h.dtype)


def clamp(h: Tensor, u: Tensor, s: float) -> Tensor:
    """`h' = h - (h . u) u + s u`: the component along u becomes exactly s, the rest is unchanged."""
    hf, uf = h.float(), u.float()
    proj = hf @ uf  # (...,)
    return (hf + (s - proj).unsqueeze(-1) * uf).to(h.dtype)


def pin(h: Tensor, d: Tensor, a: Tensor, t: float) -> Tensor:
    """`h' = h + (t - a) * d`, so the SAE reads the feature as t (a = its activation on h); t = 0 ablates."""
    return (h.float() + (t - a.float()).unsqueeze(-1) * d.float()).to(h.dtype)


def masked(h: Tensor, edited: Tensor, mask: Tensor | None) -> Tensor:
    """Keep `edited` where mask is True and h elsewhere; mask broadcasts over the last dimension."""
    if mask is None:
        return edited
    return torch.where(mask.unsqueeze(-1), edited, h)
