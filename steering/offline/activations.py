"""Residual activations of a corpus at one layer, cached on disk for SAE training and metrics."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor


def windows(token_lists: Iterable[Sequence[int]], ctx: int, min_len: int = 16) -> list[list[int]]:
    """Cut each document's ids into windows of at most `ctx` tokens; drop tails shorter than `min_len`."""
    out = []
    for ids in token_lists:
        ids = list(ids)
        for start in range(0, len(ids), ctx):
            piece = ids[start : start + ctx]
            if len(piece) >= min_len:
                out.append(piece)
    return out


@torch.inference_mode()
def layer_activations(model, batch_windows: Sequence[Sequence[int]], layer: int, pad_id: int) -> list[Tensor]:
    """Residual after decoder layer `layer` for each window (right-padded batch), as (T_i, d) float tensors."""
    from steering.model.padding import padded
    from steering.steer.hooks import StopForward, capture_residual

    ids, mask = padded(batch_windows, pad_id)
    with capture_residual(model, layer, stop_early=True) as cap:
        try:
            model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device), use_cache=False)
        except StopForward:
            pass
    hidden = cap[layer]  # (B, T, d)
    return [hidden[row, : len(w)].float().cpu() for row, w in enumerate(batch_windows)]


def cache_activations(model, tokenizer, docs: Iterable[dict], layer: int, folder: Path, ctx: int = 256,
                      batch_size: int = 16, shard_tokens: int = 262_144, max_tokens: int | None = None,
                      progress: bool = True) -> dict:
    """Store layer activations of `docs` in fp16 shards under `folder` (resumable by shard).

    Files: `windows.safetensors` (all window ids, flattened, with offsets), `shard_NNNNN.safetensors`
    (`acts` (N, d) fp16, `window` (N,) int32, `pos` (N,) int32), `meta.json` (written when complete).
    """
    from tqdm import tqdm

    from steering.offline.corpus import document_ids

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta_path = folder / "meta.json"
    if meta_path.exists():
        return json.loads(meta_path.read_text())
    wins_path = folder / "windows.safetensors"
    if wins_path.exists():
        w = load_file(str(wins_path))
        flat, offsets = w["ids"].tolist(), w["offsets"].tolist()
        wins = [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
    else:
        wins = windows((document_ids(tokenizer, d) for d in docs), ctx)
        if max_tokens is not None:  # keep a budget: take windows in a seeded random order
            g = torch.Generator().manual_seed(0)
            order = torch.randperm(len(wins), generator=g).tolist()
            kept, total = [], 0
            for i in order:
                if total >= max_tokens:
                    break
                kept.append(wins[i])
                total += len(wins[i]) - 1
            wins = kept
        offsets = [0]
        for w in wins:
            offsets.append(offsets[-1] + len(w))
        save_file({"ids": torch.tensor([t for w in wins for t in w], dtype=torch.int32),
                   "offsets": torch.tensor(offsets, dtype=torch.int64)}, str(wins_path))
    # shards: consecutive windows adding up to ~shard_tokens stored positions
    shards: list[tuple[int, int]] = []
    start, size = 0, 0
    for i, w in enumerate(wins):
        size += len(w) - 1
        if size >= shard_tokens:
            shards.append((start, i + 1))
            start, size = i + 1, 0
    if start < len(wins):
        shards.append((start, len(wins)))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total = sum(len(w) - 1 for w in wins)
    bar = tqdm(total=total, desc=f"caching layer {layer}", unit="tok", disable=not progress, smoothing=0.05)
    for s, (lo, hi) in enumerate(shards):
        path = folder / f"shard_{s:05d}.safetensors"
        if path.exists():
            bar.update(sum(len(w) - 1 for w in wins[lo:hi]))
            continue
        # batch windows of similar length together to waste little padding
        order = sorted(range(lo, hi), key=lambda i: len(wins[i]))
        acts, win_idx, pos = [], [], []
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            for i, h in zip(idx, layer_activations(model, [wins[i] for i in idx], layer, pad)):
                acts.append(h[1:].half())
                win_idx.append(torch.full((len(h) - 1,), i, dtype=torch.int32))
                pos.append(torch.arange(1, len(h), dtype=torch.int32))
                bar.update(len(h) - 1)
        tmp = path.with_suffix(".tmp")
        save_file({"acts": torch.cat(acts), "window": torch.cat(win_idx), "pos": torch.cat(pos)}, str(tmp))
        os.replace(tmp, path)
    bar.close()
    meta = {"layer": layer, "ctx": ctx, "windows": len(wins), "tokens": total, "shards": len(shards),
            "d": int(acts[0].shape[-1]) if shards and acts else None}
    if meta["d"] is None:
        meta["d"] = int(load_file(str(folder / "shard_00000.safetensors"))["acts"].shape[-1])
    meta_path.write_text(json.dumps(meta, indent=2))
    return meta


def load_cache(folder: Path | str, max_tokens: int | None = None) -> dict[str, Tensor]:
    """All shards of a cache, concatenated: `acts` (N, d) fp16, `window` (N,), `pos` (N,)."""
    folder = Path(folder)
    parts: dict[str, list[Tensor]] = {"acts": [], "window": [], "pos": []}
    n = 0
    for path in sorted(folder.glob("shard_*.safetensors")):
        t = load_file(str(path))
        for k in parts:
            parts[k].append(t[k])
        n += len(t["acts"])
        if max_tokens is not None and n >= max_tokens:
            break
    out = {k: torch.cat(v) for k, v in parts.items()}
    if max_tokens is not None:
        out = {k: v[:max_tokens] for k, v in out.items()}
    return out


def load_windows(folder: Path | str) -> list[list[int]]:
    w = load_file(str(Path(folder) / "windows.safetensors"))
    flat, offsets = w["ids"].tolist(), w["offsets"].tolist()
    return [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def default_cache_dir(model_name: str, layer: int, corpus: Path, split: str) -> Path:
    from steering.model.embedded import cache_root

    corpus_id = hashlib.sha256(str(Path(corpus).resolve()).encode()).hexdigest()[:8]
    slug = model_name.replace(":", "_").replace("/", "_")
    return cache_root() / "activations" / slug / f"layer_{layer}" / f"{corpus_id}_{split}"
