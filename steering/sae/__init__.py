"""Sparse autoencoders: the canonical `SAE`, one reader per on-disk format, and Hub fetching.

`open_sae(path)` reads headers only and features on demand; `load_sae(path)` reads the whole SAE;
`resolve_sae_folder(source, subfolder)` turns a local folder or a Hub repo id into a local path.
Names are imported on first use, so importing `steering.sae.names` (as config does) loads no torch.
"""

from steering.lazy import lazy_exports

_EXPORTS = {
    "SAE": "steering.sae.core",
    "FeatureRule": "steering.sae.core",
    "TopKFeature": "steering.sae.core",
    "FORMAT_NAMES": "steering.sae.names",
    "SAE_FORMATS": "steering.sae.names",
    "SAEFormatError": "steering.sae.names",
    "FORMATS": "steering.sae.registry",
    "SAEHandle": "steering.sae.registry",
    "detect_format": "steering.sae.registry",
    "load_sae": "steering.sae.registry",
    "open_sae": "steering.sae.registry",
    "resolve_sae_folder": "steering.sae.hub",
}
__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
