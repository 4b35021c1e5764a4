"""Picking default features on a pick split: the rules that choose one setting per concept from a screen's
runs, and the screen's table. A screen is a run (`python -m steering.offline.eval pick CONFIG`, which refuses
a report split before loading anything) whose features are the candidates of each concept (`concept:` per
feature), at the settings to try; `flat_runs` turns its result into one row per (feature, setting).

Rules (`pick.rule` in the run config):
- `first-round` (`choose`, then `fallback`): among a concept's runs on the most prompts, those with inclusion >=
  `min_inclusion` (0.8: a margin over the 0.7 target) and fluency ratio <= 2.0, of those the lowest fluency ratio;
  none qualifies: the same with inclusion >= 0.7; still none: the concept fails, and `fallback` names its highest
  inclusion at fluency ratio <= 2.5 (what the app would ship for that kind, marked below target).
- `margin` (`choose_by_margin`, the later rounds'): the run with the largest margin in noise units,
  `min((inclusion - 0.7) / 0.06, (2 - ratio) / 0.12)`; a negative best margin is below target."""

from __future__ import annotations

import re
from collections.abc import Sequence

from steering.offline.eval.splits import DataError, split

TARGET_INCLUSION, TARGET_FLUENCY = 0.7, 2.0
INCLUSION_NOISE, FLUENCY_NOISE = 0.06, 0.12
"""Noise units of the second round's margin: 0.06 ~ the standard error of a 70% share over 64 answers;
0.12 ~ half the largest seed-to-seed spread of a fluency ratio in the first report (0.27, fear add 50)."""


def flat_runs(result: dict) -> list[dict]:
    """One row per steered (feature, setting) of a run's result, pooled over its seeds, and one per concept's
    system-prompt baseline, in the shape the rules read."""
    out = []
    n, seeds = len(result["prompts"]), ",".join(map(str, result["seeds"]))
    for e in result["features"]:
        conds = [(r, {"key": e["key"], "label": e.get("label"), "mode": r["mode"], "strength": float(r["strength"])})
                 for r in e["runs"]]
        if "baseline" in e:
            conds.append((e["baseline"], {"key": "system prompt", "mode": "-", "strength": 0.0, "baseline": True}))
        for r, what in conds:
            s = r["summary"]
            out.append({"concept": e["concept"], "kind": e["kind"], **what, "n_prompts": n, "seed": seeds,
                        "inclusion": s["lexicon"], "fluency_ratio": s["fluency_ratio"],
                        "median_ppl_ratio": s.get("median_ppl_ratio"), "score": s.get("score")})
    return out


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


def picks(runs: Sequence[dict], rule: str = "margin") -> dict[str, dict | None]:
    """The chosen run per concept, as a short dict, or None: `choose_by_margin` (rule "margin"), or `choose`
    then `fallback` (rule "first-round"); marked `below_target` when the concept misses the target."""
    out = {}
    for name in dict.fromkeys(r["concept"] for r in runs):
        mine = [r for r in runs if r["concept"] == name]
        if rule == "margin":
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
    """A screen's runs, the chosen one marked, then the pick per concept (`record`: split, rule, runs, picked)."""
    ref, margin_rule = record.get("split", "pick"), record.get("rule", "margin") == "margin"
    try:
        round_ = split(ref).round
    except DataError:
        round_ = "?"
    rule = (f"On {ref}, a pick split written for round {round_} (no report split used). "
            "Rule: per concept, the run on the most prompts with the largest margin, min((inclusion - 70%) / 6 pts, "
            "(2 - fluency ratio) / 0.12); a negative margin is below target." if margin_rule else
            f"Default-feature screening on {ref} (report split untouched). Rule: inclusion (tight lexicon) "
            ">= 80% and fluency ratio <= 2, lowest fluency ratio; else inclusion >= 70%.")
    lines = [rule, "",
             "| concept | kind | feature | label | setting | prompts x seed | inclusion | fluency ratio | median ppl ratio "
             "| score | picked |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    picked = record.get("picked") or picks(record["runs"], record.get("rule", "margin"))
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
              "the target)." if margin_rule else "no run reaches 70% at fluency ratio <= 2 (shown: the highest inclusion "
              "at fluency ratio <= 2.5)."), "", "| concept | picked | inclusion | fluency ratio |", "|---|---|---|---|"]
    for name, p in picked.items():
        lines.append(f"| {name} | " + ("nothing above 0% at fluency ratio <= 2.5 | - | - |" if p is None else
                                      f"{p['key']} {p['mode']} {p['strength']:g}"
                                      f"{' (below target)' if p.get('below_target') else ''} | {p['inclusion']:.0%} | "
                                      f"{p['fluency_ratio']:.2f} |"))
    return "\n".join(lines) + "\n"
