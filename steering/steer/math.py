"""Steering edits as pure functions on residual vectors.

Definitions follow docs/steering-math.md: h is the residual (resid_post) at one position, u a unit
decoder direction, d the raw decoder direction, s a strength, θ an angle in degrees, a an SAE
activation. Every function works on any leading shape (..., d) and returns a new tensor in h's dtype;
the arithmetic runs in float32 so bf16 models get the same edit as fp32 ones.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from steering.config import MODES  # noqa: F401  (re-exported: the modes these functions implement)

_DEGENERATE = 1e-4
"""A vector below this fraction of ||h|| is float32 noise: h parallel to u (angular), h + s u = 0 (norm_add)."""


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


def norm_add(h: Tensor, u: Tensor, s: float) -> Tensor:
    """`h' = (h + s u) * ||h|| / ||h + s u||`: add, then rescale to the residual's own norm, so later layers see
    the norm they expect. Where `h + s u` vanishes (`||h + s u|| <= 1e-4 ||h||`, float32 noise) there is no
    direction to keep and h is returned unchanged."""
    hf = h.float()
    moved = hf + s * u.float()
    size, own = moved.norm(dim=-1, keepdim=True), hf.norm(dim=-1, keepdim=True)
    scaled = moved * (own / size.clamp_min(torch.finfo(torch.float32).tiny))
    return torch.where(size > _DEGENERATE * own, scaled, hf).to(h.dtype)


def angular(h: Tensor, u: Tensor, degrees: float) -> Tensor:
    """Rotate h inside the plane of h and u until its angle to u is θ = `degrees`, keeping ||h||:

        `h' = ||h|| (cos θ u + sin θ v)`,  `v = (h - (h . u) u) / ||h - (h . u) u||`,

    v being the plane's unit vector orthogonal to u on h's side (Vu & Nguyen 2025's angular steering with
    the plane of h and u; θ is the target angle, as theirs). θ = 0 points h along u, θ = 90 removes the
    component along u (a norm-keeping `clamp` to 0), θ = 180 points h against u; a residual already at θ is
    unchanged. When h is parallel to u (no plane) v is a fixed unit vector orthogonal to u: the basis vector
    e_k with the smallest |u_k|, minus its component along u. h = 0 stays 0.
    """
    hf, uf = h.float(), u.float()
    proj = (hf @ uf).unsqueeze(-1)
    perp = hf - proj * uf
    size, perp_size = hf.norm(dim=-1, keepdim=True), perp.norm(dim=-1, keepdim=True)
    v = torch.where(perp_size > _DEGENERATE * size, perp / perp_size.clamp_min(torch.finfo(torch.float32).tiny),
                    _fallback_normal(uf))
    theta = math.radians(degrees)
    return (size * (math.cos(theta) * uf + math.sin(theta) * v)).to(h.dtype)


def angular_adaptive(h: Tensor, u: Tensor, degrees: float) -> Tensor:
    """`h' = angular(h, u, θ)` where `h . u > 0`, else `h` (the paper's adaptive variant: only positions that
    already lean toward the feature are rotated)."""
    return masked(h, angular(h, u, degrees), (h.float() @ u.float()) > 0)


def cap(h: Tensor, u: Tensor, s: float) -> Tensor:
    """`h' = h + max(0, s - h . u) u`: the component along u is raised to the floor s and never lowered
    (AxBench's min-clamp; a one-sided `clamp`)."""
    hf, uf = h.float(), u.float()
    return (hf + (s - hf @ uf).clamp_min(0).unsqueeze(-1) * uf).to(h.dtype)


def conditional(h: Tensor, edited: Tensor, a: Tensor, above: float) -> Tensor:
    """`h' = edited` where `a > above`, else `h`: an edit kept only where the condition feature's activation a
    (shape (...,)) passes the threshold (CAST-like conditional steering)."""
    return masked(h, edited, a > above)


def masked(h: Tensor, edited: Tensor, mask: Tensor | None) -> Tensor:
    """Keep `edited` where mask is True and h elsewhere; mask broadcasts over the last dimension."""
    if mask is None:
        return edited
    return torch.where(mask.unsqueeze(-1), edited, h)


def _fallback_normal(u: Tensor) -> Tensor:
    """A unit vector orthogonal to unit `u`, the same for every h: e_k - u_k u with k = argmin |u_k|."""
    k = int(u.abs().argmin())
    e = -u[k] * u
    e[k] += 1
    return e / e.norm()
