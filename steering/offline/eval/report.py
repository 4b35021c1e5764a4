"""A run's table and plot (from the result `run.Evaluation.run` builds), and the run directory they go to.

A run directory holds `config.yaml` (the resolved run config: it runs again as it is), `results.json` (every
answer with its grades, the means, the scorer's thresholds and probes), `table.md`, `plot.png`, and `answers/`
(the answer sets, for resuming)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from steering.offline.eval import pick


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
        base = e.get("baseline", {}).get("per_seed") or [None] * len(r.get("per_seed", []))
        for s, b in zip(r.get("per_seed", []), base):
            vs = "" if b is None else f" vs {b['score']:.2f}"
            cells.append(f"{s['lexicon']:.0%} / {_ratio(s, 'fluency_ratio')} / {s['score']:.2f}{vs}")
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
        if "baseline" in e:
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


def light_markdown(result: dict) -> str:
    """The light scorer's table: inclusion (tight-lexicon hit), fluency ratio and median ppl ratio per condition."""
    lines = [f"Light screen: {result['split']} split, {len(result['prompts'])} prompts x seeds "
             f"{', '.join(map(str, result['seeds']))}, {result['max_new_tokens']}-token answers, lexicon version "
             f"{result['lexicon']} ({result['seconds']:.0f} s).", "",
             "| feature | condition | inclusion | fluency ratio | ppl ratio (median) | per seed: inclusion / fluency ratio |",
             "|---|---|---|---|---|---|"]
    for e in result["features"]:
        conds = [(f"{r['mode']} {r['strength']:g}", r) for r in e["runs"]]
        conds += [("system prompt", e["baseline"])] if "baseline" in e else []
        for cond, r in conds + [("unsteered", e["unsteered"])]:
            s = r["summary"]
            seeds = "; ".join(f"{p['lexicon']:.0%} / {_ratio(p, 'fluency_ratio')}" for p in r.get("per_seed", []))
            lines.append(f"| {e['label']} ({e['key']}) [{e['concept']}] | {cond} | {s['lexicon']:.0%} | "
                         f"{_ratio(s, 'fluency_ratio')} | {_ratio(s, 'median_ppl_ratio')} | {seeds} |")
    return "\n".join(lines) + "\n"


def result_markdown(result: dict) -> str:
    """The table of a run: the full scorer's, the light one's, and for a pick screen the rule's choice after it."""
    table = markdown(result) if result.get("scorer", "full") == "full" else light_markdown(result)
    if "picked" in result:
        table += "\n" + pick.markdown({"split": result["split"], "rule": result["rule"],
                                       "runs": pick.flat_runs(result), "picked": result["picked"]})
    return table


def plot(result: dict, path: Path) -> None:
    """Full scorer: score per feature (or against strength, for a sweep) and the mean grades; light: inclusion
    against fluency ratio per feature, each setting a point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    feats = result["features"]
    full = result.get("scorer", "full") == "full"
    fig, axes = plt.subplots(1, 2 if full else 1, figsize=(11 if full else 6, 4.0), squeeze=False)
    if full:
        _scores(axes[0][0], feats)
        _grades(axes[0][1], feats)
    else:
        _inclusion(axes[0][0], feats)
    fig.suptitle(f"{'AxBench-style offline scorer' if full else 'Light screen'}: {result['split']} split, "
                 f"{len(result['prompts'])} prompts x {len(result['seeds'])} seeds, {result['max_new_tokens']}-token "
                 "answers", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _conditions(feats: list[dict], steered) -> list[tuple[str, object]]:
    both = all("baseline" in e for e in feats)
    return [("steered", steered)] + ([("system prompt", lambda e: e["baseline"])] if both else [])


def _scores(ax, feats: list[dict]) -> None:
    if any(len(e["runs"]) > 1 for e in feats):
        for i, e in enumerate(feats):
            for mode, style in zip(dict.fromkeys(r["mode"] for r in e["runs"]), ("o-", "s--", "^:", "d-.")):
                runs = [r for r in e["runs"] if r["mode"] == mode]
                ax.plot([r["strength"] for r in runs], [r["summary"]["score"] for r in runs], style, color=f"C{i}",
                        label=f"{e['label']} ({e['key']}) {mode}")
            if "baseline" in e:
                ax.axhline(e["baseline"]["summary"]["score"], color=f"C{i}", ls="--", lw=0.9)
        ax.set_xlabel("strength")
        ax.set_title("score vs strength (dashed: system prompt)", fontsize=10)
    else:
        conds = _conditions(feats, lambda e: e["runs"][0]) + [("unsteered", lambda e: e["unsteered"])]
        width = 0.8 / len(conds)
        for k, (cond, get) in enumerate(conds):
            ax.bar([i + (k - (len(conds) - 1) / 2) * width for i in range(len(feats))],
                   [get(e)["summary"]["score"] for e in feats], width, label=cond)
        ax.set_xticks(range(len(feats)), [e["concept"] for e in feats])
        ax.set_title("score per feature (harmonic mean, zero rule)", fontsize=10)
    ax.set_ylabel("score (0-2)")
    ax.set_ylim(0, 2)
    ax.legend(fontsize=7)


def _grades(ax, feats: list[dict]) -> None:
    for k, (cond, get) in enumerate(_conditions(feats, lambda e: e["runs"][-1])):
        for j, comp in enumerate(("concept", "instruction", "fluency")):
            ax.scatter([i + (j - 1) * 0.25 for i in range(len(feats))], [get(e)["summary"][comp] for e in feats],
                       marker="os"[k], color=f"C{j}", facecolors=f"C{j}" if k == 0 else "none", label=f"{comp} ({cond})")
    ax.set_xticks(range(len(feats)), [e["concept"] for e in feats])
    ax.set_ylim(-0.05, 2.05)
    ax.set_ylabel("mean grade (0-2)")
    ax.set_title("grades: filled = steered (last setting), open = system prompt", fontsize=10)
    ax.legend(fontsize=6, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.1))


def _inclusion(ax, feats: list[dict]) -> None:
    for i, e in enumerate(feats):
        xs, ys = [r["summary"]["fluency_ratio"] for r in e["runs"]], [r["summary"]["lexicon"] for r in e["runs"]]
        ax.plot(xs, ys, "o", color=f"C{i}", label=f"{e['label']} ({e['key']})")
        for r, x, y in zip(e["runs"], xs, ys):
            ax.annotate(f"{r['mode']} {r['strength']:g}", (x, y), fontsize=6, textcoords="offset points", xytext=(3, 3))
    ax.axhline(0.7, color="green", lw=0.8, ls=":")
    ax.axvline(2.0, color="red", lw=0.8, ls=":")
    ax.set_xlabel("fluency ratio (perplexity / unsteered)")
    ax.set_ylabel("inclusion (lexicon hit)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)


def dump_yaml(data: dict) -> str:
    """YAML with lists of plain values on one line (seeds, strengths), longer structures in blocks."""
    class Dumper(yaml.SafeDumper):
        pass

    def seq(d, v):
        flat = all(isinstance(x, (int, float, str, bool)) and len(str(x)) < 24 for x in v)
        return d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=flat and len(v) < 12)

    Dumper.add_representer(list, seq)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=118)


def write_run(folder: Path, config, result: dict, table: str, plot_fn=plot) -> None:
    """The run directory: `config` (a `RunConfig`, or a mapping that records another tool's run), `result`,
    its table and plot."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = config.to_dict(folder.resolve()) if hasattr(config, "to_dict") else dict(config)
    (folder / "config.yaml").write_text(dump_yaml(cfg))
    (folder / "results.json").write_text(json.dumps(result, indent=1))
    (folder / "table.md").write_text(table)
    if plot_fn is not None:
        plot_fn(result, folder / "plot.png")
