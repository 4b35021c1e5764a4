"""What each SAE feature means: its top-activating contexts and an automatic label, computed once.

    python -m steering.offline.contexts saes/smollm2-135m-instruct/layer_15 [--tokens 400000] [--cache DIR ...]

Scans `--tokens` positions of activation caches (default: the SAE's training cache; without one, a
random sample of `--sample-tokens` training positions, cached under `..._train_sample`), keeps the
`--top` strongest activations of every feature with a few tokens of context, and writes
`feature_contexts.json.gz` next to the SAE. The app reads it with

    fc = load_feature_contexts("saes/smollm2-135m-instruct/layer_15")
    fc.label(123)        # "ocean / sea / waves"
    fc.contexts(123)     # [Context(before=..., token=..., after=..., activation=...), ...]
    fc.info(123)         # fire rate, max activation, top tokens and words, tokens it promotes

**Labels** (`steering.offline.labelling.choose_label`): whole words the feature fires on in its top
`--label-pool` activations (each token merged with its neighbours into the word it belongs to),
weighted by activation, English words first; else the words it promotes, marked "→": the tokens
steering with it raises most (`says`, from `feature_stats.safetensors` when present), then its
logit-lens tokens (`promotes`: `W_U (g * u_i)`, g the final norm's weight); else the names of the
punctuation it fires on. Dead features are labelled "(dead)"."""

from __future__ import annotations

import argparse
import gzip
import json
from collections import Counter
from pathlib import Path

import torch
from torch import Tensor

from steering.inspection.labels import FILENAME
from steering.backends.reads import logit_lens
from steering.offline.labelling import choose_label, load_words, whole_word


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


def train_sample_cache(model_name: str, layer: int, corpus: Path, tokens: int) -> Path:
    """A cache of `tokens` training positions in randomly drawn windows (for a folder without the full cache)."""
    from steering.model.loading import load_model
    from steering.offline.activations import cache_activations, default_cache_dir
    from steering.offline.corpus import read_documents

    folder = default_cache_dir(model_name, layer, corpus, "train_sample")
    if not (folder / "meta.json").exists():
        model, tok = load_model(model_name, device="cpu", dtype="float32")[:2]
        cache_activations(model, tok, read_documents(Path(corpus) / "train.jsonl"), layer, folder,
                          max_tokens=tokens, shard_tokens=16_384)
    return folder


def load_caches(caches: list[Path], tokens: int) -> tuple[dict[str, Tensor], list[list[int]]]:
    """Up to `tokens` positions from the caches in order, window indices renumbered across them."""
    from steering.offline.activations import load_cache, load_windows

    parts, wins = [], []
    for c in caches:
        left = tokens - sum(len(p["acts"]) for p in parts)
        if left <= 0:
            break
        d = load_cache(c, max_tokens=left)
        d["window"] = d["window"].long() + len(wins)
        wins += load_windows(c)
        parts.append(d)
    return {k: torch.cat([p[k] for p in parts]) for k in ("acts", "window", "pos")}, wins


def _says(folder: Path) -> Tensor | None:
    path = folder / "feature_stats.safetensors"
    if not path.exists():
        return None
    from safetensors.torch import load_file

    return load_file(str(path)).get("raised")


def build(folder: Path, tokens: int = 400_000, top: int = 6, label_pool: int = 48, left: int = 10, right: int = 3,
          corpus: Path | None = None, progress: bool = True, cache: Path | list[Path] | None = None,
          sample_tokens: int = 270_000, words_path: Path | None = None) -> dict:
    from steering.model.embedded import cache_root
    from steering.model.loading import load_model
    from steering.offline.activations import default_cache_dir
    from steering.sae import load_sae

    folder = Path(folder)
    cfg = json.loads((folder / "cfg.json").read_text())
    layer, model_name = int(cfg["hook_layer"]), cfg["model_name"]
    sae = load_sae(folder)
    corpus = corpus or cache_root() / "corpus"
    caches = [cache] if isinstance(cache, (str, Path)) else list(cache or [])
    if not caches:
        train = default_cache_dir(model_name, layer, corpus, "train")
        caches = [train if train.exists() else train_sample_cache(model_name, layer, corpus, sample_tokens)]
    data, wins = load_caches([Path(c) for c in caches], tokens)
    words = load_words(words_path) if words_path else load_words()
    pool = max(top, label_pool)
    values, rows, counts = top_activations(sae, data["acts"], pool, progress=progress)
    model, tok = load_model(model_name, device="cpu", dtype="float32")[:2]
    promoted = logit_lens(model, sae.W_dec.float(), 30)
    says = _says(folder)
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
        tokens_w: Counter = Counter()
        words_w: Counter = Counter()
        for val, row in zip(v[ok].tolist(), r[ok].tolist()):
            w, p = wins[int(window[row])], int(pos[row])
            tokens_w[piece(w[p])] += val
            lo = max(0, p - 4)
            words_w[whole_word([piece(i) for i in w[lo : p + 5]], p - lo)] += val
        top_tokens = [(t, round(x, 2)) for t, x in tokens_w.most_common(8)]
        top_words = [(t.strip(), round(x, 2)) for t, x in words_w.most_common(8)]
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
        said = [piece(int(i)) for i in says[f]] if says is not None else []
        label = choose_label(top_words, said + promotes[:8], words, top_tokens) if ok.any() else "(dead)"
        entry = {"label": label, "fire_rate": float(counts[f]) / n_tok, "max_activation": round(float(v[0].clamp_min(0)), 2),
                 "top_tokens": top_tokens, "top_words": top_words, "promotes": promotes[:8], "contexts": contexts}
        if said:
            entry["says"] = said
        features.append(entry)
    out = {"version": 2, "model": model_name, "layer": layer, "d_sae": sae.d_sae, "tokens_scanned": n_tok,
           "caches": [Path(c).name for c in caches], "top": top, "label_pool": pool, "context": [left, right],
           "dead_fraction": float((counts == 0).float().mean()),
           "vocab": {str(k): v for k, v in sorted(vocab.items())}, "features": features}
    with gzip.open(folder / FILENAME, "wt", encoding="utf-8", compresslevel=9) as fh:
        json.dump(out, fh, separators=(",", ":"), ensure_ascii=False)
    return out


def relabel(folder: Path, words_path: Path | None = None) -> dict:
    """Recompute the labels of a written contexts file from its own fields and the folder's current
    `feature_stats.safetensors` (its `says`), without scanning activations again."""
    folder = Path(folder)
    path = folder / FILENAME
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        out = json.load(fh)
    words = load_words(words_path) if words_path else load_words()
    says = _says(folder)
    vocab = {int(k): v for k, v in out["vocab"].items()}
    if says is not None:
        from transformers import AutoTokenizer

        from steering.model.loading import resolve_model_path

        tok = AutoTokenizer.from_pretrained(resolve_model_path(out["model"]))
        for i in says.unique().tolist():
            vocab.setdefault(int(i), tok.decode([int(i)]))
    for f, entry in enumerate(out["features"]):
        if says is not None:
            entry["says"] = [vocab[int(i)] for i in says[f]]
        if entry["label"] != "(dead)":
            entry["label"] = choose_label([tuple(x) for x in entry.get("top_words", [])],
                                          entry.get("says", []) + entry["promotes"][:8], words,
                                          [tuple(x) for x in entry["top_tokens"]])
    out["vocab"] = {str(k): v for k, v in sorted(vocab.items())}
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=9) as fh:
        json.dump(out, fh, separators=(",", ":"), ensure_ascii=False)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m steering.offline.contexts", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--tokens", type=int, default=400_000)
    p.add_argument("--top", type=int, default=6, help="contexts kept per feature")
    p.add_argument("--label-pool", type=int, default=48, help="top activations used for the label")
    p.add_argument("--corpus", type=Path, default=None)
    p.add_argument("--cache", type=Path, action="append", default=None,
                   help="activation cache(s) to scan, in order (default: the training cache, else a sample of it)")
    p.add_argument("--sample-tokens", type=int, default=270_000, help="size of the training sample, when one is made")
    p.add_argument("--words", type=Path, default=None, help="English word list (default /usr/share/dict/words)")
    p.add_argument("--relabel", action="store_true", help="only recompute the labels of the written file")
    args = p.parse_args(argv)
    if args.relabel:
        out = relabel(args.folder, args.words)
        print(f"relabelled {len(out['features'])} features in {args.folder / FILENAME}")
        return
    out = build(args.folder, args.tokens, args.top, args.label_pool, corpus=args.corpus, cache=args.cache,
                sample_tokens=args.sample_tokens, words_path=args.words)
    size = (args.folder / FILENAME).stat().st_size
    print(f"wrote {args.folder / FILENAME} ({size / 1e6:.1f} MB): {out['d_sae']} features over "
          f"{out['tokens_scanned']:,} tokens, dead fraction {out['dead_fraction']:.3%}")


if __name__ == "__main__":
    main()
