"""The contract between a format's converter and the generic SAE handle, and the checks converters share.

A converter reads a folder's config and tensor headers (never the big matrices) and returns a `Layout`:
sizes, the encode rule, where each canonical tensor (`W_enc`, `W_dec`, `b_enc`, `b_dec`, `threshold`)
lives and in which orientation, and whether the decoder norms are folded into the weights. `SAEFormat`
names the files that identify a format. Everything else is generic (`steering.sae.registry`), so a new
format is one converter module.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Callable, Sequence

from steering.sae.names import SAEFormatError
from steering.sae.storage import StoredTensor

CANONICAL_SHAPES = {  # canonical name -> shape in terms of (d_in, d_sae)
    "W_enc": ("d_in", "d_sae"),
    "W_dec": ("d_sae", "d_in"),
    "b_enc": ("d_sae",),
    "b_dec": ("d_in",),
    "threshold": ("d_sae",),
}
FEATURE_AXIS = {"W_enc": 1, "W_dec": 0, "b_enc": 0, "threshold": 0}  # canonical axis that indexes features


@dataclass(frozen=True)
class Layout:
    """A format's SAE described canonically: sizes, encode rule, and where each canonical tensor lives."""

    d_in: int
    d_sae: int
    activation: str
    tensors: dict[str, StoredTensor]  # canonical name -> stored tensor
    transposed: frozenset[str] = frozenset()  # canonical names stored in the other orientation
    k: int | None = None
    apply_b_dec_to_input: bool = True
    layer: int | None = None
    cfg: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    scalar_ok: frozenset[str] = frozenset()  # canonical names that may be stored as one global scalar
    fold_decoder_norms: bool = False  # read with decoder norms folded in (`steering.sae.core.fold_decoder_norms`)


@dataclass(frozen=True)
class SAEFormat:
    """A registered format: the files that identify it and its converter.

    `weights` are file-name patterns (fnmatch) of the weights file, in order of preference; `config` is a file
    that must sit beside it; `exclude` are names that look like this format's weights but belong to another;
    `options` are the keyword arguments its converter accepts (`open_sae(..., k=...)`); a `fallback` format
    (wildcard names) is detected only when no other format fits.
    """

    weights: tuple[str, ...]
    open: Callable[..., Layout]
    config: str | None = None
    exclude: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    fallback: bool = False

    @property
    def files(self) -> tuple[str, ...]:
        return ((self.config,) if self.config else ()) + (" or ".join(self.weights),)

    def claims(self, name: str) -> bool:
        """Whether a file called `name` is this format's weights file."""
        return any(fnmatch(name, p) for p in self.weights) and not any(fnmatch(name, p) for p in self.exclude)

    def weight_files(self, folder: Path) -> list[Path]:
        """This format's weight files in `folder`: the first pattern with matches wins (e.g. safetensors over npz)."""
        names = sorted(p.name for p in folder.iterdir() if p.is_file() and self.claims(p.name))
        for pattern in self.weights:
            hits = [folder / n for n in names if fnmatch(n, pattern)]
            if hits:
                return hits
        return []


def pick(records: dict[str, StoredTensor], stored_name: str, canonical: str, path: Path) -> StoredTensor:
    """The record `stored_name`, or an error naming the canonical tensor it was wanted for."""
    if stored_name not in records:
        raise SAEFormatError(
            f"{path}: missing tensor {stored_name!r} (canonical {canonical}); found {sorted(records)}. "
            f"Check that this file is a complete SAE of the expected format"
        )
    return records[stored_name]


def check_shapes(layout: Layout) -> None:
    """Every stored tensor must match d_in/d_sae from the config, in the format's own orientation."""
    sizes = {"d_in": layout.d_in, "d_sae": layout.d_sae}
    for canonical, stored in layout.tensors.items():
        if canonical in layout.scalar_ok and stored.shape == ():
            continue
        expected = tuple(sizes[s] for s in CANONICAL_SHAPES[canonical])
        names = CANONICAL_SHAPES[canonical]
        if canonical in layout.transposed:
            expected, names = expected[::-1], names[::-1]
        if stored.shape != expected:
            raise SAEFormatError(
                f"{stored.path}: tensor {stored.name!r} has shape {stored.shape}, expected {expected} "
                f"= ({', '.join(names)}) from the config (d_in={layout.d_in}, d_sae={layout.d_sae}). "
                f"The config and the weights disagree: check that they belong to the same SAE"
            )


def read_json(path: Path) -> dict:
    """A format's JSON config; a missing file is an SAEFormatError naming the folder."""
    if not path.is_file():
        raise SAEFormatError(f"{path.parent}: missing {path.name}")
    return json.loads(path.read_text())


def require_keys(cfg: dict, keys: Sequence[str], where: str) -> None:
    """SAEFormatError listing every key of `keys` that `cfg` lacks."""
    missing = [k for k in keys if k not in cfg]
    if missing:
        raise SAEFormatError(f"{where}: missing config keys {missing}; found {sorted(cfg)}")


def layer_from_hook(hook_name: str | None) -> int | None:
    """The layer in a hook name such as `blocks.12.hook_resid_post` or `layers.12`, else None."""
    match = re.search(r"(?:blocks|layers)\.(\d+)", hook_name or "")
    return int(match.group(1)) if match else None


def first_int(pattern: str, parts: Sequence[str]) -> int | None:
    """The first capture of `pattern` in the nearest of `parts` that matches (parts run innermost first)."""
    for part in parts:
        match = re.search(pattern, part)
        if match:
            return int(match.group(1))
    return None


def shape_2d(stored: StoredTensor, what: str) -> tuple[int, int]:
    """The shape of a matrix the sizes are read from; refuses anything but 2-D, naming `what` it should be."""
    if len(stored.shape) != 2:
        raise SAEFormatError(f"{stored.path}: tensor {stored.name!r} has shape {stored.shape}; expected a 2-D {what}")
    return stored.shape
