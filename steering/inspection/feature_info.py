"""The feature data a config's SAE folders ship, per layer (labels, contexts, cards), found once and loaded on
first use: what the service shows beside each feature."""

from __future__ import annotations

from pathlib import Path

from steering.config import DemoConfig
from steering.inspection.cards import FeatureCards, load_stats
from steering.inspection.labels import has_feature_contexts, load_feature_contexts


class FolderFeatureInfo:
    """Per-layer feature contexts found in the SAE folders, loaded on first use."""

    def __init__(self, folders: dict[int, Path]):
        self.folders = folders
        self._loaded: dict[int, object] = {}
        self._cards: dict[int, object] = {}

    def _layer(self, layer: int):
        if layer not in self._loaded:
            folder = self.folders.get(layer)
            self._loaded[layer] = load_feature_contexts(folder) if folder is not None else None
        return self._loaded[layer]

    def label(self, layer: int, index: int) -> str | None:
        found = self._layer(layer)
        return found.label(index) if found is not None else None

    def contexts(self, layer: int, index: int) -> list[str]:
        found = self._layer(layer)
        return [str(c) for c in found.contexts(index)] if found is not None else []

    def cards(self, layer: int):
        """The layer's `cards.FeatureCards` (contexts file read once, shared with `label`), or None."""
        if layer not in self._cards:
            folder, found = self.folders.get(layer), self._layer(layer)
            self._cards[layer] = None if found is None else FeatureCards(found, *load_stats(folder))
        return self._cards[layer]

    def card(self, layer: int, index: int) -> dict | None:
        """Everything shipped about one feature (see `cards.FeatureCards.card`), or None for a layer without data."""
        cards = self.cards(layer)
        return cards.card(index) if cards is not None else None


def load_feature_info(config: DemoConfig, layers: list[int] | None = None) -> FolderFeatureInfo | None:
    """Feature info for the config's local SAE folders that ship contexts, or None."""
    if config.sae is None:
        return None
    root = Path(config.sae_source())
    if not root.is_dir():
        return None
    wanted = layers if layers is not None else sorted({f.layer for f in config.features} | ({config.inspector_layer} if config.inspector_layer is not None else set()))
    folders = {}
    for layer in wanted:
        sub = config.sae.subfolder(layer)
        folder = root / sub if sub else root
        if has_feature_contexts(folder):
            folders[layer] = folder
    return FolderFeatureInfo(folders) if folders else None
