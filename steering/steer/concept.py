"""Concept vectors: a steering direction from examples of a concept, and what SAE features it is made of.

When no single SAE feature steers toward a concept, the difference of means of the residuals on text about it
and on neutral text often does (AxBench's DiffMean). Pure functions on tensors; reading the residuals is the
caller's (`inspection.concept_vector`). Formulas in docs/steering-math.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def diff_of_means(positive: Tensor, negative: Tensor) -> Tensor:
    """`v = mean_i p_i - mean_j n_j` over the rows of `positive` (N, d) and `negative` (M, d), in float32."""
    if positive.ndim != 2 or negative.ndim != 2 or positive.shape[1] != negative.shape[1]:
        raise ValueError(f"diff_of_means needs (N, d) and (M, d) residuals, got {tuple(positive.shape)} and "
                         f"{tuple(negative.shape)}")
    if not len(positive) or not len(negative):
        raise ValueError("diff_of_means needs at least one positive and one negative position")
    return positive.float().mean(0) - negative.float().mean(0)


def top_cosines(u: Tensor, decoder: Tensor, n: int = 10) -> list[tuple[int, float]]:
    """The `n` features whose decoder rows point most along u: `cos_i = d_i . u / (||d_i|| ||u||)`, highest first."""
    d = decoder.float()
    cos = (d @ u.float()) / (d.norm(dim=1).clamp_min(1e-12) * u.float().norm().clamp_min(1e-12))
    values, idx = cos.topk(min(n, len(cos)))
    return [(int(i), float(v)) for i, v in zip(idx, values)]


@dataclass(frozen=True)
class Decomposition:
    """u ~ sum_i c_i d_i / ||d_i|| over a few features, and the share of ||u||^2 that sum explains."""

    terms: tuple[tuple[int, float], ...]  # (feature, coefficient on its unit decoder row), largest |c| first
    explained: float  # 1 - ||u - sum||^2 / ||u||^2


def least_squares(u: Tensor, decoder: Tensor, k: int = 8) -> Decomposition:
    """A k-sparse least-squares decomposition of u over unit decoder rows, by orthogonal matching pursuit.

    With D the unit rows, r_0 = u and S empty, each step adds `argmax_i |D_i . r|` to S, solves
    `c = argmin ||u - D_S^T c||` and sets `r = u - D_S^T c`. Greedy, so not the best k-subset, but every
    coefficient is the exact least-squares one for the features chosen.
    """
    uf = u.float()
    units = decoder.float() / decoder.float().norm(dim=1, keepdim=True).clamp_min(1e-12)
    chosen: list[int] = []
    coef = torch.zeros(0)
    residual = uf.clone()
    for _ in range(min(k, len(units))):
        scores = (units @ residual).abs()
        if chosen:
            scores[chosen] = -1.0
        chosen.append(int(scores.argmax()))
        basis = units[chosen]  # (|S|, d)
        coef = torch.linalg.lstsq(basis.T, uf.unsqueeze(1)).solution.squeeze(1)
        residual = uf - basis.T @ coef
    explained = 1.0 - float(residual.pow(2).sum() / uf.pow(2).sum().clamp_min(1e-12))
    order = sorted(range(len(chosen)), key=lambda j: -abs(float(coef[j])))
    return Decomposition(tuple((chosen[j], float(coef[j])) for j in order), explained)
