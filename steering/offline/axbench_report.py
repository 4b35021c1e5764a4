"""The AxBench-style scorer's tables and plot, from the result dict `axbench_cli.score` writes."""

from __future__ import annotations

from pathlib import Path


def _ratio(s: dict, key: str) -> str:
    return "-" if s.get(key) is None else f"{s[key]:.2f}"


def _cells(s: dict) -> str:
    return (f"{s['concept']:.2f} | {s['instruction']:.2f} | {s['fluency']:.2f} | **{s['score']:.2f}** | "
            f"{s['lexicon']:.0%} | {s['probe']:.0%} | {_ratio(s, 'fluency_ratio')} | {_ratio(s, 'median_ppl_ratio')} |")


def _per_seed(e: dict) -> list[str]:
    """One row per steered run: inclusion, fluency ratio and score at each seed, and the baseline's score."""
    out = []
    for r in e["runs"]:
        cells = []
        for s, b in zip(r.get("per_seed", []), e["baseline"].get("per_seed", [])):
            cells.append(f"{s['lexicon']:.0%} / {_ratio(s, 'fluency_ratio')} / {s['score']:.2f} vs {b['score']:.2f}")
        out.append(f"| {e['label']} ({e['key']}) [{e['concept']}] | {r['mode']} {r['strength']:g} | " + " | ".join(cells) + " |")
    return out


def markdown(result: dict) -> str:
    th = result["thresholds"]
    lines = [f"AxBench-style scores: {result['split']} split, {len(result['prompts'])} prompts x seeds "
             f"{', '.join(map(str, result['seeds']))}, {result['max_new_tokens']}-token answers, probe at layer "
             f"{result['probe_layer']} ({result['seconds']:.0f} s).", "",
             "| feature | condition | concept | instruction | fluency | score | lexicon hit | probe fires | fluency ratio "
             "| ppl ratio (median) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for e in result["features"]:
        name = f"{e['label']} ({e['key']}) [{e['concept']}]"
        for r in e["runs"]:
            lines.append(f"| {name} | {r['mode']} {r['strength']:g} | " + _cells(r["summary"]))
        lines.append(f"| {name} | system prompt | " + _cells(e["baseline"]["summary"]))
        lines.append(f"| {name} | unsteered | " + _cells(e["unsteered"]["summary"]))
    if any(r.get("per_seed") for e in result["features"] for r in e["runs"]):
        seeds = result["seeds"]
        lines += ["", "Per seed: lexicon hit / fluency ratio / score vs the system prompt's score.", "",
                  "| feature | condition | " + " | ".join(f"seed {s}" for s in seeds) + " |",
                  "|---|---|" + "---|" * len(seeds)]
        for e in result["features"]:
            lines += _per_seed(e)
    lines += ["", "Grades are means over answers (0-2); score: mean of the per-answer harmonic mean, 0 if any grade is 0. "
              "Fluency ratio: pooled perplexity of the answers after their chat prompt under the unsteered model, over "
              "that of the unsteered answers (as `evaluate`); ppl ratio (median): the fluency grade's per-answer "
              "prompt-free perplexity over the median unsteered one.", "",
              "| threshold | value |", "|---|---|",
              f"| instruction 2: relevance >= t2 (nats/token) | {th['t2']:.3f} |",
              f"| instruction 1: relevance >= t1 | {th['t1']:.3f} |",
              f"| fluency: reference perplexity (median unsteered) | {th['ppl_ref']:.2f} |",
              f"| fluency 2: ppl ratio <= q2 and rep3 <= {th['rep2']:g} | {th['q2']:.2f} |",
              f"| fluency 1: ppl ratio <= q1 and rep3 <= {th['rep1']:g} | {th['q1']:.2f} |", "",
              "| probe | threshold | held-out balanced accuracy | TPR | FPR |", "|---|---|---|---|---|"]
    for name, p in result["probes"].items():
        h = p["heldout"]
        lines.append(f"| {name} | {p['threshold']:.3f} | {h['balanced_accuracy']:.2f} | {h['tpr']:.2f} | {h['fpr']:.2f} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    feats = result["features"]
    sweep = any(len(e["runs"]) > 1 for e in feats)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.0))
    if sweep:
        ax = axes[0]
        for i, e in enumerate(feats):
            color = f"C{i}"
            xs = [r["strength"] for r in e["runs"]]
            ax.plot(xs, [r["summary"]["score"] for r in e["runs"]], "o-", color=color, label=f"{e['label']} ({e['key']})")
            ax.axhline(e["baseline"]["summary"]["score"], color=color, ls="--", lw=0.9)
        ax.set_xlabel("strength")
        ax.set_title("score vs strength (dashed: system prompt)", fontsize=10)
    else:
        ax = axes[0]
        names = [e["concept"] for e in feats]
        x = range(len(feats))
        for k, (cond, get) in enumerate((("steered", lambda e: e["runs"][0]), ("system prompt", lambda e: e["baseline"]),
                                         ("unsteered", lambda e: e["unsteered"]))):
            ax.bar([i + (k - 1) * 0.27 for i in x], [get(e)["summary"]["score"] for e in feats], 0.27, label=cond)
        ax.set_xticks(list(x), names)
        ax.set_title("score per feature (harmonic mean, zero rule)", fontsize=10)
    ax.set_ylabel("score (0-2)")
    ax.set_ylim(0, 2)
    ax.legend(fontsize=7)
    ax = axes[1]
    comps = ("concept", "instruction", "fluency")
    for k, (cond, get, marker) in enumerate((("steered", lambda e: e["runs"][-1], "o"),
                                              ("system prompt", lambda e: e["baseline"], "s"))):
        for j, comp in enumerate(comps):
            ys = [get(e)["summary"][comp] for e in feats]
            ax.scatter([i + (j - 1) * 0.25 for i in range(len(feats))], ys, marker=marker, color=f"C{j}",
                       facecolors=f"C{j}" if k == 0 else "none", label=f"{comp} ({cond})")
    ax.set_xticks(range(len(feats)), [e["concept"] for e in feats])
    ax.set_ylim(-0.05, 2.05)
    ax.set_ylabel("mean grade (0-2)")
    ax.set_title("grades: filled = steered" + (" (strongest)" if sweep else "") + ", open = system prompt", fontsize=10)
    ax.legend(fontsize=6, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.1))
    fig.suptitle(f"AxBench-style offline scorer: {result['split']} split, {len(result['prompts'])} prompts x "
                 f"{len(result['seeds'])} seeds, {result['max_new_tokens']}-token answers", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
