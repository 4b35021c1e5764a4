"""Padding token-id rows to one width, left for generating, right for reading residuals."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def padded(seqs: Sequence[Sequence[int]], pad: int, left: bool = False) -> tuple[Tensor, Tensor]:
    """Token ids (B, T) padded to one width, and the attention mask (B, T) marking the real tokens.

    Right padding keeps each sequence's positions the ones it has alone (reading residuals);
    left padding puts every sequence's last token in the last column (generating).
    """
    width = max(len(x) for x in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)  # (B, T)
    mask = torch.zeros_like(ids)
    for row, x in enumerate(seqs):
        cols = slice(width - len(x), width) if left else slice(0, len(x))
        ids[row, cols] = torch.as_tensor(x)
        mask[row, cols] = 1
    return ids, mask
