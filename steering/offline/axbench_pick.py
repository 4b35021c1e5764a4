"""Pick the app's default features on the pick split: screen candidate features per concept over a few
steering settings, record every run, and choose one setting per concept by a fixed rule.

    python -m steering.offline.axbench pick [demo.yaml] --candidates "dogs=L15:14200,L15:16221;paris=L15:13926"
        [--settings add:30,add:45,clamp:30] [--n-prompts 16] [--seed 0] [--baseline] [--light]
        [--out benchmarks/axbench_pick]

Each run steers one feature alone through the serving path (`axbench.score_feature`) on the pick split's first
`n_prompts` prompts (`SPLITS["pick"]`, or `"pick2"`, `"pick3"` in later rounds; never a report split) at one seed, and records the scorer's grades, the
tight-lexicon inclusion, the fluency ratio (`axbench_grades.fluency_ratio`: pooled perplexity of the answers after
their chat prompt under the unsteered model, over that of the unsteered answers to the same prompts and seed, as
`evaluate`) and the median per-answer prompt-free `ppl_ratio`. Runs go to OUT.json as they finish; a run already
there (same concept, feature, mode, strength, prompts and seed) is not redone, so a screen can be resumed or
extended, and a confirmation on more prompts is recorded next to it. `--light` skips the probe and the grade
thresholds (`LightScorer`: inclusion, fluency ratio and ppl ratio only; much cheaper to set up).

Rule (`choose`): among a concept's runs on the most prompts, those with inclusion >= `min_inclusion` (0.8: a margin
over the 0.7 target) and fluency ratio <= `max_fluency` (2.0); of those the lowest fluency ratio. None qualifies:
the same with inclusion >= 0.7; still none: the concept fails, and `fallback` names its highest inclusion at
fluency ratio <= 2.5 (what the app would ship for that kind, marked below target)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

TARGET_INCLUSION, TARGET_FLUENCY = 0.7, 2.0
INCLUSION_NOISE, FLUENCY_NOISE = 0.06, 0.12
"""Noise units of the second round's margin: 0.06 ~ the standard error of a 70% share over 64 answers;
0.12 ~ half the largest seed-to-seed spread of a fluency ratio in the first report (0.27, fear add 50)."""
_ENGINES: dict = {}
_SCORERS: dict = {}


def parse_candidates(text: str) -> dict[str, list[str]]:
    """"dogs=L15:1,L15:2;paris=L15:3" -> {"dogs": ["L15:1", "L15:2"], "paris": ["L15:3"]}."""
    out: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, keys = part.split("=", 1)
        out.setdefault(name.strip(), []).extend(k.strip() for k in keys.split(",") if k.strip())
    return out


def parse_settings(text: str) -> list[tuple[str, float]]:
    """"add:30,clamp:40" -> [("add", 30.0), ("clamp", 40.0)]."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        mode, strength = part.split(":", 1)
        out.append((mode.strip(), float(strength)))
    return out


def run_id(r: dict) -> tuple:
    return (r["concept"], r["key"], r["mode"], float(r["strength"]), r["n_prompts"], r["seed"])


def choose(runs: Sequence[dict], min_inclusion: float = 0.8, max_fluency: float = TARGET_FLUENCY,
           fallback_inclusion: float = TARGET_INCLUSION) -> dict | None:
    """The rule of the module docstring over one concept's runs (dicts with `inclusion`, `fluency_ratio`,
    `n_prompts`): the chosen run, or None when no run reaches `fallback_inclusion` at `max_fluency`."""
    runs = [r for r in runs if "baseline" not in r]
    if not runs:
        return None
    most = max(r["n_prompts"] for r in runs)
    runs = [r for r in runs if r["n_prompts"] == most]
    for floor in (min_inclusion, fallback_inclusion):
        ok = [r for r in runs if r["inclusion"] >= floor and r["fluency_ratio"] <= max_fluency]
        if ok:
            return min(ok, key=lambda r: (r["fluency_ratio"], -r["inclusion"]))
    return None


def label_candidates(cards, words: Sequence[str], n: int = 12) -> list[int]:
    """Features whose label or top words name one of `words` (whole word, or a word that begins with one of at
    least four letters), by the share of top-word weight on them (+0.5 for a label match)."""
    import re

    words = {w for w in words if " " not in w}

    def hit(w: str) -> bool:
        w = w.strip().lower()
        return w in words or w.rstrip("s") in words or any(len(x) >= 4 and w.startswith(x) for x in words)

    found = []
    for i in range(len(cards)):
        f = cards.contexts.features[i]
        tw = f.get("top_words", [])
        share = sum(v for w, v in tw if hit(w)) / (sum(v for _, v in tw) or 1.0)
        score = share + 0.5 * any(hit(w) for w in re.findall(r"[a-z]+", (f.get("label") or "").lower()))
        if score > 0.2:
            found.append((score, i))
    return [i for _, i in sorted(found, reverse=True)[:n]]


def _summary(out: dict, base_rows: list[dict]) -> dict:
    from steering.offline.axbench_grades import fluency_ratio, median_ppl_ratio

    s = out["summary"]
    return {"inclusion": s["lexicon"], "fluency_ratio": round(fluency_ratio(out["rows"], base_rows), 4),
            "median_ppl_ratio": median_ppl_ratio(out["rows"]), "score": s.get("score"),
            "concept_grade": s.get("concept"), "instruction": s.get("instruction"), "fluency": s.get("fluency"),
            "probe": s.get("probe"), "answers": [r["answer"] for r in out["rows"]]}


class LightScorer:
    """`Scorer.score`'s lexicon, nll and prompt-free ppl ratio only (no probe, no thresholds: score and grades
    are None), so the shared `axbench.score_*` functions run a screen without fitting anything. The ppl ratio's
    reference is the median prompt-free perplexity of the unsteered answers to the same prompts at `seed`."""

    def __init__(self, engine, max_new_tokens: int, seed: int):
        self.engine, self.max_new_tokens, self.seed, self.cache = engine, max_new_tokens, seed, True
        self._ppl_ref: dict[tuple[str, ...], float] = {}

    def ppl_ref(self, prompts: Sequence[str]) -> float:
        import math

        from steering.offline.axbench_grades import percentile
        from steering.offline.axbench_measure import read_answers, unsteered_answers

        key = tuple(prompts)
        if key not in self._ppl_ref:
            plain = read_answers(self.engine.model, self.engine.tokenizer, prompts, unsteered_answers(
                self.engine, prompts, self.seed, self.max_new_tokens), with_prompt=False)
            self._ppl_ref[key] = percentile([math.exp(-r.lp_free / r.n) for r in plain if r.n], 50)
        return self._ppl_ref[key]

    def score(self, concept, prompts, answers) -> dict:
        import math

        from steering.offline.axbench_measure import read_answers
        from steering.offline.lexicon import matches

        tok, ref = self.engine.tokenizer, self.ppl_ref(prompts)
        rows = []
        for p, a, r in zip(prompts, answers, read_answers(self.engine.model, tok, prompts, answers)):
            text = tok.decode(a, skip_special_tokens=True)
            rows.append({"prompt": p, "answer": text, "lexicon": int(bool(matches(text, concept.words))),
                         "nll": -r.lp_prompt, "tokens": r.n,
                         "ppl_ratio": math.exp(-r.lp_free / r.n) / ref if r.n else None})
        return {"summary": {"lexicon": sum(r["lexicon"] for r in rows) / len(rows)}, "rows": rows}


def screen(config: str, candidates: dict[str, list[str]], settings: Sequence[tuple[str, float]], out: Path,
           n_prompts: int | None = 16, seed: int = 0, max_new_tokens: int = 64, baseline: bool = False,
           light: bool = False, split: str = "pick") -> dict:
    """Run every (concept, candidate, setting) not yet in OUT.json; rewrite OUT.json / OUT.md after each.
    `light`: no probe or thresholds (`LightScorer`): inclusion, fluency ratio and ppl ratio only."""
    from steering.config import FeatureSpec
    from steering.engine import Engine
    from steering.keys import FeatureKey
    from steering.offline.axbench import Scorer, concept_of, score_baseline, score_feature, score_unsteered
    from steering.offline.axbench_concepts import SPLITS

    if split not in SPLITS or not split.startswith("pick"):
        raise ValueError(f"split={split!r}: defaults are picked on a pick split "
                         f"({', '.join(k for k in SPLITS if k.startswith('pick'))}), never a report split")
    path = out.with_suffix(".json")
    record = json.loads(path.read_text()) if path.exists() else {"config": config, "split": split, "runs": []}
    if record.get("split", "pick") != split:
        raise ValueError(f"{path} holds runs on split {record.get('split')!r}, not {split!r}: pass another --out")
    done = {run_id(r) for r in record["runs"]}
    t0 = time.time()
    if config not in _ENGINES:  # kept for the process: a driver may call screen() again
        _ENGINES[config] = Engine.from_config(config, device="cpu", dtype="float32")
    engine = _ENGINES[config]
    if light:
        scorer = LightScorer(engine, max_new_tokens, seed)
    else:
        if (config, max_new_tokens) not in _SCORERS:
            _SCORERS[(config, max_new_tokens)] = Scorer.fit(engine, max_new_tokens)
        scorer = _SCORERS[(config, max_new_tokens)]
        record["thresholds"] = scorer.thresholds.to_dict()
    prompts = SPLITS[split][:n_prompts]
    n = len(prompts)
    labels = _labels(engine)
    for name, keys in candidates.items():
        c = concept_of(None, name)
        base = score_unsteered(engine, c, prompts, seed, scorer=scorer)
        if baseline and (name, "system prompt", "-", 0.0, n, seed) not in done:
            b = score_baseline(engine, c, prompts, seed, scorer=scorer)
            record["runs"].append({"concept": name, "kind": c.kind, "key": "system prompt", "mode": "-", "strength": 0.0,
                                   "n_prompts": n, "seed": seed, "baseline": True, **_summary(b, base["rows"])})
            _save(record, out)
        for key in keys:
            k = FeatureKey.parse(key)
            for mode, strength in settings:
                rid = (name, str(k), mode, float(strength), n, seed)
                if rid in done:
                    continue
                f = FeatureSpec(layer=k.layer, index=k.index, strength=strength, mode=mode, label=f"{name} candidate")
                r = score_feature(engine, f, strength, mode, prompts, seed, concept=c, scorer=scorer)
                run = {"concept": name, "kind": c.kind, "key": str(k), "label": labels.get(k.index), "mode": mode,
                       "strength": float(strength), "n_prompts": n, "seed": seed, **_summary(r, base["rows"])}
                record["runs"].append(run)
                done.add(rid)
                _save(record, out)
                print(f"{name:>10} {k} {mode:>5} {strength:5.1f}: inclusion {run['inclusion']:.0%} fluency ratio "
                      f"{run['fluency_ratio']:.2f} ppl ratio (median) {run['median_ppl_ratio']:.2f} score "
                      f"{run['score'] if run['score'] is None else round(run['score'], 2)} ({time.time() - t0:.0f}s)", flush=True)
    return record


def _labels(engine) -> dict[int, str]:
    try:
        from steering.engine import resolve_sae_folder
        from steering.inspection.cards import load_feature_cards

        c, layer = engine.config, engine.inspector_layer
        cards = load_feature_cards(resolve_sae_folder(c.sae_source(), c.sae.subfolder(layer), c.sae.revision))
        return _Lazy(cards)
    except Exception:  # labels are decoration only
        return {}


class _Lazy(dict):
    def __init__(self, cards):
        super().__init__()
        self.cards = cards

    def get(self, index, default=None):
        return self.cards.label(index) or default


def _save(record: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    record["picked"] = picks(record["runs"], record.get("split", "pick"))
    out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    out.with_suffix(".md").write_text(markdown(record))


def margin(run: dict) -> float:
    """How far a run clears the target, in noise units: `min((inclusion - 0.7) / 0.06, (2 - ratio) / 0.12)`;
    negative when it misses either bound."""
    return min((run["inclusion"] - TARGET_INCLUSION) / INCLUSION_NOISE,
               (TARGET_FLUENCY - run["fluency_ratio"]) / FLUENCY_NOISE)


def choose_by_margin(runs: Sequence[dict]) -> tuple[dict | None, bool]:
    """The second round's rule: among a concept's runs on the most prompts, the one with the largest `margin`,
    and whether it is below target (margin < 0: the concept's closest setting, shipped marked as such)."""
    runs = [r for r in runs if "baseline" not in r]
    if not runs:
        return None, True
    most = max(r["n_prompts"] for r in runs)
    best = max((r for r in runs if r["n_prompts"] == most), key=margin)
    return best, margin(best) < 0


def fallback(runs: Sequence[dict], max_fluency: float = 2.5) -> dict | None:
    """For a concept `choose` fails: its highest inclusion at fluency ratio <= `max_fluency` (ties: more fluent)."""
    ok = [r for r in runs if "baseline" not in r and r["fluency_ratio"] <= max_fluency and r["inclusion"] > 0]
    return max(ok, key=lambda r: (r["inclusion"], -r["fluency_ratio"])) if ok else None


def picks(runs: Sequence[dict], split: str = "pick") -> dict[str, dict | None]:
    """The chosen run per concept, as a short dict, or None. First round (`split` "pick"): `choose`, else
    `fallback`, marked `below_target`; later rounds ("pick2", "pick3"): `choose_by_margin`."""
    out = {}
    for name in dict.fromkeys(r["concept"] for r in runs):
        mine = [r for r in runs if r["concept"] == name]
        if split != "pick":
            best, below = choose_by_margin(mine)
        else:
            best = choose(mine)
            below = best is None
            best = best or fallback(mine)
        out[name] = None if best is None else {
            **{k: best[k] for k in ("key", "kind", "mode", "strength", "n_prompts", "inclusion", "fluency_ratio",
                                    "median_ppl_ratio", "score")}, "below_target": below}
    return out


def markdown(record: dict) -> str:
    split = record.get("split", "pick")
    second = split != "pick"
    rule = (f"Round {split[-1]}, on {split}: the pick split and the report splits of earlier rounds (the next report "
            f"split untouched). "
            "Rule: per concept, the run on the most prompts with the largest margin, min((inclusion - 70%) / 6 pts, "
            "(2 - fluency ratio) / 0.12); a negative margin is below target." if second else
            "Default-feature screening on the pick split (report split untouched). Rule: inclusion (tight lexicon) "
            ">= 80% and fluency ratio <= 2, lowest fluency ratio; else inclusion >= 70%.")
    lines = [rule, "",
             "| concept | kind | feature | label | setting | prompts x seed | inclusion | fluency ratio | median ppl ratio "
             "| score | picked |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    picked = record.get("picked") or picks(record["runs"], split)
    for r in record["runs"]:
        p = picked.get(r["concept"])
        mark = "**yes**" if p and (p["key"], p["mode"], p["strength"], p["n_prompts"]) == (
            r["key"], r["mode"], r["strength"], r["n_prompts"]) else ""
        setting = "system prompt" if r.get("baseline") else f"{r['mode']} {r['strength']:g}"
        ppl = "-" if r.get("median_ppl_ratio") is None else f"{r['median_ppl_ratio']:.2f}"
        lines.append(f"| {r['concept']} | {r['kind']} | {r['key']} | {r.get('label') or ''} | {setting} | "
                     f"{r['n_prompts']} x {r['seed']} | {r['inclusion']:.0%} | {r['fluency_ratio']:.2f} | {ppl} | "
                     f"{'-' if r.get('score') is None else format(r['score'], '.2f')} | {mark} |")
    lines += ["", "Picked per concept; below target: " + ("the largest margin is negative (the setting closest to "
              "the target)." if second else "no run reaches 70% at fluency ratio <= 2 (shown: the highest inclusion "
              "at fluency ratio <= 2.5)."), "", "| concept | picked | inclusion | fluency ratio |", "|---|---|---|---|"]
    for name, p in picked.items():
        lines.append(f"| {name} | " + ("nothing above 0% at fluency ratio <= 2.5 | - | - |" if p is None else
                                      f"{p['key']} {p['mode']} {p['strength']:g}"
                                      f"{' (below target)' if p.get('below_target') else ''} | {p['inclusion']:.0%} | "
                                      f"{p['fluency_ratio']:.2f} |"))
    return "\n".join(lines) + "\n"


def add_parser(sub) -> None:
    from steering.offline.axbench_concepts import SPLITS

    p = sub.add_parser("pick", help="screen candidate default features on the pick split and pick one per concept")
    p.add_argument("config", nargs="?", default="demo.yaml")
    p.add_argument("--candidates", required=True, help='"concept=L15:1,L15:2;concept2=L15:3"')
    p.add_argument("--settings", default="add:30,add:45,clamp:30,clamp:45", help="mode:strength,...")
    p.add_argument("--n-prompts", type=int, default=16, help="the pick split's first N prompts (0: all)")
    p.add_argument("--split", choices=[k for k in SPLITS if k.startswith("pick")], default="pick",
                   help="pick2, pick3: the pick split and the earlier rounds' report splits (later rounds)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--baseline", action="store_true", help="also grade the system-prompt baseline")
    p.add_argument("--light", action="store_true", help="inclusion and fluency only (no probe, no grades)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/axbench_pick"))
    p.add_argument("--threads", type=int, default=1)


def run(args: argparse.Namespace) -> None:
    screen(args.config, parse_candidates(args.candidates), parse_settings(args.settings), args.out,
           args.n_prompts or None, args.seed, args.max_new_tokens, args.baseline, args.light, args.split)
