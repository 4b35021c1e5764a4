"""How well each concept's probe separates its held-out texts, per layer: the evidence for the scorer's
`probe_layer` (`python -m steering.offline.eval probes CONFIG`, with `probes: {layers, concepts}` in the config).

For each layer and concept: the probe's held-out balanced accuracy, TPR and FPR (`grades.DiffMeanProbe`), and
how often it fires on the other concepts' held-out texts (a probe that fires on every topic detects "a topic",
not this one)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from steering.offline.eval.lexicons import concept


def probe_quality(scorer, layers: Sequence[int], names: Sequence[str], lexicon: int, log=print) -> dict:
    """{concept: {layer: held-out figures, threshold, fires_on_other_concepts}} for a fitted full `scorer`."""
    ps, table = scorer.probe_set, {}
    for layer in layers:
        held = {}
        for name in names:
            c = concept(name, lexicon)
            texts = scorer.probe_texts(ps.prompts(c.probe_subjects), layer)
            held[name] = torch.stack(ps.split_texts(texts, len(c.probe_subjects))[1])
        for name in names:
            p = scorer.probe(concept(name, lexicon), layer)
            others = torch.cat([h for n, h in held.items() if n != name]) if len(held) > 1 else None
            cross = float(p.fires(others).float().mean()) if others is not None else None
            table.setdefault(name, {})[layer] = {**p.heldout, "threshold": p.threshold, "fires_on_other_concepts": cross}
            log(f"L{layer} {name:>10}: balanced acc {p.heldout['balanced_accuracy']:.2f} tpr {p.heldout['tpr']:.2f} "
                f"fpr {p.heldout['fpr']:.2f} other concepts {cross}")
    return table


def markdown(table: dict) -> str:
    layers = sorted({layer for per in table.values() for layer in per})
    lines = ["| concept | " + " | ".join(f"L{l}: bal. acc / FPR / other concepts" for l in layers) + " |",
             "|---|" + "---|" * len(layers)]
    for name, per in table.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{per[l]['balanced_accuracy']:.2f} / {per[l]['fpr']:.2f} / {per[l]['fires_on_other_concepts'] or 0:.2f}"
            for l in layers) + " |")
    return "\n".join(lines) + "\n"
