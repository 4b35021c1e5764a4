"""`python -m steering.offline.axbench score | probes | pick`: see `steering.offline.axbench` and `axbench_pick`."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from steering.offline.axbench import (
    PROBE_LAYER,
    PROBE_TOKENS,
    Scorer,
    concept_of,
    score_baseline,
    score_feature,
    score_unsteered,
)
from steering.offline.axbench_concepts import PROBE_HELDOUT_TEMPLATES, SPLITS, TIGHT
from steering.offline.axbench_grades import fluency_ratio, median_ppl_ratio, summarise


def _merge(per_seed: Sequence[dict], unsteered: Sequence[dict] | None = None) -> dict:
    """Rows of all seeds together; with the unsteered results of the same seeds, each summary (merged and per
    seed) also gets the fluency ratio against them (pooled) and the median prompt-free ppl ratio."""
    rows = [r for s in per_seed for r in s["rows"]]
    out = {"summary": summarise(rows), "per_seed": [dict(s["summary"]) for s in per_seed], "rows": rows}
    if unsteered is not None:
        base = [r for u in unsteered for r in u["rows"]]
        for summ, s, u in [(out["summary"], {"rows": rows}, {"rows": base})] + list(zip(out["per_seed"], per_seed, unsteered)):
            summ["fluency_ratio"] = round(fluency_ratio(s["rows"], u["rows"]), 4)
            summ["median_ppl_ratio"] = median_ppl_ratio(s["rows"])
    return out


def score(config: str, out: Path | None, features: Sequence[str] | None = None, split: str = "report",
          seeds: Sequence[int] = (0, 1), strengths: Sequence[float] | None = None, mode: str | None = None,
          max_new_tokens: int = 64, n_prompts: int | None = None, probe_layer: int = PROBE_LAYER,
          concepts: dict[str, str] | None = None, cache: bool = True, fit_prompts: int | None = None,
          probe_tokens: int = PROBE_TOKENS, engine=None, scorer: Scorer | None = None,
          specs: Sequence | None = None) -> dict:
    """Each feature alone (its config strength and mode, or each of `strengths` in `mode`), the system-prompt
    baseline and the unsteered answers, graded on `split`'s prompts at each seed. `engine` and `scorer` may be
    passed in (already built and fitted); `specs`, FeatureSpecs, replace the config's features."""
    from steering.engine import Engine

    t0 = time.time()
    engine = engine or Engine.from_config(config, device="cpu", dtype="float32")
    prompts = SPLITS[split][:n_prompts]
    scorer = scorer or Scorer.fit(engine, max_new_tokens, SPLITS["pick"][:fit_prompts], probe_layer=probe_layer,
                                  cache=cache, probe_tokens=probe_tokens)
    print(f"thresholds {scorer.thresholds.to_dict()} ({time.time() - t0:.0f}s)", flush=True)
    feats = list(specs) if specs else [_feature(engine, k, mode, (concepts or {}).get(k)) for k in features] \
        if features else list(engine.features)
    result = {"config": config, "split": split, "prompts": list(prompts), "seeds": list(seeds),
              "max_new_tokens": max_new_tokens, "probe_layer": probe_layer, "thresholds": scorer.thresholds.to_dict(),
              "fit": scorer.fit_info, "probes": {}, "features": []}
    for f in feats:
        c = concept_of(f, (concepts or {}).get(str(f.key)))
        settings = [(mode or f.mode or engine.config.mode, s) for s in strengths] if strengths else \
            [(f.mode or engine.config.mode, f.strength)]
        entry = {"key": str(f.key), "label": f.label, "concept": c.name, "kind": c.kind, "runs": []}
        unsteered = [score_unsteered(engine, c, prompts, seed, scorer=scorer) for seed in seeds]
        for m, s in settings:
            run = _merge([score_feature(engine, f, s, m, prompts, seed, concept=c, scorer=scorer) for seed in seeds],
                         unsteered)
            entry["runs"].append({"mode": m, "strength": s, **run})
            print(f"{f.key} {c.name} {m} {s:g}: {_fmt(run['summary'])} ({time.time() - t0:.0f}s)", flush=True)
        entry["baseline"] = _merge([score_baseline(engine, c, prompts, seed, scorer=scorer) for seed in seeds], unsteered)
        entry["unsteered"] = _merge(unsteered, unsteered)
        print(f"{f.key} {c.name} system prompt: {_fmt(entry['baseline']['summary'])}; unsteered: "
              f"{_fmt(entry['unsteered']['summary'])} ({time.time() - t0:.0f}s)", flush=True)
        p = scorer.probe(c)
        result["probes"][c.name] = {"threshold": p.threshold, "heldout": p.heldout}
        result["features"].append(entry)
    result["seconds"] = time.time() - t0
    if out is not None:
        write(result, out)
    return result


def _feature(engine, key: str, mode: str | None, concept: str | None):
    """The config's feature `key`, or (not in the config) the SAE feature `L<layer>:<index>` itself."""
    from steering.config import FeatureSpec
    from steering.keys import FeatureKey

    try:
        return engine.feature(key)
    except KeyError:
        k = FeatureKey.parse(key)
        return FeatureSpec(layer=k.layer, index=k.index, mode=mode, label=concept or str(k))


def write(result: dict, out: Path) -> None:
    from steering.offline.axbench_report import markdown, plot

    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(markdown(result))
    plot(result, out.with_suffix(".png"))


def _fmt(s: dict) -> str:
    ratio = f", fluency ratio {s['fluency_ratio']:.2f}" if "fluency_ratio" in s else ""
    return (f"concept {s['concept']:.2f} instruction {s['instruction']:.2f} fluency {s['fluency']:.2f} "
            f"score {s['score']:.2f} (lexicon {s['lexicon']:.0%}, probe {s['probe']:.0%}{ratio})")


def probes(config: str, layers: Sequence[int], concepts: Sequence[str], out: Path | None = None,
           max_new_tokens: int = 64) -> dict:
    """Held-out quality of each concept's probe at each layer, and how often it fires on other concepts' held-out texts."""
    from steering.engine import Engine

    engine = Engine.from_config(config, device="cpu", dtype="float32")
    scorer = Scorer.fit(engine, max_new_tokens)
    table: dict = {}
    for layer in layers:
        held = {}
        for name in concepts:
            c = TIGHT[name]
            held[name] = torch.stack(scorer.probe_texts(c.probe_prompts(), layer)[-PROBE_HELDOUT_TEMPLATES * len(c.subjects):])
        for name in concepts:
            p = scorer.probe(TIGHT[name], layer)
            others = torch.cat([h for n, h in held.items() if n != name]) if len(held) > 1 else None
            cross = float(p.fires(others).float().mean()) if others is not None else None
            table.setdefault(name, {})[layer] = {**p.heldout, "threshold": p.threshold, "fires_on_other_concepts": cross}
            print(f"L{layer} {name:>10}: balanced acc {p.heldout['balanced_accuracy']:.2f} tpr {p.heldout['tpr']:.2f} "
                  f"fpr {p.heldout['fpr']:.2f} other concepts {cross}", flush=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(table, indent=1))
        lines = ["| concept | " + " | ".join(f"L{l}: bal. acc / FPR / other concepts" for l in layers) + " |",
                 "|---|" + "---|" * len(layers)]
        for name, per in table.items():
            lines.append(f"| {name} | " + " | ".join(
                f"{per[l]['balanced_accuracy']:.2f} / {per[l]['fpr']:.2f} / {per[l]['fires_on_other_concepts'] or 0:.2f}"
                for l in layers) + " |")
        out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return table


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m steering.offline.axbench", description="AxBench-style offline scorer")
    sub = p.add_subparsers(dest="cmd", required=True)
    ps = sub.add_parser("score", help="grade the config's features, the system-prompt baseline and unsteered answers")
    ps.add_argument("config", nargs="?", default="demo.yaml")
    ps.add_argument("--features", default=None, help="comma-separated keys (L15:8672,...); default: all of the config's")
    ps.add_argument("--concepts", default=None, help="KEY=concept,... where the label names none")
    ps.add_argument("--split", choices=sorted(SPLITS), default="report")
    ps.add_argument("--n-prompts", type=int, default=None, help="use the split's first N prompts")
    ps.add_argument("--seeds", default="0,1")
    ps.add_argument("--strengths", default=None, help="comma-separated sweep; default: each feature's own setting")
    ps.add_argument("--mode", default=None, help="mode for --strengths (default: each feature's own)")
    ps.add_argument("--max-new-tokens", type=int, default=64)
    ps.add_argument("--probe-layer", type=int, default=PROBE_LAYER)
    ps.add_argument("--fit-prompts", type=int, default=None, help="fit thresholds on the pick split's first N prompts")
    ps.add_argument("--probe-tokens", type=int, default=PROBE_TOKENS, help="length of the probe's training texts")
    ps.add_argument("--no-cache", action="store_true", help="regenerate unsteered answers instead of reading the cache")
    ps.add_argument("--out", type=Path, default=Path("benchmarks/axbench"))
    pp = sub.add_parser("probes", help="held-out accuracy of the concept probes per layer")
    pp.add_argument("config", nargs="?", default="demo.yaml")
    pp.add_argument("--layers", default="10,15,20,25")
    pp.add_argument("--concepts", default=",".join(TIGHT))
    pp.add_argument("--out", type=Path, default=None)
    from steering.offline import axbench_pick

    axbench_pick.add_parser(sub)
    for sp in (ps, pp):
        sp.add_argument("--threads", type=int, default=1, help="torch threads (one is fastest on a busy small machine)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.cmd == "pick":
        axbench_pick.run(args)
    elif args.cmd == "score":
        concepts = dict(kv.split("=", 1) for kv in args.concepts.split(",")) if args.concepts else None
        r = score(args.config, args.out, args.features.split(",") if args.features else None, args.split,
                  [int(s) for s in args.seeds.split(",")],
                  [float(s) for s in args.strengths.split(",")] if args.strengths else None, args.mode,
                  args.max_new_tokens, args.n_prompts, args.probe_layer, concepts, not args.no_cache, args.fit_prompts,
                  args.probe_tokens)
        from steering.offline.axbench_report import markdown

        print(markdown(r))
    else:
        probes(args.config, [int(x) for x in args.layers.split(",")], args.concepts.split(","), args.out)


if __name__ == "__main__":
    main()
