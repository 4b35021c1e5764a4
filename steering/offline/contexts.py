"""What each SAE feature means: its top-activating contexts and an automatic label, computed once.

    python -m steering.offline.contexts saes/smollm2-135m-instruct/layer_15 [--tokens 400000]

Scans `--tokens` positions of the SAE's training activation cache, keeps the `--top` strongest
activations of every feature with a few tokens of context, and writes `feature_contexts.json.gz`
next to the SAE. The app reads it with

    fc = load_feature_contexts("saes/smollm2-135m-instruct/layer_15")
    fc.label(123)        # "ocean / sea / waves"
    fc.contexts(123)     # [Context(before=..., token=..., after=..., activation=...), ...]
    fc.info(123)         # fire rate, max activation, top activating tokens, tokens it promotes

**Labels** are automatic: the words the feature fires on most in its top `--label-pool` activations
(weighted by activation), joined by " / ". When those are only punctuation or template tokens, the
label falls back to the tokens the decoder direction promotes most through the unembedding
("logit lens": `W_U (g * u_i)`, g the final norm's weight), marked with "→". Dead features are
labelled "(dead)"."""

from __future__ import annotations

import argparse
import gzip
import json
import re
from collections import Counter
from pathlib import Path

import torch
from torch import Tensor

from steering.inspection.labels import FILENAME

_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")


def _word(piece: str) -> str | None:
    m = _WORD.search(piece)
    return m.group(0).lower() if m and len(m.group(0)) > 1 else None


def auto_label(top_tokens: list[tuple[str, float]], promotes: list[str], n: int = 3) -> str:
    """Up to `n` distinct words from the activating tokens (weight order); else the promoted tokens."""
    words: list[str] = []
    for tok, _ in top_tokens:
        w = _word(tok)
        if w and w not in words:
            words.append(w)
        if len(words) == n:
            break
    if words:
        return " / ".join(words)
    promoted = [w for w in (_word(t) for t in promotes) if w]
    if promoted:
        return "→ " + " / ".join(dict.fromkeys(promoted[:n]))
    shown = [t.strip() or repr(t) for t, _ in top_tokens[:n]]
    return " / ".join(shown) if shown else "(dead)"


@torch.inference_mode()
def top_activations(sae, acts: Tensor, top: int, batch_size: int = 4096, progress: bool = True):
    """For each feature, the `top` largest activations and the rows where they occur, plus fire counts.

    Returns (values (F, top), rows (F, top) with -1 where a feature fired fewer times, counts (F,)).
    """
    from tqdm import tqdm

    sae32 = sae.to(dtype=torch.float32)
    F_ = sae.d_sae
    best_v = torch.full((F_, top), -1.0)
    best_r = torch.full((F_, top), -1, dtype=torch.long)
    counts = torch.zeros(F_, dtype=torch.long)
    for b in tqdm(range(0, len(acts), batch_size), desc="feature contexts", disable=not progress):
        codes = sae32.encode(acts[b : b + batch_size].float())  # (B, F), by the SAE's own rule
        local, feat = (codes > 0).nonzero(as_tuple=True)
        v = codes[local, feat]
        rows = local + b
        counts += torch.bincount(feat, minlength=F_)
        # merge with the running best: concatenate per feature via sorting
        all_f = torch.cat([torch.arange(F_).repeat_interleave(top), feat])
        all_v = torch.cat([best_v.reshape(-1), v])
        all_r = torch.cat([best_r.reshape(-1), rows])
        order = torch.argsort(all_v, descending=True, stable=True)
        order = order[torch.argsort(all_f[order], stable=True)]  # grouped by feature, value descending
        f_sorted = all_f[order]
        starts = torch.searchsorted(f_sorted, torch.arange(F_))
        take = (starts.unsqueeze(1) + torch.arange(top)).reshape(-1)  # each feature has >= top entries
        best_v = all_v[order][take].view(F_, top)
        best_r = all_r[order][take].view(F_, top)
    best_r[best_v <= 0] = -1
    return best_v, best_r, counts


def logit_lens(model, directions: Tensor, n: int = 5, batch: int = 2048) -> Tensor:
    """Token ids (F, n) each unit direction promotes most through the final norm weight and unembedding."""
    W_U = model.get_output_embeddings().weight.float()  # (V, d)
    norm = getattr(getattr(model, "model", model), "norm", None)
    g = norm.weight.float() if norm is not None and hasattr(norm, "weight") else torch.ones(W_U.shape[1])
    out = []
    for b in range(0, len(directions), batch):
        out.append(((directions[b : b + batch].float() * g) @ W_U.T).topk(n, dim=-1).indices)
    return torch.cat(out)


def build(folder: Path, tokens: int = 400_000, top: int = 6, label_pool: int = 48, left: int = 10, right: int = 3,
          corpus: Path | None = None, progress: bool = True, cache: Path | None = None) -> dict:
    from steering.model.embedded import cache_root
    from steering.model.loading import load_model
    from steering.offline.activations import default_cache_dir, load_cache, load_windows
    from steering.sae import load_sae

    folder = Path(folder)
    cfg = json.loads((folder / "cfg.json").read_text())
    layer, model_name = int(cfg["hook_layer"]), cfg["model_name"]
    sae = load_sae(folder)
    cache = cache or default_cache_dir(model_name, layer, corpus or cache_root() / "corpus", "train")
    data = load_cache(cache, max_tokens=tokens)
    wins = load_windows(cache)
    pool = max(top, label_pool)
    values, rows, counts = top_activations(sae, data["acts"], pool, progress=progress)
    model, tok = load_model(model_name, device="cpu", dtype="float32")
    W_dec = sae.W_dec.float()
    promoted = logit_lens(model, W_dec / W_dec.norm(dim=1, keepdim=True))
    vocab: dict[int, str] = {}

    def piece(i: int) -> str:
        if i not in vocab:
            vocab[i] = tok.decode([i])
        return vocab[i]

    window, pos = data["window"], data["pos"]
    features = []
    n_tok = len(data["acts"])
    for f in range(sae.d_sae):
        v, r = values[f], rows[f]
        ok = r >= 0
        weights: Counter = Counter()
        for val, row in zip(v[ok].tolist(), r[ok].tolist()):
            weights[piece(wins[int(window[row])][int(pos[row])])] += val
        top_tokens = [(t, round(w, 2)) for t, w in weights.most_common(8)]
        contexts, seen = [], set()
        for val, row in zip(v[ok].tolist(), r[ok].tolist()):  # strongest first; identical snippets once
            if len(contexts) == top:
                break
            w, p = wins[int(window[row])], int(pos[row])
            lo = max(0, p - left)
            ids = w[lo : p + right + 1]
            if tuple(ids) in seen:
                continue
            seen.add(tuple(ids))
            for i in ids:
                piece(i)
            contexts.append([round(val, 2), ids, p - lo])
        promotes = [piece(int(i)) for i in promoted[f]]
        features.append({"label": auto_label(top_tokens, promotes) if ok.any() else "(dead)",
                         "fire_rate": float(counts[f]) / n_tok, "max_activation": round(float(v[0].clamp_min(0)), 2),
                         "top_tokens": top_tokens, "promotes": promotes, "contexts": contexts})
    out = {"version": 1, "model": model_name, "layer": layer, "d_sae": sae.d_sae, "tokens_scanned": n_tok,
           "top": top, "label_pool": pool, "context": [left, right], "dead_fraction": float((counts == 0).float().mean()),
           "vocab": {str(k): v for k, v in sorted(vocab.items())}, "features": features}
    with gzip.open(folder / FILENAME, "wt", encoding="utf-8", compresslevel=9) as fh:
        json.dump(out, fh, separators=(",", ":"), ensure_ascii=False)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m steering.offline.contexts", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--tokens", type=int, default=400_000)
    p.add_argument("--top", type=int, default=6, help="contexts kept per feature")
    p.add_argument("--label-pool", type=int, default=48, help="top activations used for the label")
    p.add_argument("--corpus", type=Path, default=None)
    args = p.parse_args(argv)
    out = build(args.folder, args.tokens, args.top, args.label_pool, corpus=args.corpus)
    size = (args.folder / FILENAME).stat().st_size
    print(f"wrote {args.folder / FILENAME} ({size / 1e6:.1f} MB): {out['d_sae']} features over "
          f"{out['tokens_scanned']:,} tokens, dead fraction {out['dead_fraction']:.3%}")


if __name__ == "__main__":
    main()
