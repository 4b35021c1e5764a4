"""Quality of an SAE on held-out text: variance explained, L0, dead features, loss recovered.

    python -m steering.offline.quality saes/smollm2-135m-instruct/layer_15 [--heldout FILE.jsonl] [--tokens 20000]

Definitions (x: the residual after decoder layer L at one position; position 0 of each window, the
attention sink, is never spliced or scored, as in training):
- **attention sinks**: positions whose residual norm exceeds the SAE's `sink_norm_threshold` (10x the median
  norm; a few in 100,000 positions, with norms in the thousands) are left out of training and of every figure,
  and keep their own residual when splicing.
- **fve** (fraction of variance explained): `1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2` over all
  scored positions.
- **fve_uncentered**: `1 - sum ||x - x_hat||^2 / sum ||x||^2`, which some report as "variance explained";
  the residual's mean is large here (norm ~125 of ~175), so this reads much higher than `fve`.
- **l0**: mean number of non-zero features per position.
- **dead fraction**: share of features that never fire on the training cache (its first `--dead-tokens`
  tokens, if given; without a cache, on the held-out tokens).
- **CE**: mean next-token cross-entropy (nats) of the full model on the held-out windows, for predictions
  made at positions >= 1, in three runs: clean; *spliced*, with the SAE reconstruction in place of the
  residual at layer L (positions >= 1); *mean-ablated*, with the mean training residual in its place.
  `loss_recovered = (CE_mean_ablated - CE_spliced) / (CE_mean_ablated - CE_clean)`, and
  `ce_increase = CE_spliced - CE_clean`.

Writes `quality.json` next to the SAE: the figures on the held-out set and on the small held-out sample
shipped with it (`heldout_sample.jsonl`), which `tests/test_shipped_sae.py` recomputes."""

from __future__ import annotations

import argparse
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from steering.model.layers import decoder_layers
from steering.model.padding import padded
from steering.offline.model_card import model_card, sink_threshold_of
from steering.sae import SAE


@contextmanager
def replace_residual(model, layer: int, fn: Callable[[Tensor], Tensor], skip_first: int = 1) -> Iterator[None]:
    """Inside the block, the output of decoder layer `layer` becomes `fn(h)` at positions >= `skip_first`."""

    def hook(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output  # (B, T, d)
        new = hidden.clone()
        new[:, skip_first:] = fn(hidden[:, skip_first:]).to(hidden.dtype)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    handle = decoder_layers(model)[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _batches(windows: Sequence[Sequence[int]], batch_size: int, pad: int) -> Iterator[tuple[Tensor, Tensor]]:
    order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
    for b in range(0, len(order), batch_size):
        yield padded([windows[i] for i in order[b : b + batch_size]], pad)


def _ce_sum(logits: Tensor, ids: Tensor, mask: Tensor) -> tuple[float, int]:
    """Summed CE of predictions at positions >= 1 (targets >= 2) and their count."""
    pred = logits[:, 1:-1].float()  # (B, T-2, V)
    target = ids[:, 2:]
    valid = mask[:, 2:].bool()
    ce = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), reduction="none").view_as(target)
    return float(ce[valid].sum()), int(valid.sum())


@torch.inference_mode()
def evaluate_windows(model, sae: SAE, layer: int, windows: Sequence[Sequence[int]], mean_residual: Tensor,
                     pad: int = 0, batch_size: int = 8, progress: bool = False, sink_threshold: float | None = None) -> dict:
    """FVE, L0, features fired, and the three CEs on `windows` (lists of token ids).

    Positions whose residual norm exceeds `sink_threshold` (attention sinks, left out of training) are left
    out of FVE and L0 and keep their own residual in the spliced and mean-ablated runs.
    """
    from tqdm import tqdm

    from steering.steer.hooks import capture_residual

    sae32 = sae.to(dtype=torch.float32)
    mean_residual = mean_residual.float()
    err = tot_sq = 0.0
    sum_x = torch.zeros(sae.d_in, dtype=torch.float64)
    n_pos = 0
    l0_sum = 0.0
    fired = torch.zeros(sae.d_sae, dtype=torch.bool)
    ce = {"clean": [0.0, 0], "spliced": [0.0, 0], "mean_ablated": [0.0, 0]}
    n_sinks = 0

    def keep_sinks(fn):
        if sink_threshold is None:
            return fn

        def wrapped(t: Tensor) -> Tensor:
            sink = t.float().norm(dim=-1, keepdim=True) > sink_threshold  # (B, T, 1)
            return torch.where(sink, t.float(), fn(t).float())

        return wrapped

    for ids, mask in tqdm(list(_batches(windows, batch_size, pad)), desc="quality", disable=not progress):
        with capture_residual(model, layer) as cap:
            logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        h = cap[layer][:, 1:]  # (B, T-1, d)
        valid = mask[:, 1:].bool()
        if sink_threshold is not None:
            sinks = h.norm(dim=-1) > sink_threshold
            n_sinks += int((sinks & valid).sum())
            valid &= ~sinks
        x = h[valid]  # (N, d)
        f = sae32.encode(x)
        x_hat = sae32.decode(f)
        err += float((x - x_hat).pow(2).sum())
        tot_sq += float(x.double().pow(2).sum())
        sum_x += x.double().sum(0)
        n_pos += len(x)
        l0_sum += float((f > 0).sum())
        fired |= (f > 0).any(0)
        for name, fn in (("clean", None), ("spliced", keep_sinks(lambda t: sae32.decode(sae32.encode(t)))),
                         ("mean_ablated", keep_sinks(lambda t: mean_residual.expand_as(t)))):
            if fn is not None:
                with replace_residual(model, layer, fn):
                    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
            s, c = _ce_sum(logits, ids, mask)
            ce[name][0] += s
            ce[name][1] += c
    # total variance around the mean: sum ||x||^2 - N ||mean||^2
    var = tot_sq - float(sum_x.pow(2).sum()) / n_pos
    out = {"tokens": n_pos, "sink_positions_left_out": n_sinks, "fve": 1 - err / var, "fve_uncentered": 1 - err / tot_sq,
           "l0": l0_sum / n_pos,
           "fired_fraction": float(fired.float().mean())}
    for name, (s, c) in ce.items():
        out[f"ce_{name}"] = s / c
    out["loss_recovered"] = (out["ce_mean_ablated"] - out["ce_spliced"]) / (out["ce_mean_ablated"] - out["ce_clean"])
    out["ce_increase"] = out["ce_spliced"] - out["ce_clean"]
    return out


@torch.inference_mode()
def dead_fraction(sae: SAE, acts: Tensor, batch_size: int = 4096) -> tuple[float, Tensor]:
    """Share of features that never fire on `acts` (N, d), and the fire count of each feature."""
    sae32 = sae.to(dtype=torch.float32)
    counts = torch.zeros(sae.d_sae, dtype=torch.long)
    for b in range(0, len(acts), batch_size):
        f = sae32.encode(acts[b : b + batch_size].float())
        counts += (f > 0).sum(0)
    return float((counts == 0).float().mean()), counts


def windows_from_jsonl(tokenizer, path: Path | str, ctx: int = 256, max_tokens: int | None = None) -> list[list[int]]:
    from steering.offline.activations import windows
    from steering.offline.corpus import document_ids, read_documents

    out, total = [], 0
    for w in windows((document_ids(tokenizer, d) for d in read_documents(path)), ctx):
        if max_tokens is not None and total >= max_tokens:
            break
        out.append(w)
        total += len(w) - 1
    return out



def mean_residual_from(folder: Path) -> Tensor:
    """The mean training residual stored next to the SAE (`mean_residual.safetensors`)."""
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "mean_residual.safetensors"))["mean"].float()


def main(argv: list[str] | None = None) -> None:
    from safetensors.torch import save_file

    from steering.model.embedded import cache_root
    from steering.model.loading import load_model
    from steering.offline.activations import default_cache_dir, load_cache
    from steering.offline.corpus import document_ids, read_documents
    from steering.sae import load_sae

    p = argparse.ArgumentParser(prog="python -m steering.offline.quality", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="SAE folder (cfg.json + sae_weights.safetensors)")
    p.add_argument("--model", default=None, help="default: the SAE's model_name")
    p.add_argument("--corpus", type=Path, default=cache_root() / "corpus")
    p.add_argument("--heldout", type=Path, default=None, help="held-out jsonl (default: CORPUS/heldout.jsonl)")
    p.add_argument("--tokens", type=int, default=20000, help="held-out tokens to score")
    p.add_argument("--dead-tokens", type=int, default=None,
                   help="training-cache tokens for the dead fraction (default: the whole cache)")
    p.add_argument("--sample-tokens", type=int, default=1500, help="size of the shipped held-out sample")
    p.add_argument("--card-only", action="store_true", help="only (re)write README.md from the stored figures")
    p.add_argument("--sample-only", action="store_true", help="only (re)compute the shipped sample's figures")
    args = p.parse_args(argv)
    manifest_path = args.corpus / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
    if args.card_only:
        (args.folder / "README.md").write_text(model_card(args.folder, manifest))
        return
    sae = load_sae(args.folder)
    cfg = json.loads((args.folder / "cfg.json").read_text())
    layer = int(cfg["hook_layer"])
    model_name = args.model or cfg["model_name"]
    sink = sink_threshold_of(args.folder)
    model, tok = load_model(model_name, device="cpu", dtype="float32")
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    train_cache = default_cache_dir(model_name, layer, args.corpus, "train")
    mean_path = args.folder / "mean_residual.safetensors"
    if not mean_path.exists():
        acts = load_cache(train_cache, max_tokens=500_000)["acts"].float()
        if sink is not None:
            acts = acts[acts.norm(dim=1) <= sink]
        save_file({"mean": acts.mean(0).contiguous()}, str(mean_path))
    mean = mean_residual_from(args.folder)
    heldout = args.heldout or args.corpus / "heldout.jsonl"
    result: dict = {"definitions": __doc__.split("Definitions")[1].split("Writes")[0].strip()}
    if args.sample_only:
        result = {**json.loads((args.folder / "quality.json").read_text()), **result}
    else:
        wins = windows_from_jsonl(tok, heldout, max_tokens=args.tokens)
        result["heldout"] = evaluate_windows(model, sae, layer, wins, mean, pad, progress=True, sink_threshold=sink)
        result["heldout"]["source"] = str(heldout)
        print(json.dumps(result["heldout"], indent=2), flush=True)
    # the shipped sample: permissively licensed held-out documents (not the CC BY-SA ones)
    sample_path = args.folder / "heldout_sample.jsonl"
    if not sample_path.exists():
        docs, total = [], 0
        for d in read_documents(heldout):
            if d["source"] in ("chitchat", "sotu", "python_docs", "chatterbot", "model_answers", "wordnet"):
                n = len(document_ids(tok, d))
                if total + n > 1.5 * args.sample_tokens:
                    continue
                docs.append(d)
                total += n
                if total >= args.sample_tokens:
                    break
        sample_path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    result["sample"] = evaluate_windows(model, sae, layer, windows_from_jsonl(tok, sample_path), mean, pad,
                                        sink_threshold=sink)
    result["sample"]["source"] = sample_path.name
    if train_cache.exists() and not args.sample_only:
        acts = load_cache(train_cache, max_tokens=args.dead_tokens)["acts"]
        if sink is not None:
            acts = acts[acts.float().norm(dim=1) <= sink]
        frac, counts = dead_fraction(sae, acts)
        result["dead"] = {"tokens": len(acts), "dead_fraction": frac, "source": "training activation cache",
                          "median_fire_rate": float((counts.float() / len(acts)).median())}
    (args.folder / "quality.json").write_text(json.dumps(result, indent=2))
    (args.folder / "README.md").write_text(model_card(args.folder, manifest))
    print(json.dumps({k: v for k, v in result.items() if k != "definitions"}, indent=2))


if __name__ == "__main__":
    main()
