"""Do features ranked by output score steer better than features ranked by input differential?

    python -m steering.offline.rank_report [demo.yaml] --concepts football,music,food,computers,ocean,dogs \
        --out benchmarks/runs/rank_report

Per concept, three top-10 lists over the inspector layer's SAE:
- **differential** (input side): `Engine.differential` on `inspection.concepts.concept_prompt_sets(concept)`,
  read as plain text at the last token (`chat=False`), as the inspector's concept search does;
- **live output score** (output side, the one `inspection.concept_rank` computes for a concept):
  `rank_concept` over a candidate pool (the differential's top `POOL` plus up to `POOL` `features_for_concept`
  matches), i.e. how much adding the feature's direction at `LIVE_FRACTION` x the layer's typical norm raises
  the concept's own tokens on the neutral prompts, steered minus unsteered;
- **shipped output score** (Arad et al.'s per-feature score, logit-lens tokens, from `feature_stats.safetensors`),
  restricted to the same pool.
The inspector's concept search (`service.inspector.concept_search`) ranks by the differential alone; the output
score meant for a concept is the live one (`concept_rank.rank_concept`), the shipped one being per feature.

Every feature on a list is steered through the serving path (`Engine.run_now`, the config's sampling
settings, prompt j seeded `seed * 1000 + j` (`eval.answers.generate`); several features' requests share one
batch, each row with its own plan) on the first `--n-prompts` (7) prompts of the `neutral` split (the first
pick prompts), `--max-new-tokens` 48, at one strength per mode fixed in advance:
add at `ADD_FRACTION` and clamp at `CLAMP_FRACTION` of the layer's typical norm (the sweep's typical
target-meeting settings, add 30 and clamp 40 at norm 176.9; benchmarks/runs/steering_eval/table.md). Inclusion
and fluency ratio are `scoring.score`'s, with the broad word lists (lexicon version 1), as the sweep measures them. A feature *steers* when at least one of
its two settings reaches inclusion >= 70% with fluency ratio <= 2 (the sweep's `meets_target`).
Writes the run directory OUT/: config.yaml (the command and its settings), results.json (every ranking, score and
answer) and table.md."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from steering.offline.eval.answers import generate, seeds_for
from steering.offline.eval.lexicons import BROAD, concept, concepts, mentions
from steering.offline.eval.report import write_run
from steering.offline.eval.splits import split

TARGET_INCLUSION, TARGET_RATIO = 0.7, 2.0
ADD_FRACTION, CLAMP_FRACTION = 0.17, 0.23
"""Steering strengths as fractions of the layer's typical residual norm (~30 and ~40 at 176.9)."""
LIVE_FRACTION = 1.0
"""The live output score's strength, as the shipped score's (`feature_stats --alpha 1.0`)."""
TOP, POOL = 10, 50
LISTS = ("differential", "live_output", "shipped_output")
TITLES = {"differential": "input differential", "live_output": "live output score (concept tokens)",
          "shipped_output": "shipped output score (Arad et al.), same pool"}


def meets(run: Mapping) -> bool:
    return run["inclusion"] >= TARGET_INCLUSION and run["fluency_ratio"] <= TARGET_RATIO


def count(ranking: Sequence[int], runs: Mapping[int, Sequence[Mapping]]) -> dict:
    """How many features of `ranking` steer (any setting meets the target), and per mode."""
    out = {"n": len(ranking), "steers": sum(any(meets(r) for r in runs[i]) for i in ranking)}
    for mode in sorted({r["mode"] for i in ranking for r in runs[i]}):
        out[mode] = sum(any(meets(r) for r in runs[i] if r["mode"] == mode) for i in ranking)
    return out


def cell(c: Mapping) -> str:
    modes = ", ".join(f"{m} {c[m]}" for m in ("add", "clamp") if m in c)
    return f"**{c['steers']}**/{c['n']}" + (f" ({modes})" if modes else "")


def markdown(report: Mapping) -> str:
    """The summary table (one row per concept and a total), then per-concept feature tables."""
    head = ("| concept | unsteered inclusion | top 10 by " + " | top 10 by ".join(TITLES[k] for k in LISTS)
            + " | shared with differential (live / shipped) |")
    lines = [head, "|---" * (len(LISTS) + 3) + "|"]
    totals = {k: {"n": 0, "steers": 0} for k in LISTS}
    for name, c in report["concepts"].items():
        for k in LISTS:
            for f, v in c["counts"][k].items():
                totals[k][f] = totals[k].get(f, 0) + v
        diff = set(c["rankings"]["differential"])
        shared = " / ".join(str(len(diff & set(c["rankings"][k]))) for k in LISTS[1:])
        lines.append(f"| {name} | {c['unsteered_inclusion']:.0%} | "
                     + " | ".join(cell(c["counts"][k]) for k in LISTS) + f" | {shared} |")
    lines.append("| **all** | | " + " | ".join(cell(totals[k]) for k in LISTS) + " | |")
    out = ["\n".join(lines), ""]
    for name, c in report["concepts"].items():
        out += [f"### {name}", "", "| feature | label | lists (rank) | diff | live | shipped | "
                + " | ".join(f"{m} {s:g}" for m, s in report["settings"]) + " |",
                "|---" * (6 + len(report["settings"])) + "|"]
        for i in c["order"]:
            f = c["features"][str(i)]
            where = ", ".join(f"{k.split('_')[0]} {c['rankings'][k].index(i) + 1}" for k in LISTS
                              if i in c["rankings"][k])
            runs = [f"{r['inclusion']:.0%} / {r['fluency_ratio']:.2f}" + (" ✓" if meets(r) else "") for r in f["runs"]]
            lines_ = [f"{i}", str(f["label"] or "").replace("|", "/"), where, _num(f["differential"]),
                      _num(f["live_output"]), _num(f["shipped_output"])] + runs
            out.append("| " + " | ".join(lines_) + " |")
        out.append("")
    return "\n".join(out)


def _num(x) -> str:
    return "-" if x is None else f"{x:.3g}"


def rank_lists(s, cards, concept: str, layer: int, norm: float, top: int = TOP, pool: int = POOL) -> dict:
    """The three top-`top` lists of one concept, the pool, and every pool feature's three scores."""
    from steering.inspection.concept_rank import features_for_concept, rank_concept
    from steering.inspection.concepts import concept_prompt_sets

    pos, neg = concept_prompt_sets(concept)
    diff = s.differential(pos, neg, n=pool, chat=False, layer=layer)
    matched = [r.index for r in features_for_concept(cards, concept, n=pool)]
    cands = list(dict.fromkeys([r.index for r in diff] + matched))
    live = rank_concept(s.backend, layer, s.sae(layer).W_dec.float(), cands, concept, LIVE_FRACTION * norm)
    shipped = cards.output_scores
    by_shipped = sorted(cands, key=lambda i: -float(shipped[i])) if shipped is not None else []
    scores = {i: {"differential": None, "live_output": None, "shipped_output": float(shipped[i]) if shipped is not None else None,
                  "label": cards.label(i), "concept_match": i in matched} for i in cands}
    for r in diff:
        scores[r.index]["differential"] = r.score
    for r in live:
        scores[r.index]["live_output"] = r.score
    rankings = {"differential": [r.index for r in diff[:top]], "live_output": [r.index for r in live[:top]],
                "shipped_output": by_shipped[:top]}
    return {"pool": cands, "pool_matched": matched, "rankings": rankings, "scores": scores}


def run(config: str, concepts: Sequence[str], out: Path | None, n_prompts: int = 7, max_new_tokens: int = 48,
        top: int = TOP, pool: int = POOL, seed: int = 0, rows: int = 48) -> dict:
    from steering.config import FeatureSpec
    from steering.engine import Engine
    from steering.inspection.feature_info import load_feature_info
    from steering.offline.scoring import answer_nll, score

    t0 = time.time()
    s = Engine.from_config(config, device="cpu", dtype="float32")
    layer = s.inspector_layer
    info = load_feature_info(s.config, [layer])
    cards = info.cards(layer) if info is not None else None
    if cards is None:
        raise SystemExit(f"no feature data (feature_contexts.json.gz) in the SAE folder of layer {layer}")
    norm = s.typical_norm(layer)
    settings = [("add", round(ADD_FRACTION * norm, 1)), ("clamp", round(CLAMP_FRACTION * norm, 1))]
    prompts = list(split("neutral").prompts)[:n_prompts]
    base = generate(s, prompts, seeds_for(seed, len(prompts)), max_new_tokens)
    base_nll = answer_nll(s.model, s.tokenizer, prompts, base)
    base_texts = [s.tokenizer.decode(a, skip_special_tokens=True) for a in base]
    report = {"config": config, "layer": layer, "typical_norm": norm, "settings": settings, "prompts": prompts,
              "max_new_tokens": max_new_tokens, "seed": seed, "top": top, "pool": pool,
              "live_output_strength": LIVE_FRACTION * norm, "target": [TARGET_INCLUSION, TARGET_RATIO],
              "unsteered_answers": base_texts, "concepts": {}}
    scored: dict[tuple[int, str], dict] = {}  # shared by concepts: only inclusion depends on the concept
    print(f"loaded, unsteered answers in {time.time() - t0:.0f}s; settings {settings}", flush=True)
    for name in concepts:
        t1 = time.time()
        c = concept(name, BROAD)
        found = rank_lists(s, cards, name, layer, norm, top, pool)
        order = list(dict.fromkeys(i for k in LISTS for i in found["rankings"][k]))
        todo = [(i, mode, st) for i in order for mode, st in settings if (i, mode) not in scored]
        print(f"{name}: pool {len(found['pool'])}, {len(order)} features, {len(todo)} new runs "
              f"(ranked in {time.time() - t1:.0f}s)", flush=True)
        per = max(1, rows // len(prompts))
        for b in range(0, len(todo), per):
            chunk = todo[b : b + per]
            plans = [s.plan({FeatureSpec(layer=layer, index=i).key: st}, mode=mode,
                            features=[FeatureSpec(layer=layer, index=i, strength=st)]) for i, mode, st in chunk]
            for (i, mode, st), ans in zip(chunk, generate_many(s, prompts, plans, max_new_tokens, seed)):
                scored[(i, mode)] = {"mode": mode, "strength": st, **score(s.model, s.tokenizer, prompts, ans, c, base_nll)}
            print(f"  {name}: {min(b + per, len(todo))}/{len(todo)} runs ({time.time() - t0:.0f}s)", flush=True)
        feats, runs = {}, {}
        for i in order:
            runs[i] = [dict(scored[(i, mode)], inclusion=sum(mentions(a, c.words) for a in scored[(i, mode)]["answers"])
                            / len(prompts)) for mode, _ in settings]
            feats[str(i)] = {**found["scores"][i], "runs": runs[i]}
        counts = {k: count(found["rankings"][k], runs) for k in LISTS}
        report["concepts"][name] = {
            "unsteered_inclusion": sum(mentions(t, c.words) for t in base_texts) / len(base_texts),
            "counts": counts, "rankings": found["rankings"], "order": order, "pool": found["pool"],
            "pool_matched": found["pool_matched"], "features": feats,
            "pool_scores": {str(i): {k: v for k, v in sc.items() if k != "label"} for i, sc in found["scores"].items()},
            "seconds": time.time() - t1}
        print(f"{name}: " + "  ".join(f"{k} {cell(counts[k])}" for k in LISTS) + f"  ({time.time() - t1:.0f}s)",
              flush=True)
        if out is not None:
            write(report, out, time.time() - t0)
    report["seconds"] = time.time() - t0
    if out is not None:
        write(report, out, report["seconds"])
    return report


def generate_many(s, prompts: Sequence[str], plans: Sequence, max_new_tokens: int, seed: int) -> list[list[list[int]]]:
    """The answers of each plan to `prompts` (prompt j seeded `seed * 1000 + j`), all in one `Engine.run_now`
    batch, each row steered by its own plan, so each answer is the one it gets alone (up to float rounding)."""
    n = len(prompts)
    out = generate(s, list(prompts) * len(plans), seeds_for(seed, n) * len(plans), max_new_tokens,
                   [plan for plan in plans for _ in prompts], batch_size=n * len(plans))
    return [out[k : k + n] for k in range(0, len(out), n)]


def write(report: dict, out: Path, seconds: float) -> None:
    record = {"command": "python -m steering.offline.rank_report", "engine": {"config": report["config"], "device": "cpu",
              "dtype": "float32"}, "split": split("neutral").ref, "n_prompts": len(report["prompts"]),
              "seed": report["seed"], "max_new_tokens": report["max_new_tokens"], "lexicon": BROAD,
              "concepts": list(report["concepts"]), "top": report["top"], "pool": report["pool"]}
    write_run(out, record, {**report, "seconds": seconds}, markdown(report), plot_fn=None)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m steering.offline.rank_report", description=__doc__.split("\n\n")[0])
    p.add_argument("config", nargs="?", default="demo.yaml")
    p.add_argument("--concepts", default="football,music,food,computers,ocean,dogs")
    p.add_argument("--out", type=Path, default=Path("benchmarks/runs/rank_report"), help="the run directory")
    p.add_argument("--n-prompts", type=int, default=7,
                   help="the first N neutral prompts (the pick split); 7 keeps six concepts near 30 min on 2 cores")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--top", type=int, default=TOP)
    p.add_argument("--pool", type=int, default=POOL, help="differential candidates (and label matches) to rank")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rows", type=int, default=48, help="answers generated per batch (several features at once)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = [c.strip() for c in args.concepts.split(",") if c.strip()]
    unknown = [c for c in names if c not in concepts(BROAD)]
    if unknown:
        raise SystemExit(f"no keyword list for {unknown}; known: {', '.join(concepts(BROAD))}")
    r = run(args.config, names, args.out, args.n_prompts, args.max_new_tokens, args.top, args.pool, args.seed, args.rows)
    print(markdown(r).split("\n\n")[0])
    print(f"{r['seconds']:.0f}s")


if __name__ == "__main__":
    main()
