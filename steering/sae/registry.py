"""The registered SAE formats, their detection from file names, and the handle `open_sae` returns.

`FORMATS` maps each name in `names.FORMAT_NAMES` to the `FORMAT` of the module of that name in
`steering.sae.formats`, so the format list exists once. `SAEHandle` turns any converter's `Layout` into
lazy feature reads (`decoder_rows`, `feature_rules`) or a full canonical `SAE` (`load`). Where the layout says
`fold_decoder_norms`, all three fold each feature's decoder norm in the same way (read from its own row).
"""

from __future__ import annotations

import re
from importlib import import_module
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from steering.sae.core import (
    PER_FEATURE_RULES,
    SAE,
    FeatureRule,
    decoder_norms,
    fold_decoder_norms,
)
from steering.sae.layout import FEATURE_AXIS, Layout, SAEFormat, check_shapes
from steering.sae.names import FORMAT_NAMES, SAEFormatError
from steering.sae.storage import read_full

__all__ = ["FORMATS", "SAEFormatError", "SAEHandle", "detect_format", "load_sae", "open_sae"]

_FOLDED = ("W_enc", "b_enc", "W_dec")  # the arguments and results of `fold_decoder_norms`, in order

FORMATS: dict[str, SAEFormat] = {name: import_module(f"steering.sae.formats.{name}").FORMAT for name in FORMAT_NAMES}


def _known() -> str:
    return "; ".join(f"{name}: {' + '.join(fmt.files)}" for name, fmt in FORMATS.items())


def _locate(path: Path, format: str) -> tuple[str, Path]:
    """(format name, weights file) for `path`, a folder or a weights file; `format` may be "auto"."""
    if format != "auto" and format not in FORMATS:
        raise SAEFormatError(f"unknown SAE format {format!r}; known: {sorted(FORMATS)}")
    if path.is_file():
        folder, names = path.parent, [format] if format != "auto" else list(FORMATS)
        matches = [n for n in names if FORMATS[n].claims(path.name)]
        if format != "auto" and not matches:
            needs = " + ".join(FORMATS[format].files)
            raise SAEFormatError(f"{path}: not a {format!r} weights file; {format} needs {needs}")
        candidates = {n: [path] for n in matches}
    elif path.is_dir():
        folder = path
        names = [format] if format != "auto" else list(FORMATS)
        candidates = {n: files for n in names if (files := FORMATS[n].weight_files(folder))}
    else:
        raise SAEFormatError(f"{path}: no such file or folder")
    if format != "auto":
        fmt = FORMATS[format]
        missing = [fmt.config] if fmt.config and not (folder / fmt.config).is_file() else []
        missing += [] if candidates else [" or ".join(fmt.weights)]
        if missing:
            raise SAEFormatError(f"{folder}: format {format!r} needs {list(fmt.files)}; missing {missing}")
    else:
        candidates = {
            n: f for n, f in candidates.items() if not FORMATS[n].config or (folder / FORMATS[n].config).is_file()
        }
        specific = {n: f for n, f in candidates.items() if not FORMATS[n].fallback}
        candidates = specific or candidates  # a wildcard format (goodfire's *.pth) only when nothing else fits
        if not candidates:
            found = sorted(p.name for p in folder.iterdir())
            raise SAEFormatError(f"{path}: unknown SAE format; found files {found}. Known formats need: {_known()}")
        if len(candidates) > 1:
            raise SAEFormatError(f"{path}: ambiguous SAE format, matches {sorted(candidates)}; pass format= explicitly")
    (name, files), = candidates.items()
    if len(files) > 1:
        shown = [f.name for f in files[:4]] + (["..."] if len(files) > 4 else [])
        raise SAEFormatError(
            f"{folder}: holds {len(files)} {name} weight files {shown}; name one, e.g. open_sae({str(files[0])!r}) "
            f"or in demo.yaml sae.path: \"{re.sub(r'[0-9]+', '{layer}', files[0].name, count=1)}\""
        )
    return name, files[0]


def detect_format(folder: Path | str) -> str:
    """The one registered format whose identifying files are present in `folder` (or that names this file)."""
    path = Path(folder)
    if not path.exists():
        raise SAEFormatError(f"{path}: not a folder")
    return _locate(path, "auto")[0]


class SAEHandle:
    """An SAE on disk, opened from headers only; features are read on demand, `load` reads everything."""

    def __init__(self, weights: Path, format: str, layout: Layout):
        self.weights = weights
        self.folder = weights.parent
        self.format = format
        self.layout = layout
        self.d_in = layout.d_in
        self.d_sae = layout.d_sae
        self.cfg = layout.cfg
        self.layer = layout.layer

    def __repr__(self) -> str:
        return f"SAEHandle({self.format!r}, {str(self.weights)!r}, d_in={self.d_in}, d_sae={self.d_sae})"

    @property
    def activation(self) -> str:
        return self.layout.activation

    @property
    def k(self) -> int | None:
        return self.layout.k

    @property
    def meta(self) -> dict:
        return {**self.layout.meta, "source": str(self.folder), "weights": self.weights.name, "format": self.format}

    def check_width(self, d_model: int) -> None:
        """SAEFormatError unless this SAE reads vectors of the model's residual width `d_model`."""
        if int(d_model) != self.d_in:
            raise SAEFormatError(
                f"{self.weights}: this {self.format} SAE reads residual vectors of width d_in={self.d_in}, but the "
                f"model's residual width (hidden_size) is d_model={int(d_model)}. The SAE was trained on another "
                f"model: pick the SAE release made for this model, or the model this SAE was made for"
            )

    def _indices(self, indices: int | Sequence[int] | Tensor) -> Tensor:
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        bad = idx[(idx < 0) | (idx >= self.d_sae)]
        if len(bad):
            raise IndexError(f"feature indices {bad.tolist()} out of range [0, {self.d_sae}) for {self}")
        return idx

    def _features(self, canonical: str, idx: Tensor) -> Tensor:
        """Canonical tensor restricted to features `idx`: (n,) or (n, d_in), float32."""
        stored = self.layout.tensors[canonical]
        if stored.shape == ():
            return stored.read_all_small().float().expand(len(idx))
        axis = FEATURE_AXIS[canonical]
        if canonical in self.layout.transposed:
            axis = 1 - axis
        return stored.read_index(idx, axis).float()

    def decoder_rows(self, indices: int | Sequence[int] | Tensor) -> Tensor:
        """(n, d_in) float32 decoder directions as `load().W_dec` has them, reading only those features' bytes."""
        rows = self._features("W_dec", self._indices(indices))  # (n, d_in)
        return rows / decoder_norms(rows).unsqueeze(-1) if self.layout.fold_decoder_norms else rows

    def feature_rules(self, indices: int | Sequence[int] | Tensor) -> list[FeatureRule]:
        """Per-feature encoders for pin mode; ValueError for TopK SAEs (use `load().encode`)."""
        if self.activation not in PER_FEATURE_RULES:
            raise ValueError(
                f"{self}: a {self.activation!r} SAE cannot be reduced to per-feature encoder rows (each activation "
                f"depends on all features); load the full SAE and use SAE.encode / SAE.encode_feature"
            )
        idx = self._indices(indices)
        w_enc = self._features("W_enc", idx)  # (n, d_in)
        b_enc = self._features("b_enc", idx)  # (n,)
        if self.layout.fold_decoder_norms:
            norms = decoder_norms(self._features("W_dec", idx))  # (n,)
            w_enc, b_enc = w_enc * norms.unsqueeze(-1), b_enc * norms
        threshold = self._features("threshold", idx) if "threshold" in self.layout.tensors else None  # (n,)
        b_dec = self.layout.tensors["b_dec"].read_all_small().float()  # (d_in,)
        return [
            FeatureRule(
                index=int(i),
                w_enc=w_enc[j],
                b_enc=b_enc[j],
                b_dec=b_dec,
                threshold=None if threshold is None else threshold[j],
                rule=self.activation,
                apply_b_dec_to_input=self.layout.apply_b_dec_to_input,
            )
            for j, i in enumerate(idx.tolist())
        ]

    def load(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> SAE:
        """The whole SAE in canonical orientation (decoder norms folded in where the layout says so)."""
        weights, fold = {}, self.layout.fold_decoder_norms
        for canonical, stored in self.layout.tensors.items():
            t = read_full(stored)
            if canonical in self.layout.transposed:
                t = t.T
            if t.shape == () and canonical in self.layout.scalar_ok:
                t = t.expand(self.d_sae)
            weights[canonical] = t if fold and canonical in _FOLDED else _copy(t, dtype, device)
        if fold:
            folded = fold_decoder_norms(*(weights[n] for n in _FOLDED))
            weights.update({n: _copy(t, dtype, device) for n, t in zip(_FOLDED, folded)})
        return SAE(
            **weights,
            activation=self.activation,
            k=self.layout.k,
            apply_b_dec_to_input=self.layout.apply_b_dec_to_input,
            meta=self.meta,
        )


def _copy(t: Tensor, dtype: torch.dtype, device: torch.device | str) -> Tensor:
    """`t` as a new tensor of `dtype` on `device` (from a memory-mapped view: the one copy in memory)."""
    return torch.empty(t.shape, dtype=dtype, device=device).copy_(t)


def open_sae(
    path: str | Path, format: str = "auto", *, k: int | None = None, d_model: int | None = None
) -> SAEHandle:
    """Open an SAE from its config and tensor headers, validating every shape; reads no weights.

    `path` is a folder holding one SAE, or the weights file itself (needed where one folder holds several,
    as Qwen-Scope's `layer{n}.sae.pt`). `format` is a name in `FORMATS` or "auto" (detected from the file
    names). `k` is the TopK k for formats whose files do not record it (qwen_scope); other formats refuse it.
    With `d_model`, the SAE's input width must equal the model's residual width (`SAEHandle.check_width`).
    """
    path = Path(path)
    format, weights = _locate(path, format)
    fmt = FORMATS[format]
    options = {} if k is None else {"k": int(k)}
    refused = [o for o in options if o not in fmt.options]
    if refused:
        raise SAEFormatError(f"{weights}: format {format!r} takes no {refused} option (its files record it)")
    layout = fmt.open(weights, **options)
    check_shapes(layout)
    handle = SAEHandle(weights, format, layout)
    if d_model is not None:
        handle.check_width(d_model)
    return handle


def load_sae(
    path: str | Path,
    format: str = "auto",
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    *,
    k: int | None = None,
    d_model: int | None = None,
) -> SAE:
    """The whole SAE at `path` in canonical orientation: `open_sae(...)` then `load(device, dtype)`."""
    return open_sae(path, format, k=k, d_model=d_model).load(device=device, dtype=dtype)

