"""Which layer's SAE features steer best: a short probe over candidate layers before a long training run.

    python -m steering.offline.train --layer 18,20,22,24,26 --corpus DIR --cache-only --shuffle   # one pass
    python -m steering.offline.layer_probe --corpus DIR --layers 18,20,22,24,26 --out benchmarks/runs/layer_probe

Features that steer the output sit late in a model (Arad et al. 2025 find them at 66-100% of depth); the shipped
SAE is at layer 15 of 30. Per candidate layer L, each step resumable (SAEs under the cache root, not committed):
1. a probe SAE of the shipped shape (16,384 features, k = 64) trained on the first `--tokens` positions of the
   layer's shuffled training cache (`--epochs`, learning rate 2e-3);
2. its centred variance explained on `--heldout-tokens` positions of the held-out split, the output score
   (Arad et al.'s, at 1x the layer's typical norm, as `feature_stats` computes it) of `--output-sample` live
   features drawn at random, and feature labels (`contexts`);
3. a steering screen: for each concept, a pool of label matches (`label_candidates` on the tight lexicon) and the
   top differential features (`Engine.differential` on `concept_prompt_sets`), ranked by the live output score on
   the concept's own tokens (`rank_concept`); the best `--candidates` are steered at `SETTINGS` (fractions of
   the layer's typical norm) on the first `--n-prompts` pick prompts, `--max-new-tokens` tokens, seed 0, through
   the serving path; inclusion (tight lexicon) and fluency ratio (perplexity of the answers under the unsteered
   model with the prompt, over the unsteered answers') as the light screen scores them.
(Scored on a sample because every feature's score costs about ten minutes a layer on two cores.) A run meets the target at inclusion >= 70% and fluency ratio <= 2. Writes OUT/results.json (every run and
answer), OUT/summary.md and OUT/output_scores.png; rerunning the command continues where it stopped."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch

CONCEPTS = ("sports", "music", "food", "computers", "weather", "paris", "dogs", "fear")
"""The eight default features' concepts: five topics, a place, an animal, a mood."""
SETTINGS = (("add", 0.24), ("clamp", 0.24))
"""(mode, strength as a fraction of the layer's typical norm): around the layer-15 defaults (add 32-50 and
clamp 24-42 at norm 177, i.e. 0.14-0.28)."""
TARGET_INCLUSION, TARGET_RATIO = 0.7, 2.0
QUANTILES = (0.5, 0.9, 0.99)


def probe_root() -> Path:
    from steering.model.embedded import cache_root

    return cache_root() / "layer_probe"


def margin(run: dict) -> float:
    """How far a run is inside the target, in the target's own units (negative: outside)."""
    return min((run["inclusion"] - TARGET_INCLUSION) / 0.1, (TARGET_RATIO - run["fluency_ratio"]) / 0.25)


def train_probe_sae(layer: int, corpus: Path, tokens: int, epochs: float, folder: Path, model_name: str) -> None:
    from steering.offline.activations import default_cache_dir, load_cache
    from steering.offline.train import TrainConfig, train

    if (folder / "sae_weights.safetensors").exists():
        return
    acts = load_cache(default_cache_dir(model_name, layer, corpus, "train"), tokens)["acts"]
    if len(acts) < tokens:
        raise SystemExit(f"layer {layer}: only {len(acts):,} positions cached, {tokens:,} needed; let the cache run on")
    cfg = TrainConfig(lr=2e-3, epochs=epochs)
    meta = {"model_name": model_name, "layer": layer, "hook_name": f"blocks.{layer}.hook_resid_post",
            "context_size": 256, "trained_by": "steering.offline.layer_probe", "training_tokens": len(acts)}
    sae, history = train(acts, cfg, out=folder, meta=meta, progress=False)
    sae.meta.update(tokens_trained=history["tokens_trained"], sink_norm_threshold=history["sink_threshold"])
    sae.save(folder, dtype=torch.float16)
    (folder / "training.json").write_text(json.dumps({"seconds": history["seconds"], "steps": history["steps"],
                                                      "train_fve_last100": history["final_fve_100"],
                                                      "dead_fraction_end": history["dead_fraction_end"]}, indent=2))
    (folder / "checkpoint.pt").unlink(missing_ok=True)


@torch.inference_mode()
def heldout_quality(folder: Path, cache: Path) -> dict:
    """Centred variance explained and L0 of the SAE on held-out positions (attention sinks left out)."""
    from steering.offline.activations import load_cache
    from steering.offline.model_card import sink_threshold_of
    from steering.sae import load_sae

    sae = load_sae(folder).to(dtype=torch.float32)
    x = load_cache(cache)["acts"].float()
    threshold = sink_threshold_of(folder)
    if threshold is not None:
        x = x[x.norm(dim=-1) <= threshold]
    err, l0 = 0.0, 0.0
    for b in range(0, len(x), 4096):
        codes = sae.encode(x[b : b + 4096])
        err += float((sae.decode(codes) - x[b : b + 4096]).pow(2).sum())
        l0 += float((codes > 0).sum())
    return {"fve_centred": 1 - err / float((x - x.mean(0)).pow(2).sum()), "l0": l0 / len(x), "positions": len(x)}


@torch.inference_mode()
def sampled_output_scores(folder: Path, layer: int, model_name: str, n: int, seed: int = 0) -> dict:
    """Quantiles of the output score (Arad et al., at 1x the typical norm, as `feature_stats`) over `n` features
    drawn at random: the distribution without the cost of scoring every feature."""
    from safetensors.torch import load_file

    from steering.backends.hooks import HooksBackend
    from steering.backends.reads import output_scores
    from steering.inspection.capture import typical_norm
    from steering.inspection.output_score import neutral_prompt_ids
    from steering.model.loading import load_model
    from steering.sae import load_sae

    t0 = time.time()
    sae = load_sae(folder)
    alive = load_file(str(folder / "feature_stats.safetensors"))["density"] > 0
    pool = alive.nonzero().squeeze(1)
    pick = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:n]]
    model, tok = load_model(model_name, device="cpu", dtype="float32")[:2]
    with HooksBackend(model, tok) as backend:
        norm = typical_norm(backend, layer)
    score = output_scores(model, layer, sae.W_dec.float()[pick], neutral_prompt_ids(tok), norm, batch_size=128).score
    return {**{f"q{int(x * 100)}": float(score.quantile(x)) for x in QUANTILES},
            "share_above_0.1": float((score > 0.1).float().mean()), "sampled": len(pick),
            "dead_share": float((~alive).float().mean()), "typical_norm": norm, "seconds": round(time.time() - t0),
            "scores": [round(float(v), 6) for v in score]}


def write_config(layer: int, root: Path, out: Path, base: str = "demo.yaml") -> Path:
    """A copy of `base` that inspects and steers with the probe SAEs under `root` (no features of its own)."""
    import yaml

    cfg = yaml.safe_load(Path(base).read_text())
    cfg.update(sae={"source": portable(str(root)), "format": "saelens", "path": "layer_{layer}"}, features=[],
               inspector_layer=layer, vectors=None)
    path = out / "configs" / f"layer_{layer}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def screen_layer(config: Path, layer: int, n_candidates: int, n_prompts: int, max_new_tokens: int,
                 record: dict, save) -> None:
    """Steer every concept's candidates at `SETTINGS`; runs already in `record` are kept."""
    from steering.config import FeatureSpec
    from steering.engine import Engine
    from steering.inspection.cards import load_feature_cards
    from steering.offline.eval.answers import Answers, AnswerStore, shared_dir
    from steering.offline.eval.candidates import candidates
    from steering.offline.eval.grades import fluency_ratio
    from steering.offline.eval.lexicons import concept as tight
    from steering.offline.eval.scorer import LightScorer
    from steering.offline.eval.splits import split
    from steering.offline.rank_report import generate_many
    from steering.sae import resolve_sae_folder

    prompts = list(split("pick").prompts[:n_prompts])
    with Engine.from_config(config, device="cpu", dtype="float32") as engine:
        c = engine.config
        cards = load_feature_cards(resolve_sae_folder(c.sae_source(), c.sae.subfolder(layer), c.sae.revision))
        norm = engine.typical_norm(layer)
        plain = Answers(engine, None, AnswerStore(shared_dir()))
        scorer = LightScorer(engine, plain, max_new_tokens)
        base = scorer.score(tight("music"), prompts, plain.get(prompts, 0, max_new_tokens))["rows"]
        entry = record.setdefault("screen", {})
        entry.update(typical_norm=norm, settings=[[m, round(f * norm, 1)] for m, f in SETTINGS], prompts=prompts)
        for name in CONCEPTS:
            concept = tight(name)
            found = entry.setdefault("concepts", {}).get(name)
            if found is None:
                found = {"candidates": candidates(engine, cards, concept, layer, norm, n_candidates), "runs": []}
                entry["concepts"][name] = found
            done = {(r["index"], r["mode"], r["strength"]) for r in found["runs"]}
            todo = [(f["index"], m, round(fr * norm, 1)) for f in found["candidates"] for m, fr in SETTINGS]
            todo = [t for t in todo if t not in done]
            per = max(1, 48 // len(prompts))
            for b in range(0, len(todo), per):
                chunk = todo[b : b + per]
                plans = [engine.plan({FeatureSpec(layer=layer, index=i).key: s}, mode=m,
                                     features=[FeatureSpec(layer=layer, index=i, strength=s)]) for i, m, s in chunk]
                for (i, m, s), answers in zip(chunk, generate_many(engine, prompts, plans, max_new_tokens, 0)):
                    out = scorer.score(concept, prompts, answers)
                    found["runs"].append({"index": i, "mode": m, "strength": s,
                                          "inclusion": out["summary"]["lexicon"],
                                          "fluency_ratio": round(fluency_ratio(out["rows"], base), 4),
                                          "answers": [r["answer"] for r in out["rows"]]})
                save()
            best = max(found["runs"], key=margin)
            print(f"layer {layer} {name:>9}: best #{best['index']} {best['mode']} {best['strength']}: "
                  f"{best['inclusion']:.0%} / {best['fluency_ratio']:.2f}", flush=True)


def summary_rows(results: dict) -> list[dict]:
    rows = []
    for layer, r in sorted(results["layers"].items(), key=lambda kv: int(kv[0])):
        row = {"layer": int(layer), **r.get("quality", {}), **r.get("output_scores", {})}
        concepts = r.get("screen", {}).get("concepts", {})
        best = {n: max(c["runs"], key=margin) for n, c in concepts.items() if c["runs"]}
        row["best"] = best
        row["met"] = sum(margin(b) >= 0 for b in best.values())
        row["steering_runs"] = sum(len(c["runs"]) for c in concepts.values())
        row["runs_met"] = sum(margin(x) >= 0 for c in concepts.values() for x in c["runs"])
        rows.append(row)
    return rows


def markdown(results: dict) -> str:
    rows = summary_rows(results)
    concepts = [c for c in CONCEPTS if any(c in r["best"] for r in rows)]
    q = " | ".join(f"output score q{int(x * 100)}" for x in QUANTILES)
    lines = [f"Layer probe: {results['tokens']:,} training positions per probe SAE, {results['epochs']} epochs; "
             f"screen on {results['n_prompts']} pick prompts, {results['max_new_tokens']} tokens, seed 0. "
             f"Command: `{results['command']}`", "",
             f"| layer | held-out FVE (centred) | {q} | share > 0.1 | concepts met | runs met |",
             "|---" * (5 + len(QUANTILES)) + "|"]
    for r in rows:
        qs = " | ".join(f"{r[f'q{int(x * 100)}']:.3g}" if f"q{int(x * 100)}" in r else "-" for x in QUANTILES)
        lines.append(f"| {r['layer']} | {r.get('fve_centred', float('nan')):.3f} | {qs} | "
                     f"{r.get('share_above_0.1', float('nan')):.1%} | {r['met']}/{len(r['best'])} | "
                     f"{r['runs_met']}/{r['steering_runs']} |")
    lines += ["", "Best run per concept (inclusion / fluency ratio; ✓ meets the target):", "",
              "| layer | " + " | ".join(concepts) + " |", "|---" * (len(concepts) + 1) + "|"]
    for r in rows:
        cells = []
        for c in concepts:
            b = r["best"].get(c)
            cells.append("-" if b is None else f"#{b['index']} {b['mode']} {b['strength']:g}: {b['inclusion']:.0%} / "
                         f"{b['fluency_ratio']:.2f}" + (" ✓" if margin(b) >= 0 else ""))
        lines.append(f"| {r['layer']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for layer, r in sorted(results["layers"].items(), key=lambda kv: int(kv[0])):
        scores = r.get("output_scores", {}).get("scores")
        if scores:
            s = sorted(scores, reverse=True)
            ax.plot([(k + 1) / len(s) for k in range(len(s))], [max(v, 1e-6) for v in s], label=f"layer {layer}")
    ax.set(yscale="log", xlabel="share of live features (sampled), best first", ylabel="output score (Arad et al.)",
           title="Output scores of each probe SAE's features")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    from steering.offline.activations import cache_activations, default_cache_dir
    from steering.offline.corpus import read_documents
    from steering.offline.feature_stats import compute as feature_stats

    p = argparse.ArgumentParser(prog="python -m steering.offline.layer_probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, required=True, help="corpus folder whose training cache holds the layers")
    p.add_argument("--layers", default="18,20,22,24,26")
    p.add_argument("--model", default="embedded:smollm2-135m-instruct")
    p.add_argument("--tokens", type=int, default=262_000, help="training positions per probe SAE")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--heldout-tokens", type=int, default=40_000, help="held-out positions for FVE and densities")
    p.add_argument("--output-sample", type=int, default=2048, help="live features whose output score is measured")
    p.add_argument("--candidates", type=int, default=3, help="features screened per concept and layer")
    p.add_argument("--n-prompts", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--root", type=Path, default=None, help="where the probe SAEs go (default: under the cache root)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/runs/layer_probe"))
    p.add_argument("--steps", default="train,stats,screen", help="which steps to run (comma-separated)")
    args = p.parse_args(argv)
    layers = [int(x) for x in args.layers.split(",")]
    steps = set(args.steps.split(","))
    root = args.root or probe_root()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {"layers": {}}
    held = sorted({*map(int, results["layers"]), *layers})
    results.update(tokens=args.tokens, epochs=args.epochs, n_prompts=args.n_prompts,
                   max_new_tokens=args.max_new_tokens, corpus_manifest=_manifest(args.corpus),
                   command=rerun_command(argv if argv is not None else sys.argv[1:], held))

    def save() -> None:
        path.write_text(json.dumps(results, indent=1))
        (args.out / "summary.md").write_text(markdown(results))

    heldout = {at: default_cache_dir(args.model, at, args.corpus, "heldout_probe") for at in layers}
    if "stats" in steps and not all((f / "meta.json").exists() for f in heldout.values()):
        from steering.model.loading import load_model

        model, tok = load_model(args.model, device="cpu", dtype="float32")[:2]
        cache_activations(model, tok, read_documents(args.corpus / "heldout.jsonl"), layers, heldout, shard_tokens=16_384,
                          max_tokens=args.heldout_tokens)
        del model
    for layer in layers:
        r = results["layers"].setdefault(str(layer), {})
        folder = root / f"layer_{layer}"
        t0 = time.time()
        if "train" in steps:
            train_probe_sae(layer, args.corpus, args.tokens, args.epochs, folder, args.model)
            r.setdefault("train_seconds", round(time.time() - t0))
            save()
        if "stats" in steps and "output_scores" not in r:
            r["quality"] = heldout_quality(folder, heldout[layer])
            feature_stats(folder, heldout[layer], progress=False, skip_output=True)  # densities, for the cards
            r["output_scores"] = sampled_output_scores(folder, layer, args.model, args.output_sample)
            from steering.offline.contexts import main as contexts

            contexts([str(folder), "--cache", str(default_cache_dir(args.model, layer, args.corpus, "train")),
                      "--tokens", str(args.tokens)])
            save()
        if "screen" in steps:
            config = write_config(layer, root, args.out)
            screen_layer(config, layer, args.candidates, args.n_prompts, args.max_new_tokens, r, save)
            save()
    plot(results, args.out / "output_scores.png")
    save()
    print(markdown(results))


def rerun_command(argv: Sequence[str], layers: Sequence[int] | None = None) -> str:
    """The command line that reruns the whole probe: `--steps` only splits one run into parts, so it is left out;
    `--layers` names `layers` (every layer the results hold, when a run added to earlier ones) if given."""
    args, skip = [], None
    for a in argv:
        if skip == "--steps":
            skip = None
        elif skip == "--layers":
            skip = None
            args.append(",".join(map(str, layers)) if layers else a)
        elif a in ("--steps", "--layers"):
            skip = a
            if a == "--layers":
                args.append(a)
        elif a.startswith("--layers=") and layers:
            args.append("--layers=" + ",".join(map(str, layers)))
        elif not a.startswith("--steps="):
            args.append(a)
    if layers and not any(a == "--layers" or a.startswith("--layers=") for a in argv):
        args += ["--layers", ",".join(map(str, layers))]
    return portable(" ".join(["python -m steering.offline.layer_probe", *args]))


def portable(text: str) -> str:
    """`text` with the home folder written `~` (which the config and the CLI expand), so a committed file names no
    one machine's paths."""
    home = str(Path.home())
    return text.replace(home + "/", "~/") if home not in ("", "/") else text


def _manifest(corpus: Path) -> dict:
    m = Path(corpus) / "manifest.json"
    if not m.exists():
        return {}
    data = json.loads(m.read_text())
    return {"profile": data.get("profile"), "tokens": data.get("tokens")}


if __name__ == "__main__":
    main()
