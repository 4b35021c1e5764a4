"""Write a pick screen's run config from an SAE layer's own candidates for each concept.

    python -m steering.offline.eval.candidates --layer 26 --concepts sports,music,paris,dogs,fear \
        --settings add:0.16,0.24,0.32 clamp:0.24 --out benchmarks/round5_pick.yaml

A screen lists its features by index, so someone must choose them; this does it the way the layer probe did, and
writes the result down where the run config keeps it: per concept, a pool of label matches (`label_candidates` on
the tight lexicon's words) and the top differential features (`Engine.differential` on the concept's prompt sets),
ranked by the live output score on the concept's own tokens (`rank_concept`, at the layer's typical norm); the best
`--n` become features of the screen (`--pools` adds `says`: features whose label, top words or raised tokens
name the concept, the output features a late layer has) at every `--settings` entry, a strength given as a fraction of the layer's
typical norm (angular modes: in degrees, as they are). Each feature's line carries its label and score as a comment.
Only the pick split is read: the screen is a pick run, and `eval pick` refuses a report split."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from steering.config import MODE_INFO, MODES


POOLS = ("labels", "differential", "says")
"""Where candidates come from: label matches (`label_candidates`: label and top words, what a feature fires on), the
differential top on the concept's prompt sets, and `says` (`features_for_concept`: the concept named in a feature's
label, top words or the tokens steering with it raises, which finds output features late in a model)."""


RANKS = ("live", "output")
"""How the pool is ordered: `live`, the output score on the concept's own tokens measured now (`rank_concept`);
`output`, the feature's shipped output score (Arad et al.'s, on its own logit-lens tokens; no model run)."""


def candidates(engine, cards, concept, layer: int, norm: float, n: int,
               pools: Sequence[str] = ("labels", "differential"), rank: str = "live") -> list[dict]:
    """The concept's best `n` features among the `pools`' candidates, by `rank`."""
    from steering.inspection.concept_rank import features_for_concept, rank_concept
    from steering.inspection.concepts import concept_prompt_sets
    from steering.offline.eval.pick import label_candidates

    matched = label_candidates(cards, concept.words, n=12) if "labels" in pools else []
    diff = []
    if "differential" in pools:
        pos, neg = concept_prompt_sets(concept.probe_subjects[0])
        diff = [r.index for r in engine.differential(pos, neg, n=12, chat=False, layer=layer)]
    says = [r.index for r in features_for_concept(cards, concept.name, n=16)] if "says" in pools else []
    matched = list(dict.fromkeys(matched + says))
    pool = list(dict.fromkeys(matched + diff))
    if rank == "output":
        scored = sorted(((float(cards.output_scores[i]), i) for i in pool), key=lambda x: -x[0])
        return [{"index": i, "output_score": v, "label": cards.label(i), "matched": i in matched} for v, i in scored[:n]]
    ranked = rank_concept(engine.backend, layer, engine.sae(layer).W_dec.float(), pool, concept.name, norm)
    return [{"index": r.index, "live_output": r.score, "label": cards.label(r.index), "matched": r.index in matched}
            for r in ranked[:n]]


def parse_settings(items: Sequence[str]) -> list[tuple[str, list[float]]]:
    """`add:0.16,0.24` -> [("add", [0.16, 0.24])]; a bad entry is named with its fix."""
    out = []
    for item in items:
        mode, _, values = item.partition(":")
        if mode not in MODES:
            raise ValueError(f"--settings {item!r}: {mode!r} is not a mode. Fix: one of {', '.join(MODES)}")
        try:
            numbers = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            numbers = []
        if not numbers:
            raise ValueError(f"--settings {item!r}: give numbers after the colon. Fix: {mode}:0.16,0.24")
        out.append((mode, numbers))
    return out


def strengths(mode: str, values: Sequence[float], norm: float) -> list[float]:
    """Fractions of the typical norm become strengths; a mode measured in degrees takes its values as they are."""
    if "degree" in MODE_INFO[mode].unit:
        return [float(v) for v in values]
    return [round(v * norm) for v in values]


def render(name: str, base: str, split: str, n_prompts: int, layer: int, norm: float, settings, found: dict,
           command: str) -> str:
    lines = [f"# Pick screen of layer {layer}'s SAE features, candidates chosen by steering.offline.eval.candidates:",
             f"# {command}",
             f"# Layer {layer}'s typical norm: {norm:.0f}. Settings: "
             + "; ".join(f"{m} {', '.join(map(str, strengths(m, v, norm)))}" for m, v in settings),
             f"# python -m steering.offline.eval pick {{this file}}",
             f"name: {name}", "engine:", f"  config: {base}", "  device: cpu", f"split: {split}",
             f"n_prompts: {n_prompts}", "seeds: [0]", "max_new_tokens: 48", "baseline: false",
             "scorer: {kind: light, lexicon: 2}", "features:"]
    for concept, rows in found.items():
        for r in rows:
            label = (r["label"] or "").replace("#", "").replace("\n", " ")
            score = (f"live output score {r['live_output']:.3f}" if "live_output" in r
                     else f"output score {r['output_score']:.3f}")
            lines.append(f"  # {concept}: #{r['index']} \"{label}\", {score}"
                         + (", word match" if r["matched"] else ", differential"))
            for mode, values in settings:
                s = ", ".join(str(x) for x in strengths(mode, values, norm))
                lines.append(f"  - {{layer: {layer}, index: {r['index']}, concept: {concept}, mode: {mode}, strength: [{s}]}}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    from steering.engine import Engine
    from steering.inspection.cards import load_feature_cards
    from steering.offline.eval.lexicons import concept as tight
    from steering.offline.eval.lexicons import concept_names
    from steering.sae import resolve_sae_folder

    p = argparse.ArgumentParser(prog="python -m steering.offline.eval.candidates", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="demo.yaml", help="the app config whose SAE source has the layer")
    p.add_argument("--layer", type=int, required=True)
    p.add_argument("--concepts", required=True, help="comma-separated concept names (steering/offline/eval/data)")
    p.add_argument("--n", type=int, default=3, help="features per concept")
    p.add_argument("--settings", nargs="+", default=["add:0.16,0.24,0.32", "clamp:0.24"],
                   help="MODE:VALUES; a strength is a fraction of the typical norm (degrees for angular modes)")
    p.add_argument("--pools", default="labels,differential",
                   help=f"comma-separated candidate sources: {', '.join(POOLS)}")
    p.add_argument("--rank", default="live", choices=RANKS, help="how the pool is ordered (see RANKS)")
    p.add_argument("--split", default="pick3")
    p.add_argument("--n-prompts", type=int, default=16)
    p.add_argument("--name", default=None, help="the run's name (default: the output file's stem)")
    p.add_argument("--out", type=Path, required=True, help="the run config to write")
    args = p.parse_args(argv)
    names = [c.strip() for c in args.concepts.split(",") if c.strip()]
    unknown = [c for c in names if c not in concept_names()]
    try:
        if unknown:
            raise ValueError(f"--concepts: {', '.join(unknown)} not known. Fix: any of {', '.join(concept_names())}")
        settings = parse_settings(args.settings)
        pools = [x.strip() for x in args.pools.split(",") if x.strip()]
        if not pools or any(x not in POOLS for x in pools):
            raise ValueError(f"--pools {args.pools!r}: not a list of candidate sources. Fix: any of {','.join(POOLS)}")
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    base = Path(args.config).resolve()
    with Engine.from_config(base, device="cpu", dtype="float32") as engine:
        c = engine.config
        cards = load_feature_cards(resolve_sae_folder(c.sae_source(), c.sae.subfolder(args.layer), c.sae.revision))
        norm = engine.typical_norm(args.layer)
        found = {}
        for name in names:
            found[name] = candidates(engine, cards, tight(name), args.layer, norm, args.n, pools, args.rank)
            print(name + ": " + ", ".join(f"#{r['index']} {r['label']!r}" for r in found[name]), flush=True)
    rel = Path(os.path.relpath(base, args.out.resolve().parent))
    command = "python -m steering.offline.eval.candidates " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.write_text(render(args.name or args.out.stem, rel.as_posix(), args.split, args.n_prompts, args.layer,
                               norm, settings, found, command))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
