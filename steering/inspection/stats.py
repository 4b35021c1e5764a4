"""Feature statistics as pure functions of codes, the (N, F) SAE activations at each prompt's last
token (definitions in docs/steering-math.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor


@dataclass(frozen=True)
class FeatureActivation:
    index: int
    value: float


@dataclass(frozen=True)
class DifferentialFeature:
    """`score = mean_pos - mean_neg`; fire rates are fractions of prompts where the feature is non-zero."""

    index: int
    score: float
    mean_pos: float
    mean_neg: float
    fire_pos: float
    fire_neg: float


def top_features(code: Tensor, n: int = 10) -> list[FeatureActivation]:
    """The n largest non-zero entries of one code (F,), descending."""
    values, indices = torch.sort(code, descending=True)
    keep = values != 0
    return [FeatureActivation(int(i), float(v)) for v, i in zip(values[keep][:n], indices[keep][:n])]


def differential_features(codes_pos: Tensor, codes_neg: Tensor, n: int = 20) -> list[DifferentialFeature]:
    """Features ranked by `mean_P(code) - mean_N(code)`, descending, with both means and fire rates."""
    if codes_pos.ndim != 2 or codes_neg.ndim != 2:
        raise ValueError("codes must be (prompts, features) matrices")
    if codes_pos.shape[1] != codes_neg.shape[1]:
        raise ValueError(
            f"the two prompt sets were encoded with different SAE widths ({codes_pos.shape[1]} vs "
            f"{codes_neg.shape[1]} features): encode both with the same SAE"
        )
    if codes_pos.shape[0] == 0 or codes_neg.shape[0] == 0:
        raise ValueError("each prompt set needs at least one prompt")
    mean_pos, mean_neg = codes_pos.float().mean(0), codes_neg.float().mean(0)  # (F,)
    fire_pos, fire_neg = fire_rate(codes_pos), fire_rate(codes_neg)
    score = mean_pos - mean_neg
    order = torch.argsort(score, descending=True)[:n]
    return [
        DifferentialFeature(int(i), float(score[i]), float(mean_pos[i]), float(mean_neg[i]), float(fire_pos[i]), float(fire_neg[i]))
        for i in order
    ]


def scan_prompts_for_feature(codes: Tensor, index: int) -> Tensor:
    """Feature `index`'s activation on every prompt (N,), 0 where it did not fire."""
    _check_index(codes, index)
    return codes[:, index].clone()


def fire_rate(codes: Tensor, index: int | None = None) -> Tensor | float:
    """Fraction of prompts where a feature is non-zero: one feature's as a float, or all (F,)."""
    rates = (codes != 0).float().mean(0)  # (F,)
    if index is None:
        return rates
    _check_index(codes, index)
    return float(rates[index])


def format_ranking(rows: Sequence[FeatureActivation | DifferentialFeature], labels: Mapping[int, str] | None = None) -> str:
    """A plain-text table of a ranking, for consoles and notebooks."""
    labels = labels or {}
    if not rows:
        return "(no features)"
    if isinstance(rows[0], DifferentialFeature):
        lines = [f"{'rank':>4} {'feature':>8} {'score':>9} {'mean+':>9} {'mean-':>9} {'fire+':>6} {'fire-':>6}  label"]
        lines += [
            f"{r + 1:>4} {x.index:>8} {x.score:>9.3f} {x.mean_pos:>9.3f} {x.mean_neg:>9.3f} "
            f"{x.fire_pos:>6.0%} {x.fire_neg:>6.0%}  {labels.get(x.index, '')}"
            for r, x in enumerate(rows)
        ]
    else:
        lines = [f"{'rank':>4} {'feature':>8} {'activation':>11}  label"]
        lines += [f"{r + 1:>4} {x.index:>8} {x.value:>11.3f}  {labels.get(x.index, '')}" for r, x in enumerate(rows)]
    return "\n".join(line.rstrip() for line in lines)


def _check_index(codes: Tensor, index: int) -> None:
    if not 0 <= index < codes.shape[1]:
        raise IndexError(f"feature index {index} is outside this SAE (0..{codes.shape[1] - 1})")
