"""The tensor codec of the engine API (`engine_api`), shared with its client (`steering.backends.remote`):
a tensor travels as base64 float32 (little-endian) with its shape."""

from __future__ import annotations

import base64

import torch


def encode_tensor(t: torch.Tensor) -> dict:
    t = t.detach().float().contiguous().cpu()
    return {"shape": list(t.shape), "data": base64.b64encode(t.numpy().astype("<f4").tobytes()).decode()}


def decode_tensor(d: dict) -> torch.Tensor:
    raw = bytearray(base64.b64decode(d["data"]))
    return torch.frombuffer(raw, dtype=torch.float32).reshape(d["shape"]).clone()
