"""Does steering work? Find concept features, then sweep their strength and measure it.

    python -m steering.offline.evaluate find  [demo.yaml] [--concepts ocean,dogs,...]
    python -m steering.offline.evaluate sweep [demo.yaml] [--out benchmarks/runs/steering_eval]

**find** ranks SAE features by the inspector's differential score (`steering.inspection.stats.differential_features`:
mean code on prompts about a concept minus mean code on neutral prompts, at the last prompt token),
shows each candidate's automatic label, and screens the best few by steering 8 neutral prompts and
counting answers that mention the concept and measuring their fluency. It prints candidates; a person
picks the defaults.

**sweep** takes every feature of the config whose label names a concept below and, over
the `neutral` split (40 prompts with no concept in them), generates answers:
- unsteered (once), and with the system prompt "Talk about X in every answer." (the baseline);
- steered with that feature alone, in `add` and `clamp` mode, at each strength of `--strengths`
  (`--strengths config`: once, at the feature's own strength and mode, to check the shipped settings
  on a `--seed` they were not picked on).

Concept inclusion: the share of answers that contain at least one of the concept's keywords
(case-insensitive, whole words; the endings -s, -es, -d, -ed and -ing allowed): version 1 (broad) of the
concepts' word lists (`steering/offline/eval/data/lexicons/`).
Fluency: the perplexity of the answers under the *unsteered* model, conditioned on the same chat prompt
(without any system prompt about the concept), divided by the perplexity of the unsteered answers.
Also reported, the text-only fluency ratio: the same perplexity ratio with the answers read as plain text
(no prompt), which does not count leaving the prompt's topic as disfluency.
Answers come through the serving path, the engine's own decoder (`Engine.run_now`), with the config's
generation settings (the app's: temperature 0.7, top-p 0.9, repetition penalty 1.1) and one seed per
prompt (`seed * 1000 + i` for prompt i), so the figures measure what a visitor gets (the evaluation's one answer
loop, `eval.answers.generate`). The prompts are the `neutral` split, the scores `scoring`'s.
Writes a run directory OUT/: `config.yaml` (the command and its settings), `results.json` (every answer),
`table.md` and `plot.png`."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Sequence

import torch

from steering.offline.eval.answers import generate, seeds_for
from steering.offline.eval.lexicons import BROAD, concept, concept_for, concepts, mentions
from steering.offline.eval.report import write_run
from steering.offline.eval.splits import split
from steering.offline.scoring import add_text_only_fluency, answer_nll, score

NEUTRAL = "neutral"
"""The prompt split of the sweep (40 prompts with no concept in them)."""


def generate_answers(engine, prompts: Sequence[str], plan=None, system_prompt: str | None = None,
                     max_new_tokens: int = 48, seed: int = 0) -> list[list[int]]:
    """Answers to each prompt through the serving path, prompt i sampled with seed `seed * 1000 + i`."""
    return generate(engine, prompts, seeds_for(seed, len(prompts)), max_new_tokens, plan, system_prompt)


def sweep(config_path: str, out: Path, strengths: Sequence[float] | None, modes: Sequence[str] = ("add", "clamp"),
          max_new_tokens: int = 96, prompts: Sequence[str] | None = None, seed: int = 0) -> dict:
    """`strengths=None` runs each feature once, at its own strength and mode from the config: a check of the
    shipped settings (use another `seed` than the one the settings were picked on)."""
    from steering.engine import Engine

    prompts = list(split(NEUTRAL).prompts) if prompts is None else list(prompts)
    s = Engine.from_config(config_path, device="cpu", dtype="float32")
    model, tok = s.model, s.tokenizer
    t0 = time.time()
    base = generate_answers(s, prompts, max_new_tokens=max_new_tokens, seed=seed)
    base_nll = answer_nll(model, tok, prompts, base)
    base_texts = [tok.decode(a, skip_special_tokens=True) for a in base]
    result = {"prompts": list(prompts), "strengths": "config" if strengths is None else list(strengths),
              "modes": "config" if strengths is None else list(modes), "seed": seed, "max_new_tokens": max_new_tokens,
              "layer_norm": s.typical_norm(s.inspector_layer),
              "unsteered": {"answers": base_texts, "perplexity": math.exp(base_nll[0] / base_nll[1])},
              "features": []}
    for f in s.features:
        concept = concept_for(f.label, BROAD)
        if concept is None:
            print(f"skipping {f.key} ({f.label}): no concept keywords for its label")
            continue
        entry = {"key": str(f.key), "layer": f.layer, "index": f.index, "label": f.label, "concept": concept.name,
                 "default_strength": f.strength,
                 "unsteered_inclusion": sum(mentions(t, concept.words) for t in base_texts) / len(base_texts)}
        sysp = generate_answers(s, prompts, system_prompt=concept.system, max_new_tokens=max_new_tokens,
                                seed=seed)
        entry["system_prompt"] = {"text": concept.system, **score(model, tok, prompts, sysp, concept, base_nll)}
        entry["runs"] = []
        settings = ([(f.mode or s.config.mode, f.strength)] if strengths is None
                    else [(mode, st) for mode in modes for st in strengths])
        for mode, st in settings:
            plan = s.plan({f.key: st}, mode=mode, features=[f])
            ans = generate_answers(s, prompts, plan=plan, max_new_tokens=max_new_tokens, seed=seed)
            r = {"mode": mode, "strength": st, **score(model, tok, prompts, ans, concept, base_nll)}
            entry["runs"].append(r)
            print(f"{f.key} {f.label:>10} {mode:>5} {st:6.1f}: inclusion {r['inclusion']:.2f}  "
                  f"fluency ratio {r['fluency_ratio']:.2f}  ({time.time() - t0:.0f}s)", flush=True)
        ok = [r for r in entry["runs"] if r["inclusion"] >= 0.7 and r["fluency_ratio"] <= 2.0]
        entry["meets_target"] = bool(ok)
        entry["best"] = max(entry["runs"], key=lambda r: (r["fluency_ratio"] <= 2.0, r["inclusion"], -r["fluency_ratio"]))
        result["features"].append(entry)
        print(f"{f.key} {f.label}: system prompt inclusion {entry['system_prompt']['inclusion']:.2f} "
              f"ratio {entry['system_prompt']['fluency_ratio']:.2f}; target met: {entry['meets_target']}", flush=True)
    add_text_only_fluency(result, model, tok)
    result["seconds"] = time.time() - t0
    s.close()
    record = {"command": "python -m steering.offline.evaluate sweep", "engine": {"config": str(config_path),
              "device": "cpu", "dtype": "float32"}, "split": split(NEUTRAL).ref, "n_prompts": len(prompts),
              "seed": seed, "max_new_tokens": max_new_tokens, "lexicon": BROAD,
              "strengths": "config" if strengths is None else list(strengths),
              "modes": "config" if strengths is None else list(modes)}
    write_run(out, record, result, markdown_table(result), plot_fn=plot)
    return result


def markdown_table(result: dict) -> str:
    def text(r):
        return f" {r['text_fluency_ratio']:.2f} |" if "text_fluency_ratio" in r else " - |"

    lines = ["| feature | mode | strength | concept inclusion | fluency ratio | text-only fluency ratio |",
             "|---|---|---|---|---|---|"]
    for e in result["features"]:
        name = f"{e['label']} ({e['key']})"
        lines.append(f"| {name} | unsteered | - | {e['unsteered_inclusion']:.0%} | 1.00 | 1.00 |")
        sp = e["system_prompt"]
        lines.append(f"| {name} | system prompt | - | {sp['inclusion']:.0%} | {sp['fluency_ratio']:.2f} |" + text(sp))
        for r in e["runs"]:
            mark = " ✓" if r["inclusion"] >= 0.7 and r["fluency_ratio"] <= 2.0 else ""
            lines.append(f"| {name} | {r['mode']} | {r['strength']:g} | {r['inclusion']:.0%}{mark} | "
                         f"{r['fluency_ratio']:.2f} |" + text(r))
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    feats = result["features"]
    cols = min(3, max(1, len(feats)))
    rows = math.ceil(len(feats) / cols) if feats else 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    for ax, e in zip(axes.flat, feats):
        for mode, marker in (("add", "o-"), ("clamp", "s--")):
            runs = [r for r in e["runs"] if r["mode"] == mode]
            if not runs:
                continue
            xs, ys = [r["fluency_ratio"] for r in runs], [r["inclusion"] for r in runs]
            ax.plot(xs, ys, marker, label=mode)
            for r in runs:
                ax.annotate(f"{r['strength']:g}", (r["fluency_ratio"], r["inclusion"]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
        sp = e["system_prompt"]
        ax.plot([sp["fluency_ratio"]], [sp["inclusion"]], "*", markersize=13, color="k", label="system prompt")
        ax.plot([1.0], [e["unsteered_inclusion"]], "x", color="gray", label="unsteered")
        ax.axhspan(0.7, 1.02, xmin=0, xmax=1, color="green", alpha=0.06)
        ax.axvline(2.0, color="red", lw=0.8, ls=":")
        ax.axhline(0.7, color="green", lw=0.8, ls=":")
        ax.set_title(f"{e['label']} ({e['key']})", fontsize=10)
        ax.set_xlabel("fluency ratio (perplexity / unsteered)")
        ax.set_ylabel("concept inclusion")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        top = max([r["fluency_ratio"] for r in e["runs"]] + [sp["fluency_ratio"], 2.5])
        ax.set_xlim(0.8, top * 1.25)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(feats):]:
        ax.axis("off")
    fig.suptitle(f"SAE steering, {len(result['prompts'])} neutral prompts, {result.get('max_new_tokens', '?')}-token answers "
                 "(numbers: strength)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def find(config_path: str, concepts: Sequence[str], n: int = 5, screen: int = 3, strength: float = 40.0,
         sae_folder: str | None = None, chat: bool = False, search: int = 3) -> dict:
    """For each concept: the inspector's differential ranking (concept prompts vs neutral prompts), plus up to
    `search` features whose automatic label names the concept; the first `screen` ranked candidates and the
    label hits are screened by steering 8 neutral prompts (add mode, `strength`), counting concept mentions and
    measuring the fluency ratio as the sweep does.

    With `chat=False` the prompts are read as plain text without their final punctuation, so the last
    token (where the inspector reads codes) is the concept word itself; in the chat template the last token
    is the template's "assistant" line, whose features barely depend on the topic.
    """
    from steering.config import FeatureSpec
    from steering.engine import Engine
    from steering.inspection.labels import load_feature_contexts

    s = Engine.from_config(config_path, device="cpu", dtype="float32")
    layer = s.inspector_layer
    try:
        fc = load_feature_contexts(sae_folder) if sae_folder else None
    except FileNotFoundError:
        fc = None
    neutral = list(split(NEUTRAL).prompts)
    screen_prompts = neutral[:8]
    base = generate_answers(s, screen_prompts, max_new_tokens=32)
    base_nll = answer_nll(s.model, s.tokenizer, screen_prompts, base)

    def prep(prompts):
        return [p.rstrip(".?!") for p in prompts] if not chat else list(prompts)

    found = {}
    for name in concepts:
        c = concept(name, BROAD)
        ranked = s.differential(prep(c.differential_prompts), prep(neutral), n=n, chat=chat)
        cands = [(r.index, "differential", r.score) for r in ranked]
        if fc is not None:
            for word in c.words[:4]:
                for i in fc.search(word, search):
                    if i not in [x[0] for x in cands]:
                        cands.append((i, f"label:{word}", None))
        rows = []
        for rank, (index, how, ranking_score) in enumerate(cands):
            row = {"index": index, "found_by": how, "score": None if ranking_score is None else round(ranking_score, 3),
                   "label": fc.label(index) if fc else ""}
            if rank < screen or how.startswith("label"):
                spec = FeatureSpec(layer=layer, index=index, strength=strength, label=name)
                plan = s.plan({spec.key: strength}, mode="add", features=[spec])
                ans = generate_answers(s, screen_prompts, plan=plan, max_new_tokens=32)
                scored = score(s.model, s.tokenizer, screen_prompts, ans, c, base_nll)
                row["screen_inclusion"] = scored["inclusion"]
                row["screen_fluency_ratio"] = round(scored["fluency_ratio"], 2)
                row["screen_example"] = scored["answers"][0][:160]
            rows.append(row)
            print(f"{name:>9} L{layer}:{index:<6} {how:>14} score {row['score']} label {row['label']!r:40} "
                  f"screen {row.get('screen_inclusion', '-')} ratio {row.get('screen_fluency_ratio', '-')}  "
                  f"{row.get('screen_example', '')[:80]!r}", flush=True)
        found[name] = rows
    s.close()
    return found


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m steering.offline.evaluate", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pf = sub.add_parser("find", help="rank candidate features for concepts")
    pf.add_argument("config", nargs="?", default="demo.yaml")
    pf.add_argument("--concepts", default=",".join(concepts(BROAD)))
    pf.add_argument("--n", type=int, default=5)
    pf.add_argument("--screen", type=int, default=3)
    pf.add_argument("--strength", type=float, default=40.0, help="screening strength (add mode)")
    pf.add_argument("--sae-folder", default=None, help="folder with feature_contexts.json.gz, for labels")
    pf.add_argument("--out", type=Path, default=None)
    pf.add_argument("--chat", action="store_true", help="read codes at the chat template's last token")
    pf.add_argument("--search", type=int, default=3, help="label hits per keyword to screen as well")
    ps = sub.add_parser("sweep", help="strength sweep of the config's features")
    ps.add_argument("config", nargs="?", default="demo.yaml")
    ps.add_argument("--out", type=Path, default=Path("benchmarks/runs/steering_eval"), help="the run directory")
    ps.add_argument("--strengths", default="30,40,50",
                    help="comma-separated, or 'config': each feature once at its own strength and mode")
    ps.add_argument("--seed", type=int, default=0, help="sampling seed (answers are sampled as in the app)")
    ps.add_argument("--modes", default="add,clamp")
    ps.add_argument("--max-new-tokens", type=int, default=96, help="answer length (the app allows 256)")
    ps.add_argument("--n-prompts", type=int, default=None, help="use the first N neutral prompts (default: all 40)")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.cmd == "find":
        found = find(args.config, args.concepts.split(","), args.n, args.screen, args.strength, args.sae_folder,
                     args.chat, args.search)
        if args.out:
            args.out.write_text(json.dumps(found, indent=2))
    else:
        strengths = None if args.strengths == "config" else [float(x) for x in args.strengths.split(",")]
        r = sweep(args.config, args.out, strengths, args.modes.split(","), args.max_new_tokens,
                  list(split(NEUTRAL).prompts)[: args.n_prompts], args.seed)
        print(markdown_table(r))


if __name__ == "__main__":
    main()
