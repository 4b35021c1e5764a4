"""What each SAE feature means, as an SAE folder ships it: labels and top-activating contexts."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

FILENAME = "feature_contexts.json.gz"


@dataclass(frozen=True)
class Context:
    before: str
    token: str
    after: str
    activation: float

    def __str__(self) -> str:
        return f"{self.before}[[{self.token}]]{self.after}"


class FeatureContexts:
    """Read-only view of a `feature_contexts.json.gz` file."""

    def __init__(self, data: dict):
        self.data = data
        self.vocab: dict[int, str] = {int(k): v for k, v in data["vocab"].items()}
        self.features: list[dict] = data["features"]

    def __len__(self) -> int:
        return len(self.features)

    def _check(self, index: int) -> dict:
        if not 0 <= index < len(self.features):
            raise IndexError(f"feature {index} out of range: this SAE has features 0..{len(self.features) - 1}")
        return self.features[index]

    def label(self, index: int) -> str:
        return self._check(index)["label"]

    def contexts(self, index: int) -> list[Context]:
        out = []
        for act, ids, hi in self._check(index)["contexts"]:
            pieces = [self.vocab[i] for i in ids]
            out.append(Context("".join(pieces[:hi]), pieces[hi], "".join(pieces[hi + 1 :]), float(act)))
        return out

    def info(self, index: int) -> dict:
        """Label, fire rate, max activation, top tokens, promoted tokens; top words and `says` when the file has them."""
        f = self._check(index)
        out = {k: f[k] for k in ("label", "fire_rate", "max_activation", "top_tokens", "promotes")}
        out.update({k: f[k] for k in ("top_words", "says") if k in f})
        return out

    def search(self, text: str, n: int = 20) -> list[int]:
        """Features whose label or top tokens contain `text` (case-insensitive)."""
        text = text.lower()
        hits = [i for i, f in enumerate(self.features)
                if text in f["label"].lower() or any(text in t.lower() for t, _ in f["top_tokens"])]
        return hits[:n]


def has_feature_contexts(folder: str | Path) -> bool:
    """Whether an SAE folder ships a contexts file."""
    return (Path(folder) / FILENAME).is_file()


def load_feature_contexts(folder: str | Path) -> FeatureContexts:
    """Load `feature_contexts.json.gz` from an SAE folder (or the file itself)."""
    path = Path(folder)
    if path.is_dir():
        path = path / FILENAME
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: compute it with `python -m steering.offline.contexts {path.parent}`")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return FeatureContexts(json.load(f))
