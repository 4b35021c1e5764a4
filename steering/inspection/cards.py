"""Everything an SAE folder ships about one feature, as one card: label, density, histogram, promoted
tokens, output score, top contexts. Both files are read once, when the cards are loaded.

- `feature_contexts.json.gz` (`labels.FeatureContexts`): label, fire rate and top tokens and words on
  the scanned training text, logit-lens tokens (`promotes`), tokens steering raises (`says`), contexts;
- `feature_stats.safetensors` (`steering.offline.feature_stats`): `density` on held-out text, its
  `histogram` over `hist_edges`, `output_score` and `output_base` (`inspection.output_score`)."""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor

from steering.inspection.labels import FILENAME, FeatureContexts, load_feature_contexts

STATS_FILENAME = "feature_stats.safetensors"


class FeatureCards:
    """Per-feature data of one SAE; `stats` may be empty (no stats file), `contexts` None (no contexts file)."""

    def __init__(self, contexts: FeatureContexts | None, stats: dict[str, Tensor], meta: dict[str, str] | None = None):
        if contexts is None and not stats:
            raise ValueError("no feature data: give a contexts file, a stats file or both")
        self.contexts, self.stats, self.meta = contexts, stats, dict(meta or {})
        self._n = len(contexts) if contexts is not None else len(next(iter(stats.values())))

    def __len__(self) -> int:
        return self._n

    def _check(self, index: int) -> None:
        if not 0 <= index < self._n:
            raise IndexError(f"feature {index} out of range: this SAE has features 0..{self._n - 1}")

    def _stat(self, name: str) -> Tensor | None:
        return self.stats.get(name)

    @property
    def densities(self) -> Tensor | None:
        """Density of every feature (F,) on held-out text, or None."""
        return self._stat("density")

    @property
    def output_scores(self) -> Tensor | None:
        """Output score of every feature (F,), or None."""
        return self._stat("output_score")

    def label(self, index: int) -> str | None:
        self._check(index)
        return self.contexts.label(index) if self.contexts is not None else None

    def card(self, index: int) -> dict:
        """One feature: `index`, `label`, `density`, `histogram` ({"edges", "counts"}), `output_score`,
        `output_base`, `promotes`, `says`, `top_tokens`, `top_words`, `fire_rate`, `max_activation`,
        `contexts` (strings, the activating token in [[ ]]). Missing data reads None or empty."""
        self._check(index)
        f = self.contexts.features[index] if self.contexts is not None else {}
        card = {"index": index, "label": f.get("label"), "fire_rate": f.get("fire_rate"),
                "max_activation": f.get("max_activation"), "top_tokens": f.get("top_tokens", []),
                "top_words": f.get("top_words", []), "promotes": f.get("promotes", []), "says": f.get("says", []),
                "contexts": [str(c) for c in self.contexts.contexts(index)] if self.contexts is not None else []}
        for name in ("density", "output_score", "output_base"):
            t = self._stat(name)
            card[name] = float(t[index]) if t is not None else None
        hist, edges = self._stat("histogram"), self._stat("hist_edges")
        card["histogram"] = ({"edges": edges.tolist(), "counts": hist[index].tolist()}
                             if hist is not None and edges is not None else None)
        return card

    def words_of(self, index: int) -> set[str]:
        """Lower-case words of the feature's label, top words and the tokens steering raises."""
        f = self.contexts.features[index] if self.contexts is not None else {}
        text = " ".join([f.get("label", "")] + [w for w, _ in f.get("top_words", [])] + list(f.get("says", [])))
        return set(re.findall(r"[a-z]+", text.lower()))


def has_feature_stats(folder: str | Path) -> bool:
    return (Path(folder) / STATS_FILENAME).is_file()


def load_stats(folder: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(tensors, metadata) of the folder's stats file; both empty when it has none."""
    from safetensors import safe_open

    if not has_feature_stats(folder):
        return {}, {}
    with safe_open(str(Path(folder) / STATS_FILENAME), framework="pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata() or {})


def load_feature_cards(folder: str | Path) -> FeatureCards:
    """Cards of an SAE folder from whichever of its two files exist (at least one must)."""
    folder = Path(folder)
    contexts = load_feature_contexts(folder) if (folder / FILENAME).is_file() else None
    stats, meta = load_stats(folder)
    if contexts is None and not stats:
        raise FileNotFoundError(f"{folder} has neither {FILENAME} nor {STATS_FILENAME}: compute them with "
                                f"`python -m steering.offline.feature_stats {folder}` and `python -m steering.offline.contexts {folder}`")
    return FeatureCards(contexts, stats, meta)
