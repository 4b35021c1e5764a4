"""Read SAEs from disk: one small converter per format, detection, lazy feature reads, source resolution.

A converter reads a folder's config and tensor headers (never the big matrices) and returns a `Layout`:
sizes, the encode rule, and where each canonical tensor (`W_enc`, `W_dec`, `b_enc`, `b_dec`, `threshold`)
lives and in which orientation. `SAEHandle` does everything else generically, so a new format is one more
converter plus one entry in `FORMATS`.

Lazy reads use `os.pread` at byte offsets taken from the file headers: only the requested rows/columns
are read, through the page cache, and nothing is mapped into the process. (A memory-mapped
`torch.load(mmap=True)` followed by column indexing maps whole pages and folios around every element,
which for a (d, F) decoder read by columns is the whole matrix.)
"""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from safetensors import safe_open
from torch import Tensor

from steering.sae import SAE, FeatureRule

CANONICAL_SHAPES = {  # canonical name -> shape in terms of (d_in, d_sae)
    "W_enc": ("d_in", "d_sae"),
    "W_dec": ("d_sae", "d_in"),
    "b_enc": ("d_sae",),
    "b_dec": ("d_in",),
    "threshold": ("d_sae",),
}
FEATURE_AXIS = {"W_enc": 1, "W_dec": 0, "b_enc": 0, "threshold": 0}  # canonical axis that indexes features
_MERGE_GAP = 1024  # elements; nearby reads are merged into one pread


class SAEFormatError(ValueError):
    """An SAE folder or file that cannot be read as the requested format; the message says what to fix."""


# ---------------------------------------------------------------------------------------------------------
# Stored tensors: headers, lazy element reads, full reads


@dataclass(frozen=True)
class StoredTensor:
    """Where one tensor's bytes lie in a file, read from the header only."""

    path: Path
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    strides: tuple[int, ...]  # in elements
    storage_offset: int  # in elements, from `byte_offset`
    byte_offset: int  # file offset of the storage's first byte

    def read_elements(self, offsets: np.ndarray) -> Tensor:
        """Elements at storage `offsets` (any shape), read with as few preads as nearby offsets allow."""
        esize = torch.empty((), dtype=self.dtype).element_size()
        if offsets.size == 0:
            return torch.empty(offsets.shape, dtype=self.dtype)
        flat = np.unique(offsets)  # sorted
        breaks = np.flatnonzero(np.diff(flat) > _MERGE_GAP)
        starts = flat[np.r_[0, breaks + 1]]
        ends = flat[np.r_[breaks, len(flat) - 1]] + 1
        buf = bytearray()
        run_base = np.zeros(len(starts), dtype=np.int64)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            for r, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
                run_base[r] = len(buf) // esize
                nbytes = (e - s) * esize
                chunk = os.pread(fd, nbytes, self.byte_offset + s * esize)
                if len(chunk) != nbytes:
                    raise SAEFormatError(f"{self.path}: tensor {self.name!r} is truncated (file too short)")
                buf += chunk
        finally:
            os.close(fd)
        values = torch.frombuffer(buf, dtype=self.dtype)
        run = np.searchsorted(starts, offsets, side="right") - 1
        position = run_base[run] + (offsets - starts[run])
        return values[torch.from_numpy(np.asarray(position, dtype=np.int64))].clone()

    def read_index(self, indices: Tensor, dim: int) -> Tensor:
        """Entries `indices` along `dim`, moved to the front: (n,) for 1-D, (n, other) for 2-D."""
        idx = indices.numpy().astype(np.int64)
        offsets = self.storage_offset + idx * self.strides[dim]  # (n,)
        if len(self.shape) == 2:
            other = 1 - dim
            along = np.arange(self.shape[other], dtype=np.int64) * self.strides[other]  # (other,)
            offsets = offsets[:, None] + along[None, :]  # (n, other)
        return self.read_elements(offsets)

    def read_all_small(self) -> Tensor:
        """The whole tensor by pread; meant for vectors and scalars."""
        offsets = np.full(self.shape, self.storage_offset, dtype=np.int64)
        for axis, (size, stride) in enumerate(zip(self.shape, self.strides)):
            view = [1] * len(self.shape)
            view[axis] = size
            offsets = offsets + (np.arange(size, dtype=np.int64) * stride).reshape(view)
        return self.read_elements(offsets)


def _contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}  # fmt: skip


def safetensors_header(path: Path) -> dict[str, StoredTensor]:
    """Tensor records of a .safetensors file from its JSON header (8-byte length, then JSON)."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    records = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        shape = tuple(info["shape"])
        records[name] = StoredTensor(
            path=path,
            name=name,
            dtype=_SAFETENSORS_DTYPES[info["dtype"]],
            shape=shape,
            strides=_contiguous_strides(shape),
            storage_offset=0,
            byte_offset=8 + length + info["data_offsets"][0],
        )
    return records


def torch_header(path: Path) -> dict[str, StoredTensor]:
    """Tensor records of a torch.save zip file, from a weights-only load onto the meta device.

    Loading with map_location="meta" unpickles only the (restricted) pickle and records each storage's byte
    offset in the file, so no tensor data is read.
    """
    if not zipfile.is_zipfile(path):
        raise SAEFormatError(
            f"{path}: not a torch.save zip archive (legacy torch format?); re-save it with a recent torch.save"
        )
    with zipfile.ZipFile(path) as z:
        order = [n for n in z.namelist() if n.endswith("/byteorder")]
        if order and z.read(order[0]).decode() != sys.byteorder:
            raise SAEFormatError(f"{path}: saved with byte order {z.read(order[0]).decode()!r}; re-save it here")
    state = _torch_load(path, map_location="meta")
    if not isinstance(state, dict):
        raise SAEFormatError(f"{path}: expected a state dict (name -> tensor), found {type(state).__name__}")
    records = {}
    for name, t in state.items():
        if not isinstance(t, Tensor):
            continue
        if getattr(t.untyped_storage(), "_checkpoint_offset", None) is None:
            raise SAEFormatError(
                f"{path}: torch {torch.__version__} did not report where tensor {name!r} lies in the file, so it "
                f"cannot be read lazily; use a torch version whose meta-device load sets _checkpoint_offset"
            )
        records[name] = StoredTensor(
            path=path,
            name=name,
            dtype=t.dtype,
            shape=tuple(t.shape),
            strides=tuple(t.stride()),
            storage_offset=t.storage_offset(),
            byte_offset=t.untyped_storage()._checkpoint_offset,
        )
    return records


def _torch_load(path: Path, **kwargs) -> object:
    """torch.load, always weights_only=True: a file that pickles code is refused, nothing is executed."""
    try:
        return torch.load(path, weights_only=True, **kwargs)
    except pickle.UnpicklingError as exc:
        raise SAEFormatError(
            f"{path}: refused to load; it contains pickled objects other than tensors and plain containers, "
            f"which could run code. Only weights_only=True loads are allowed. Details: {exc}"
        ) from exc


def read_full(stored: StoredTensor) -> Tensor:
    """The whole tensor; for torch files a memory-mapped view, so the caller's one copy is the only one."""
    if stored.path.suffix == ".safetensors":
        with safe_open(str(stored.path), framework="pt") as f:
            return f.get_tensor(stored.name)
    return _torch_load(stored.path, map_location="cpu", mmap=True)[stored.name]


# ---------------------------------------------------------------------------------------------------------
# Layout: what a converter returns


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


def _pick(records: dict[str, StoredTensor], stored_name: str, canonical: str, path: Path) -> StoredTensor:
    if stored_name not in records:
        raise SAEFormatError(
            f"{path}: missing tensor {stored_name!r} (canonical {canonical}); found {sorted(records)}. "
            f"Check that this file is a complete SAE of the expected format"
        )
    return records[stored_name]


def _check_shapes(layout: Layout) -> None:
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


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise SAEFormatError(f"{path.parent}: missing {path.name}")
    return json.loads(path.read_text())


def _require(cfg: dict, keys: Sequence[str], where: str) -> None:
    missing = [k for k in keys if k not in cfg]
    if missing:
        raise SAEFormatError(f"{where}: missing config keys {missing}; found {sorted(cfg)}")


def _layer_from_hook(hook_name: str | None) -> int | None:
    match = re.search(r"(?:blocks|layers)\.(\d+)", hook_name or "")
    return int(match.group(1)) if match else None


# ---------------------------------------------------------------------------------------------------------
# Converters


_SAELENS_ACTIVATION = {"standard": "relu", "relu": "relu", "topk": "topk", "jumprelu": "jumprelu"}


def _open_saelens(folder: Path) -> Layout:
    """SAELens native: cfg.json + sae_weights.safetensors, already in canonical names and orientation."""
    cfg_path, weights = folder / "cfg.json", folder / "sae_weights.safetensors"
    cfg = _read_json(cfg_path)
    _require(cfg, ["d_in", "d_sae"], str(cfg_path))
    architecture = cfg.get("architecture", "standard")
    if architecture not in _SAELENS_ACTIVATION:
        raise SAEFormatError(
            f"{cfg_path}: architecture {architecture!r} is not supported; supported: {sorted(_SAELENS_ACTIVATION)}"
        )
    if cfg.get("normalize_activations") not in (None, "none"):
        raise SAEFormatError(
            f"{cfg_path}: normalize_activations={cfg['normalize_activations']!r} is not supported "
            f"(encode would need the input rescaled); only 'none'"
        )
    activation = _SAELENS_ACTIVATION[architecture]
    k = cfg.get("k", (cfg.get("activation_fn_kwargs") or {}).get("k"))
    if activation == "topk" and k is None:
        raise SAEFormatError(f"{cfg_path}: architecture 'topk' needs 'k' or 'activation_fn_kwargs': {{'k': ...}}")
    records = safetensors_header(weights)
    names = ["W_enc", "W_dec", "b_enc", "b_dec"] + (["threshold"] if activation == "jumprelu" else [])
    meta = dict(cfg.get("metadata") or {})
    hook_name = cfg.get("hook_name", meta.get("hook_name"))
    layer = cfg.get("hook_layer", meta.get("layer"))
    layer = _layer_from_hook(hook_name) if layer is None else int(layer)
    meta.update(hook_name=hook_name, layer=layer, model_name=cfg.get("model_name", meta.get("model_name")))
    return Layout(
        d_in=int(cfg["d_in"]),
        d_sae=int(cfg["d_sae"]),
        activation=activation,
        tensors={n: _pick(records, n, n, weights) for n in names},
        k=None if k is None else int(k),
        apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)),
        layer=layer,
        cfg=cfg,
        meta=meta,
    )


_DICTIONARY_LEARNING_NAMES = {
    "W_enc": "encoder.weight",  # (F, d): canonical transposed
    "W_dec": "decoder.weight",  # (d, F): canonical transposed
    "b_enc": "encoder.bias",
    "b_dec": "b_dec",
    "threshold": "threshold",  # one global scalar
}


def _open_dictionary_learning(folder: Path) -> Layout:
    """dictionary_learning BatchTopK (ae.pt + config.json); at inference a global-threshold rule -> jumprelu."""
    cfg_path, weights = folder / "config.json", folder / "ae.pt"
    cfg = _read_json(cfg_path)
    if "trainer" not in cfg:
        raise SAEFormatError(f"{cfg_path}: missing the 'trainer' section; found keys {sorted(cfg)}")
    trainer = cfg["trainer"]
    _require(trainer, ["activation_dim", "dict_size", "k"], f"{cfg_path} ['trainer']")
    dict_class = trainer.get("dict_class", "BatchTopKSAE")
    if dict_class != "BatchTopKSAE":
        raise SAEFormatError(f"{cfg_path}: dict_class {dict_class!r} is not supported; supported: BatchTopKSAE")
    records = torch_header(weights)
    tensors = {c: _pick(records, n, c, weights) for c, n in _DICTIONARY_LEARNING_NAMES.items()}
    k = int(trainer["k"])
    if "k" in records and records["k"].shape == () and int(records["k"].read_all_small()) != k:
        raise SAEFormatError(
            f"{weights}: buffer k={int(records['k'].read_all_small())} disagrees with {cfg_path} trainer.k={k}"
        )
    layer = trainer.get("layer")
    layer = None if layer is None else int(layer)
    meta = {
        "layer": layer,
        "hook_name": None if layer is None else f"blocks.{layer}.hook_resid_post",
        "model_name": trainer.get("lm_name"),
        "k": k,  # BatchTopK's training k; inference uses the threshold
        "dict_class": dict_class,
    }
    return Layout(
        d_in=int(trainer["activation_dim"]),
        d_sae=int(trainer["dict_size"]),
        activation="jumprelu",
        tensors=tensors,
        transposed=frozenset({"W_enc", "W_dec"}),
        apply_b_dec_to_input=True,
        layer=layer,
        cfg=cfg,
        meta=meta,
        scalar_ok=frozenset({"threshold"}),
    )


@dataclass(frozen=True)
class SAEFormat:
    """A registered format: the files that identify it and its converter."""

    files: tuple[str, ...]
    open: Callable[[Path], Layout]


FORMATS: dict[str, SAEFormat] = {
    "saelens": SAEFormat(files=("cfg.json", "sae_weights.safetensors"), open=_open_saelens),
    "dictionary_learning": SAEFormat(files=("config.json", "ae.pt"), open=_open_dictionary_learning),
}


def detect_format(folder: Path | str) -> str:
    """The one registered format whose identifying files are all present in `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SAEFormatError(f"{folder}: not a folder")
    matches = [name for name, fmt in FORMATS.items() if all((folder / f).is_file() for f in fmt.files)]
    if len(matches) == 1:
        return matches[0]
    found = sorted(p.name for p in folder.iterdir())
    known = "; ".join(f"{name}: {', '.join(fmt.files)}" for name, fmt in FORMATS.items())
    if not matches:
        raise SAEFormatError(f"{folder}: unknown SAE format; found files {found}. Known formats need: {known}")
    raise SAEFormatError(f"{folder}: ambiguous SAE format, matches {matches}; pass format= explicitly")


# ---------------------------------------------------------------------------------------------------------
# Handle


class SAEHandle:
    """An SAE on disk, opened from headers only; features are read on demand, `load` reads everything."""

    def __init__(self, folder: Path, format: str, layout: Layout):
        self.folder = folder
        self.format = format
        self.layout = layout
        self.d_in = layout.d_in
        self.d_sae = layout.d_sae
        self.cfg = layout.cfg
        self.layer = layout.layer

    def __repr__(self) -> str:
        return f"SAEHandle({self.format!r}, {str(self.folder)!r}, d_in={self.d_in}, d_sae={self.d_sae})"

    @property
    def activation(self) -> str:
        return self.layout.activation

    @property
    def meta(self) -> dict:
        return {**self.layout.meta, "source": str(self.folder), "format": self.format}

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
        """(n, d_in) float32 raw decoder directions, reading only those features' bytes."""
        return self._features("W_dec", self._indices(indices))

    def feature_rules(self, indices: int | Sequence[int] | Tensor) -> list[FeatureRule]:
        """Per-feature encoders for pin mode; ValueError for TopK SAEs (use `load().encode`)."""
        if self.activation not in ("relu", "jumprelu"):
            raise ValueError(
                f"{self}: a {self.activation!r} SAE cannot be reduced to per-feature encoder rows (each activation "
                f"depends on all features); load the full SAE and use SAE.encode / SAE.encode_feature"
            )
        idx = self._indices(indices)
        w_enc = self._features("W_enc", idx)  # (n, d_in)
        b_enc = self._features("b_enc", idx)  # (n,)
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
        """The whole SAE in canonical orientation."""
        weights = {}
        for canonical, stored in self.layout.tensors.items():
            t = read_full(stored)
            if canonical in self.layout.transposed:
                t = t.T
            if t.shape == () and canonical in self.layout.scalar_ok:
                t = t.expand(self.d_sae)
            weights[canonical] = torch.empty(t.shape, dtype=dtype, device=device).copy_(t)
        return SAE(
            **weights,
            activation=self.activation,
            k=self.layout.k,
            apply_b_dec_to_input=self.layout.apply_b_dec_to_input,
            meta=self.meta,
        )


def open_sae(folder: str | Path, format: str = "auto") -> SAEHandle:
    """Open an SAE folder from its config and tensor headers, validating every shape; reads no weights."""
    folder = Path(folder)
    if format == "auto":
        format = detect_format(folder)
    if format not in FORMATS:
        raise SAEFormatError(f"unknown SAE format {format!r}; known: {sorted(FORMATS)}")
    missing = [f for f in FORMATS[format].files if not (folder / f).is_file()]
    if missing:
        raise SAEFormatError(f"{folder}: format {format!r} needs {list(FORMATS[format].files)}; missing {missing}")
    layout = FORMATS[format].open(folder)
    _check_shapes(layout)
    return SAEHandle(folder, format, layout)


def load_sae(
    folder: str | Path, format: str = "auto", device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> SAE:
    return open_sae(folder, format).load(device=device, dtype=dtype)


# ---------------------------------------------------------------------------------------------------------
# Sources

_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def resolve_sae_folder(source: str, subfolder: str | None = None, revision: str | None = None) -> Path:
    """A local SAE folder for `source`: an existing local folder, or a Hub repo id downloaded (only `subfolder`)."""
    local = Path(source).expanduser()
    if local.is_dir():
        folder = local / subfolder if subfolder else local
        if not folder.is_dir():
            raise SAEFormatError(f"{local}: no subfolder {subfolder!r}")
        return folder
    if not _REPO_ID.match(source):
        raise SAEFormatError(f"SAE source {source!r} is neither a local folder nor a Hub repo id 'owner/name'")
    from huggingface_hub import snapshot_download

    patterns = [f"{subfolder.strip('/')}/*"] if subfolder else None
    try:
        root = Path(snapshot_download(repo_id=source, allow_patterns=patterns, revision=revision))
    except Exception as exc:
        raise SAEFormatError(
            f"could not fetch SAE {source!r} (subfolder={subfolder!r}, revision={revision!r}) from the Hugging Face "
            f"Hub, and there is no local folder of that name: {type(exc).__name__}: {exc} "
            f"If offline, download it beforehand or pass a local folder"
        ) from exc
    folder = root / subfolder if subfolder else root
    if not folder.is_dir():
        raise SAEFormatError(f"Hub repo {source!r} has no subfolder {subfolder!r}")
    return folder
