"""Labels and top-activating contexts that an SAE ships beside its weights, for the app.

Only local SAE folders are read (a Hub SAE's extras would need their own download); an SAE
without them gives None, and the app falls back to "feature N @ layer L".
"""

from __future__ import annotations

from pathlib import Path

from .config import DemoConfig


class FolderFeatureInfo:
    """Per-layer feature contexts found in the SAE folders, loaded on first use."""

    def __init__(self, folders: dict[int, Path]):
        self.folders = folders
        self._loaded: dict[int, object] = {}

    def _layer(self, layer: int):
        if layer not in self._loaded:
            from .feature_contexts import load_feature_contexts

            folder = self.folders.get(layer)
            self._loaded[layer] = load_feature_contexts(folder) if folder is not None else None
        return self._loaded[layer]

    def label(self, layer: int, index: int) -> str | None:
        found = self._layer(layer)
        return found.label(index) if found is not None else None

    def contexts(self, layer: int, index: int) -> list[str]:
        found = self._layer(layer)
        return [str(c) for c in found.contexts(index)] if found is not None else []


def load_feature_info(config: DemoConfig, layers: list[int] | None = None) -> FolderFeatureInfo | None:
    """Feature info for the config's local SAE folders that ship contexts, or None."""
    if config.sae is None:
        return None
    try:
        from .feature_contexts import has_feature_contexts
    except ImportError:
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
