"""Train a TopK sparse autoencoder on one layer's residual stream (resid_post) of a causal LM.

    python -m steering.offline.train --model embedded:smollm2-135m-instruct --layer 15         --corpus ~/.cache/steering/corpus --out saes/smollm2-135m-instruct/layer_15 --d-sae 16384 --k 64

Two resumable stages:
1. **Cache**: tokenise the corpus (`steering.offline.corpus` layout: `train.jsonl`, `heldout.jsonl`), cut documents
   into windows of `--ctx` tokens, run the model up to `--layer` and store the residual in fp16 shards
   (`--cache`, default `~/.cache/steering/activations/...`). Position 0 of each window (the attention
   sink, whose norm is many times the others') is not stored, not trained on and not spliced.
   An interrupted run continues at the first missing shard.
2. **Train**: TopK SAE (Gao et al. 2024): `f = topk(relu((x - b_dec) W_enc + b_enc))`, `x_hat = f W_dec + b_dec`,
   unit-norm decoder rows (renormalised after each step, gradient parallel to each row removed), `W_enc`
   initialised to `W_dec^T`, `b_dec` to the data mean, AuxK loss on dead features (those that have not
   fired for `--dead-tokens` tokens) for dead-feature handling, Adam with warm-up and a linear decay.
   Inputs are divided by one scalar so the mean norm is sqrt(d) during training; the scalar is folded back
   into the saved weights, so the saved SAE reads raw residuals. A checkpoint is written every
   `--checkpoint-every` steps and a restarted command resumes from it.

The saved SAE is `steering.sae.core.SAE` (SAELens-native `cfg.json` + `sae_weights.safetensors`, fp16) with the
training figures in `cfg.json` metadata and `training.json`. Quality on held-out text: `steering.offline.quality`.
Only the inference class `steering.sae.core.SAE` is shared; nothing there imports this module."""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from steering.offline.activations import (
    cache_activations,
    default_cache_dir,
    load_cache,
)
from steering.offline.topk_trainer import TopKTrainer
from steering.sae import SAE


@dataclass
class TrainConfig:
    d_sae: int = 16384  # measured: 16k / k=64 beat 8k / k=32 on every held-out figure (saes/.../README.md)
    k: int = 64
    lr: float = 2e-3
    batch_size: int = 2048
    epochs: float = 1.5
    warmup_steps: int = 50
    decay_start: float = 0.7  # fraction of training after which lr decays linearly to 0
    aux_k: int = 256
    aux_coef: float = 1 / 32
    aux_rows: int = 512  # rows of each batch used for the AuxK loss (bounds its memory)
    dead_tokens: int = 500_000
    seed: int = 0
    checkpoint_every: int = 100
    sink_factor: float = 10.0  # positions with ||x|| > sink_factor * median norm are attention sinks: not trained on


def drop_sinks(acts: Tensor, factor: float, sample: int = 200_000) -> tuple[float | None, Tensor]:
    """Leave out attention-sink positions: residual norm above `factor` x the median norm.

    In SmolLM2 a handful of positions (3 in 100,000, mostly the first token after a window start) carry
    residual norms of thousands against a median near 170, and alone hold over half of the variance;
    they would dominate the loss and the variance-explained figure. Returns (threshold, kept rows).
    """
    if not factor or factor <= 0:
        return None, acts
    g = torch.Generator().manual_seed(0)
    rows = torch.randperm(len(acts), generator=g)[:sample]
    threshold = float(acts[rows].float().norm(dim=1).median()) * factor
    keep = torch.ones(len(acts), dtype=torch.bool)
    for b in range(0, len(acts), 65536):
        keep[b : b + 65536] = acts[b : b + 65536].float().norm(dim=1) <= threshold
    return threshold, acts if bool(keep.all()) else acts[keep]


def fve(x: Tensor, x_hat: Tensor) -> Tensor:
    """Fraction of variance explained: 1 - sum||x - x_hat||^2 / sum||x - mean(x)||^2 over the batch."""
    return 1 - (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()


def train(acts: Tensor, cfg: TrainConfig, out: Path | None = None, progress: bool = True,
          meta: dict | None = None, stop_after: int | None = None, init: SAE | None = None) -> tuple[SAE, dict]:
    """Train on `acts` (N, d) (any float dtype; batches are cast to float32). Returns the SAE and a history.

    With `out`, checkpoints go to `out/checkpoint.pt` and a run resumes from it. `stop_after` ends the
    run (with a checkpoint) once that many steps are done; a later call continues it exactly. `init` starts
    from a trained TopK SAE of the same shape instead of a random one (more data or epochs for a shipped
    SAE, with its feature indices kept).
    """
    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    sink_threshold, acts = drop_sinks(acts, cfg.sink_factor)
    n, d = acts.shape
    sample = acts[torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed))[:65536]].float()
    scale = float(sample.norm(dim=1).mean() / math.sqrt(d))
    model = TopKTrainer(d, cfg.d_sae, cfg.k, cfg.seed)
    with torch.no_grad():
        if init is None:
            model.b_dec.copy_(sample.mean(0) / scale)
        else:
            if (init.activation, init.k, init.d_sae, init.d_in) != ("topk", cfg.k, cfg.d_sae, d):
                raise ValueError(f"--init-from SAE is {init.activation} k={init.k} {init.d_in}x{init.d_sae}; this run "
                                 f"trains topk k={cfg.k} {d}x{cfg.d_sae}: pass the same --k and --d-sae")
            model.enc.copy_(init.W_enc.T.float())
            model.W_dec.copy_(init.W_dec.float())
            model.b_enc.copy_(init.b_enc.float() / scale)  # the saved biases read raw inputs
            model.b_dec.copy_(init.b_dec.float() / scale)
            model.normalise_decoder()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    steps_per_epoch = max(1, n // cfg.batch_size)
    total_steps = max(1, int(cfg.epochs * steps_per_epoch))
    last_fired = torch.zeros(cfg.d_sae, dtype=torch.long)  # tokens seen when each feature last fired
    history: dict = {"loss": [], "fve": [], "dead": [], "step": []}
    step = 0
    ckpt = None if out is None else Path(out) / "checkpoint.pt"
    if ckpt is not None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        if state["config"] == asdict(cfg) and state["n"] == n:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            last_fired, step, history, scale = state["last_fired"], state["step"], state["history"], state["scale"]
            print(f"resuming from step {step} of {total_steps}", flush=True)

    def lr_at(s: int) -> float:
        warm = min(1.0, (s + 1) / cfg.warmup_steps)
        decay_from = int(cfg.decay_start * total_steps)
        decay = 1.0 if s < decay_from else max(0.0, (total_steps - s) / max(1, total_steps - decay_from))
        return cfg.lr * warm * decay

    bar = tqdm(total=total_steps, initial=step, desc=f"training SAE {cfg.d_sae}x k={cfg.k}", unit="step",
               disable=not progress)
    perm, perm_epoch = None, -1
    t0 = time.time()
    end = total_steps if stop_after is None else min(total_steps, stop_after)
    while step < end:
        epoch = step // steps_per_epoch
        if epoch != perm_epoch:
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed + 1000 + epoch))
            perm_epoch = epoch
        b = step % steps_per_epoch
        x = acts[perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]].float() / scale
        x_hat, idx, f = model(x)
        err = (x_hat - x).pow(2).sum()  # (): summed squared error
        total_var = (x - x.mean(0)).pow(2).sum()
        loss = err / total_var
        tokens_seen = (step + 1) * cfg.batch_size
        fired = torch.zeros(cfg.d_sae, dtype=torch.bool)
        fired[idx[f > 0]] = True
        last_fired[fired] = tokens_seen
        dead = (tokens_seen - last_fired) > cfg.dead_tokens
        n_dead = int(dead.sum())
        aux = torch.zeros(())
        if n_dead > 0 and cfg.aux_coef > 0:
            rows = slice(0, min(cfg.aux_rows, len(x)))
            e = (x[rows] - x_hat[rows]).detach()
            a_idx, a_acts = model.select(x[rows], min(cfg.aux_k, n_dead), mask=dead.unsqueeze(0))
            e_hat = model.decode_sparse(a_idx, a_acts)
            aux = (e_hat - e).pow(2).sum() / (e - e.mean(0)).pow(2).sum().clamp_min(1e-8)
            aux = torch.nan_to_num(aux, nan=0.0)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        (loss + cfg.aux_coef * aux).backward()
        model.remove_parallel_grad()
        opt.step()
        model.normalise_decoder()
        step += 1
        history["step"].append(step)
        history["loss"].append(float(loss.detach()))
        history["fve"].append(float(1 - err.detach() / total_var))
        history["dead"].append(n_dead / cfg.d_sae)
        bar.update(1)
        bar.set_postfix(fve=f"{1 - float(loss.detach()):.4f}", dead=f"{n_dead / cfg.d_sae:.3f}", aux=f"{float(aux.detach()):.3f}")
        if ckpt is not None and (step % cfg.checkpoint_every == 0 or step == end):
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"config": asdict(cfg), "n": n, "model": model.state_dict(), "opt": opt.state_dict(),
                        "last_fired": last_fired, "step": step, "history": history, "scale": scale}, tmp)
            os.replace(tmp, ckpt)
    bar.close()
    tokens_seen = step * cfg.batch_size
    history.update(scale=scale, steps=step, sink_threshold=sink_threshold, positions=n, tokens_trained=tokens_seen, seconds=time.time() - t0,
                   dead_fraction_end=float(((tokens_seen - last_fired) > cfg.dead_tokens).float().mean()),
                   final_fve_100=float(sum(history["fve"][-100:]) / len(history["fve"][-100:])))
    sae = model.to_sae(scale, dict(meta or {}))
    return sae, history


def _layers(text: str) -> list[int]:
    try:
        layers = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a layer number or a comma-separated list (18,20,22)") from None
    if not layers:
        raise argparse.ArgumentTypeError("give a layer number")
    return layers


def main(argv: list[str] | None = None) -> None:
    from steering.model.embedded import cache_root
    from steering.model.loading import load_model
    from steering.offline.corpus import read_documents

    p = argparse.ArgumentParser(prog="python -m steering.offline.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="embedded:smollm2-135m-instruct")
    p.add_argument("--layer", type=_layers, required=True,
                   help="the layer; with --cache-only, several (18,20,22) cached from one forward pass")
    p.add_argument("--corpus", type=Path, default=cache_root() / "corpus", help="folder from `python -m steering.offline.corpus`")
    p.add_argument("--out", type=Path, default=None, help="folder for the SAE (cfg.json, sae_weights.safetensors)")
    p.add_argument("--cache", type=Path, default=None, help="activation cache folder (default under the cache root)")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="cap on training tokens: windows drawn at random when caching; with --use-cached, the first "
                        "this many cached positions")
    p.add_argument("--ctx", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-only", action="store_true", help="stop after caching activations")
    p.add_argument("--shuffle", action="store_true",
                   help="cache windows in a seeded random order, so a partial cache is a fair sample")
    p.add_argument("--use-cached", action="store_true",
                   help="train on the shards already in the cache, even if caching was stopped early")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--compute-dtype", default=None, choices=["bfloat16"],
                   help="when caching: run the model's matrix products in this type (autocast; about 3x faster on a "
                        "CPU with AMX, residuals within about 1%% of float32's)")
    p.add_argument("--init-from", type=Path, default=None,
                   help="start from this trained TopK SAE folder (same --d-sae and --k) instead of a random one")
    p.add_argument("--stop-after", type=int, default=None, help="stop (with a checkpoint) after this many steps")
    p.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"], help="saved weights")
    for f in TrainConfig.__dataclass_fields__.values():
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(**{f: getattr(args, f) for f in TrainConfig.__dataclass_fields__})
    compute_dtype = getattr(torch, args.compute_dtype) if args.compute_dtype else None
    if args.out is None and not args.cache_only:
        p.error("--out: give the folder the SAE goes to (or --cache-only to stop after caching)")
    if len(args.layer) > 1:
        if not args.cache_only or args.cache is not None:
            p.error(f"--layer {','.join(map(str, args.layer))}: several layers only with --cache-only and the "
                    "default cache folders; train each layer with its own --layer")
        model, tok = load_model(args.model, device=args.device, dtype="float32" if args.device in ("cpu", "auto") else "auto")
        folders = {at: default_cache_dir(args.model, at, args.corpus, "train") for at in args.layer}
        print("caching activations to " + ", ".join(map(str, folders.values())), flush=True)
        cache_activations(model, tok, read_documents(args.corpus / "train.jsonl"), args.layer, folders, ctx=args.ctx,
                          max_tokens=args.max_tokens, shuffle=args.shuffle, compute_dtype=compute_dtype)
        return
    args.layer = args.layer[0]
    cache = args.cache or default_cache_dir(args.model, args.layer, args.corpus, "train")
    if args.use_cached:  # train on the shards cached so far (a cache stopped early), or their first --max-tokens
        acts = load_cache(cache, args.max_tokens)["acts"]
        meta_train = {"tokens": len(acts), "partial": not (cache / "meta.json").exists()}
        if (cache / "caching.json").exists():
            meta_train.update(json.loads((cache / "caching.json").read_text()))
    else:
        model, tok = load_model(args.model, device=args.device, dtype="float32" if args.device in ("cpu", "auto") else "auto")
        print(f"caching activations to {cache}", flush=True)
        meta_train = cache_activations(model, tok, read_documents(args.corpus / "train.jsonl"), args.layer, cache,
                                       ctx=args.ctx, max_tokens=args.max_tokens, shuffle=args.shuffle,
                                       compute_dtype=compute_dtype)
        del model
        if args.cache_only:
            return
        acts = load_cache(cache)["acts"]
    print(f"training on {len(acts):,} activations of layer {args.layer}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    corpus_manifest = json.loads((args.corpus / "manifest.json").read_text()) if (args.corpus / "manifest.json").exists() else {}
    meta = {"model_name": args.model, "layer": args.layer,
            "hook_name": f"blocks.{args.layer}.hook_resid_post", "context_size": args.ctx,
            "trained_by": "steering.train_sae", "training_tokens": int(meta_train["tokens"])}
    init, previous = None, None
    if args.init_from is not None:
        from steering.sae import load_sae

        init = load_sae(args.init_from)
        prev_path = args.init_from / "training.json"
        previous = json.loads(prev_path.read_text()) if prev_path.exists() else {"source": str(args.init_from)}
        previous.pop("curve", None)
    sae, history = train(acts, cfg, out=args.out, meta=meta, stop_after=args.stop_after, init=init)
    if history["steps"] < int(cfg.epochs * max(1, len(acts) // cfg.batch_size)):
        print(f"stopped at step {history['steps']}; run the same command again to continue", flush=True)
        return
    sae.meta.update(tokens_trained=history["tokens_trained"], train_fve_last100=history["final_fve_100"],
                    train_dead_fraction=history["dead_fraction_end"], sink_norm_threshold=history["sink_threshold"])
    sae.save(args.out, dtype=getattr(torch, args.dtype))
    info = {"config": asdict(cfg), "model": args.model, "layer": args.layer, "ctx": args.ctx,
            "cache": str(cache), "cache_tokens": meta_train["tokens"], "cache_partial": bool(meta_train.get("partial")),
            "cache_compute_dtype": meta_train.get("compute_dtype", "model"),
            "input_scale": history["scale"], "sink_norm_threshold": history["sink_threshold"],
            "positions_trained_on": history["positions"],
            "steps": history["steps"], "tokens_trained": history["tokens_trained"], "seconds": history["seconds"],
            "train_fve_last100": history["final_fve_100"], "dead_fraction_end": history["dead_fraction_end"],
            "corpus_tokens": corpus_manifest.get("tokens"),
            "curve": {k: history[k][:: max(1, len(history[k]) // 200)] for k in ("step", "fve", "dead")}}
    if previous is not None:
        info["initialised_from"] = previous  # the earlier run(s) this one continued
    (args.out / "training.json").write_text(json.dumps(info, indent=2))
    (args.out / "checkpoint.pt").unlink(missing_ok=True)
    print(f"saved {args.out}: train FVE (last 100 steps) {history['final_fve_100']:.4f}, "
          f"dead {history['dead_fraction_end']:.3%}", flush=True)


if __name__ == "__main__":
    main()
