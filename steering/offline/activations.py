"""Residual activations of a corpus at one layer, cached on disk for SAE training and metrics."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterable, Mapping, Sequence

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
def layer_activations(model, batch_windows: Sequence[Sequence[int]], layer: int | Sequence[int], pad_id: int):
    """Residual after decoder layer `layer` for each window (right-padded batch), as (T_i, d) float tensors;
    for several layers, a dict layer -> that list, from one forward pass up to the deepest."""
    from steering.model.padding import padded
    from steering.steer.hooks import StopForward, capture_residual

    layers = [layer] if isinstance(layer, int) else list(layer)
    ids, mask = padded(batch_windows, pad_id)
    with capture_residual(model, layers, stop_early=True) as cap:
        try:
            model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device), use_cache=False)
        except StopForward:
            pass
    out = {}
    for at in layers:
        hidden = cap[at]  # (B, T, d)
        out[at] = [hidden[row, : len(w)].float().cpu() for row, w in enumerate(batch_windows)]
    return out[layer] if isinstance(layer, int) else out


def cache_activations(model, tokenizer, docs: Iterable[dict], layer: int | Sequence[int], folder: Path | Mapping[int, Path],
                      ctx: int = 256, batch_size: int = 16, shard_tokens: int = 262_144, max_tokens: int | None = None,
                      progress: bool = True, shuffle: bool = False, compute_dtype: torch.dtype | None = None) -> dict:
    """Store layer activations of `docs` in fp16 shards under `folder` (resumable by shard).

    Files: `windows.safetensors` (all window ids, flattened, with offsets), `shard_NNNNN.safetensors`
    (`acts` (N, d) fp16, `window` (N,) int32, `pos` (N,) int32), `meta.json` (written when complete).
    Several layers (`layer` a list, `folder` a mapping layer -> folder) come from one forward pass up to the
    deepest: caching five candidate layers costs about what the deepest alone does. Windows are taken in a
    seeded random order with `max_tokens` or `shuffle`, so the first shards are already a fair sample.
    `compute_dtype` (bfloat16) runs the forward pass under autocast: matrix products in that type, the rest in
    the model's own; a cache is computed one way throughout (`caching.json` records it, and a resume checks it).
    """
    import contextlib

    from tqdm import tqdm

    from steering.offline.corpus import document_ids

    layers = [layer] if isinstance(layer, int) else list(layer)
    folders = {layers[0]: Path(folder)} if isinstance(layer, int) else {at: Path(folder[at]) for at in layers}
    for f in folders.values():
        f.mkdir(parents=True, exist_ok=True)
    metas = {at: f / "meta.json" for at, f in folders.items()}
    if all(m.exists() for m in metas.values()):
        found = {at: json.loads(m.read_text()) for at, m in metas.items()}
        return found[layer] if isinstance(layer, int) else found
    compute = {"compute_dtype": str(compute_dtype or "model").replace("torch.", "")}
    for f in folders.values():
        record = f / "caching.json"
        if record.exists() and json.loads(record.read_text()) != compute:
            raise ValueError(f"compute_dtype: the cache in {f.name} was begun with {record.read_text().strip()}, not "
                             f"{compute}; resume it the same way, or cache into a new folder")
        record.write_text(json.dumps(compute))
    autocast = (lambda: torch.autocast(model.device.type, dtype=compute_dtype)) if compute_dtype else contextlib.nullcontext
    first = folders[layers[0]]
    wins_path = first / "windows.safetensors"
    if wins_path.exists():
        w = load_file(str(wins_path))
        flat, offsets = w["ids"].tolist(), w["offsets"].tolist()
        wins = [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
    else:
        wins = windows((document_ids(tokenizer, d) for d in docs), ctx)
        if max_tokens is not None or shuffle:  # keep a budget: take windows in a seeded random order
            g = torch.Generator().manual_seed(0)
            order = torch.randperm(len(wins), generator=g).tolist()
            kept, total = [], 0
            for i in order:
                if max_tokens is not None and total >= max_tokens:
                    break
                kept.append(wins[i])
                total += len(wins[i]) - 1
            wins = kept
        offsets = [0]
        for w in wins:
            offsets.append(offsets[-1] + len(w))
        save_file({"ids": torch.tensor([t for w in wins for t in w], dtype=torch.int32),
                   "offsets": torch.tensor(offsets, dtype=torch.int64)}, str(wins_path))
    for f in folders.values():
        if f != first and not (f / "windows.safetensors").exists():
            shutil.copyfile(wins_path, f / "windows.safetensors")
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
    name = "layer " + ",".join(map(str, layers))
    bar = tqdm(total=total, desc=f"caching {name}", unit="tok", disable=not progress, smoothing=0.05)
    d = None
    for s, (lo, hi) in enumerate(shards):
        paths = {at: f / f"shard_{s:05d}.safetensors" for at, f in folders.items()}
        if all(p.exists() for p in paths.values()):
            bar.update(sum(len(w) - 1 for w in wins[lo:hi]))
            continue
        # batch windows of similar length together to waste little padding
        order = sorted(range(lo, hi), key=lambda i: len(wins[i]))
        acts: dict[int, list[Tensor]] = {at: [] for at in layers}
        win_idx, pos = [], []
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            with autocast():
                got = layer_activations(model, [wins[i] for i in idx], layers, pad)
            for row, i in enumerate(idx):
                n = len(wins[i])
                for at in layers:
                    acts[at].append(got[at][row][1:].half())
                win_idx.append(torch.full((n - 1,), i, dtype=torch.int32))
                pos.append(torch.arange(1, n, dtype=torch.int32))
                bar.update(n - 1)
        for at, path in paths.items():
            tmp = path.with_suffix(".tmp")
            save_file({"acts": torch.cat(acts[at]), "window": torch.cat(win_idx), "pos": torch.cat(pos)}, str(tmp))
            os.replace(tmp, path)
        d = int(acts[layers[0]][0].shape[-1])
    bar.close()
    out = {}
    for at, f in folders.items():
        meta = {"layer": at, "ctx": ctx, "windows": len(wins), "tokens": total, "shards": len(shards), **compute,
                "d": d if d is not None else int(load_file(str(f / "shard_00000.safetensors"))["acts"].shape[-1])}
        metas[at].write_text(json.dumps(meta, indent=2))
        out[at] = meta
    return out[layer] if isinstance(layer, int) else out


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
