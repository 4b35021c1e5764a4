"""Read SAEs from disk: one small converter per format, detection, lazy feature reads, source resolution.

A converter reads a folder's config and tensor headers (never the big matrices) and returns a `Layout`:
sizes, the encode rule, and where each canonical tensor (`W_enc`, `W_dec`, `b_enc`, `b_dec`, `threshold`)
lives and in which orientation. `SAEHandle` does everything else generically, so a new format is one more
converter plus one entry in `FORMATS`.

Lazy reads use `os.pread` at byte offsets taken from the file headers (safetensors JSON header, torch.save
zip records, or the zip entry + .npy header of an uncompressed .npz member): only the requested rows/columns
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
from fnmatch import fnmatch
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from safetensors import safe_open
from torch import Tensor

from steering.sae import PER_FEATURE_RULES, SAE, TOPK_RULES, FeatureRule

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
    byte_offset: int  # file offset of the storage's first byte; -1 when `zip_member` must be loaded whole
    zip_member: str | None = None  # .npz member that cannot be read lazily (compressed): loaded whole on read

    def read_elements(self, offsets: np.ndarray) -> Tensor:
        """Elements at storage `offsets` (any shape), read with as few preads as nearby offsets allow."""
        esize = torch.empty((), dtype=self.dtype).element_size()
        if offsets.size == 0:
            return torch.empty(offsets.shape, dtype=self.dtype)
        if self.zip_member is not None:
            flat = _npz_member_full(self).reshape(-1)  # C-contiguous: strides are contiguous ones
            return flat[torch.from_numpy(np.asarray(offsets, dtype=np.int64))].clone()
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
    """Tensor records of a .safetensors file from its JSON header (8-byte length, then JSON).

    Every record is checked against the file's size, so a truncated or corrupt download fails
    here, naming the file, rather than later with an error that does not.
    """
    size = path.stat().st_size
    fix = "the file is damaged or incomplete: download it again (delete it from the Hugging Face cache first)"
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise SAEFormatError(f"{path}: {size} bytes is too short for a safetensors file; {fix}")
        (length,) = struct.unpack("<Q", head)
        if length > size - 8:
            raise SAEFormatError(f"{path}: its header claims {length} bytes but the file has {size}; {fix}")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SAEFormatError(f"{path}: unreadable safetensors header ({exc}); {fix}") from exc
    if not isinstance(header, dict):
        raise SAEFormatError(f"{path}: the safetensors header is not a table of tensors; {fix}")
    data_size = size - 8 - length
    records = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _SAFETENSORS_DTYPES[info["dtype"]]
            shape = tuple(int(n) for n in info["shape"])
            start, end = (int(n) for n in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SAEFormatError(f"{path}: tensor {name!r} has a malformed header entry ({exc!r}); {fix}") from exc
        expected = int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=dtype).element_size()
        if not 0 <= start <= end <= data_size or end - start != expected:
            raise SAEFormatError(f"{path}: tensor {name!r} lies outside the file or has the wrong size; {fix}")
        records[name] = StoredTensor(
            path=path,
            name=name,
            dtype=dtype,
            shape=shape,
            strides=_contiguous_strides(shape),
            storage_offset=0,
            byte_offset=8 + length + start,
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
    try:
        state = _torch_load(path, map_location="meta")
    except SAEFormatError:
        raise
    except Exception as exc:  # a damaged zip or pickle
        raise SAEFormatError(f"{path}: cannot be read ({type(exc).__name__}: {exc}); the file is damaged or incomplete: download it again") from exc
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


def npz_header(path: Path) -> dict[str, StoredTensor]:
    """Tensor records of a numpy .npz archive, from its zip directory and each member's .npy header.

    `np.savez` stores members uncompressed, so a member's data is a plain byte range of the file: its offset is
    the zip local header's offset + that header's length + the .npy header's length, and rows are read lazily
    like any other format. A compressed archive (`np.savez_compressed`) has no such byte range: its members are
    recorded with `zip_member` set and each read decompresses and loads the whole member (memory and time of a
    full load; re-save with `np.savez` to read features lazily). Members in a non-native byte order take
    the same full-load path.
    """
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise SAEFormatError(f"{path}: not a numpy .npz archive (zip): {exc}") from exc
    records = {}
    with archive, open(path, "rb") as raw:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[: -len(".npy")]
            lazy = info.compress_type == zipfile.ZIP_STORED
            if lazy:
                raw.seek(info.header_offset)
                fields = struct.unpack("<IHHHHHIIIHH", raw.read(30))
                if fields[0] != 0x04034B50:
                    raise SAEFormatError(f"{path}: member {info.filename!r} has a corrupt zip local header")
                raw.seek(info.header_offset + 30 + fields[9] + fields[10])
                stream = raw
            else:
                stream = archive.open(info)
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise SAEFormatError(
                    f"{path}: member {info.filename!r} has .npy format version {version}; expected 1.0 or 2.0"
                )
            if dtype.hasobject:
                raise SAEFormatError(f"{path}: member {info.filename!r} holds Python objects, not numbers; refused")
            if dtype.byteorder not in ("=", "|", _NATIVE_ORDER):
                lazy = False
            try:
                torch_dtype = torch.from_numpy(np.empty(0, dtype=dtype.newbyteorder("="))).dtype
            except TypeError as exc:
                message = f"{path}: member {info.filename!r} has dtype {dtype}; torch cannot hold it"
                raise SAEFormatError(message) from exc
            shape = tuple(int(n) for n in shape)
            strides = _contiguous_strides(shape)
            if fortran and lazy:
                strides = tuple(reversed(_contiguous_strides(shape[::-1])))
            records[name] = StoredTensor(
                path=path,
                name=name,
                dtype=torch_dtype,
                shape=shape,
                strides=strides,
                storage_offset=0,
                byte_offset=stream.tell() if lazy else -1,
                zip_member=None if lazy else info.filename,
            )
    return records


_NATIVE_ORDER = "<" if sys.byteorder == "little" else ">"


def _npz_member_full(stored: StoredTensor) -> Tensor:
    """A .npz member loaded whole (compressed archives), C-contiguous in native byte order."""
    with np.load(stored.path, allow_pickle=False) as archive:
        array = archive[stored.name]
    return torch.from_numpy(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("=")))


def read_full(stored: StoredTensor) -> Tensor:
    """The whole tensor; for torch and .npz files a memory-mapped view, so the caller's one copy is the only one."""
    if stored.path.suffix == ".safetensors":
        with safe_open(str(stored.path), framework="pt") as f:
            return f.get_tensor(stored.name)
    if stored.path.suffix == ".npz":
        if stored.zip_member is not None:
            return _npz_member_full(stored)
        count = int(np.prod(stored.shape, dtype=np.int64))
        np_dtype = torch.empty(0, dtype=stored.dtype).numpy().dtype
        if count == 0:
            return torch.empty(stored.shape, dtype=stored.dtype)
        flat = np.memmap(stored.path, dtype=np_dtype, mode="c", offset=stored.byte_offset, shape=(count,))
        return torch.from_numpy(flat).as_strided(stored.shape, stored.strides)
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


_SAELENS_ACTIVATION = {
    "standard": "relu", "relu": "relu", "topk": "topk", "jumprelu": "jumprelu", "topk_raw": "topk_raw",
}  # fmt: skip


def _open_saelens(weights: Path) -> Layout:
    """SAELens native: cfg.json + sae_weights.safetensors, already in canonical names and orientation.

    Rules: standard -> relu, jumprelu -> jumprelu, topk -> topk (relu on the kept values); pre subtracts b_dec
    first when cfg `apply_b_dec_to_input` (default true). `topk_raw` is this library's own (see `SAE.save`).
    """
    cfg_path = weights.parent / "cfg.json"
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
    if activation in TOPK_RULES and k is None:
        raise SAEFormatError(
            f"{cfg_path}: architecture {architecture!r} needs 'k' or 'activation_fn_kwargs': {{'k': ...}}"
        )
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


def _open_dictionary_learning(weights: Path) -> Layout:
    """dictionary_learning BatchTopK (ae.pt + config.json); at inference a global-threshold rule -> jumprelu.

    `f = relu((x - b_dec) @ encoder.weight.T + encoder.bias)`, kept where `f > threshold` (one global scalar).
    """
    cfg_path = weights.parent / "config.json"
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


def _first_int(pattern: str, parts: Sequence[str]) -> int | None:
    """The first capture of `pattern` in the nearest of `parts` that matches (parts run innermost first)."""
    for part in parts:
        match = re.search(pattern, part)
        if match:
            return int(match.group(1))
    return None


def _shape_2d(stored: StoredTensor, what: str) -> tuple[int, int]:
    if len(stored.shape) != 2:
        raise SAEFormatError(f"{stored.path}: tensor {stored.name!r} has shape {stored.shape}; expected a 2-D {what}")
    return stored.shape


_CANONICAL_NAMES = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")


def _open_gemma_scope(weights: Path) -> Layout:
    """Gemma Scope JumpReLU: params.npz (or params.safetensors) with canonical names and orientation, no config.

    `pre = x @ W_enc + b_enc; f = relu(pre) * (pre > threshold)`, threshold per feature, NO b_dec subtraction
    (apply_b_dec_to_input False). Sizes come from W_enc (d, F); layer and L0 from the release's folder names
    (`layer_{L}/width_{W}/average_l0_{N}`), the site (res/mlp/att) from a `gemma-scope-...-res` repo or folder
    name; hook_name is set only for residual-stream (res) SAEs. An uncompressed .npz is read lazily; a
    compressed one loads a whole member for each read (see `npz_header`).
    """
    records = npz_header(weights) if weights.suffix == ".npz" else safetensors_header(weights)
    tensors = {n: _pick(records, n, n, weights) for n in _CANONICAL_NAMES}
    d_in, d_sae = _shape_2d(tensors["W_enc"], "W_enc (d_in, d_sae)")
    parts = [p.name for p in (weights.parent, *weights.parent.parents)]
    layer = _first_int(r"^layer_(\d+)$", parts)
    site = next((m.group(1) for p in parts if (m := re.search(r"gemma-scope-.*-(res|mlp|att)(?:$|[-_])", p))), None)
    meta = {
        "layer": layer,
        "site": site,  # from the release name: res (residual stream), mlp or att outputs; None when unknown
        "hook_name": f"blocks.{layer}.hook_resid_post" if layer is not None and site == "res" else None,
        "average_l0": _first_int(r"^average_l0_(\d+)$", parts),
    }
    return Layout(d_in=d_in, d_sae=d_sae, activation="jumprelu", tensors=tensors, apply_b_dec_to_input=False,
                  layer=layer, meta=meta)  # fmt: skip


_QWEN_SCOPE_K = r"(?:^|[^A-Za-z0-9])L0_(\d+)(?![0-9])"  # `..._L0_50` in the repo / folder name


def _open_qwen_scope(weights: Path, k: int | None = None) -> Layout:
    """Qwen-Scope TopK: `layer{n}.sae.pt`, a plain dict W_enc (F, d), W_dec (d, F), b_enc (F), b_dec (d).

    `pre = x @ W_enc.T + b_enc`; keep the k largest values of pre AS THEY ARE (no relu), zero elsewhere; no b_dec
    subtraction: rule "topk_raw". The files carry no config, so k is the explicit `k`, else the `L0_{k}` in the
    nearest folder name (a Hub cache folder `models--Qwen--SAE-Res-...-L0_50` counts), else refused.
    """
    records = torch_header(weights)
    names = {"W_enc": "W_enc", "W_dec": "W_dec", "b_enc": "b_enc", "b_dec": "b_dec"}
    tensors = {c: _pick(records, n, c, weights) for c, n in names.items()}
    d_sae, d_in = _shape_2d(tensors["W_enc"], "W_enc (d_sae, d_in)")
    parts = [p.name for p in weights.parents]
    origin = "the k= argument"
    if k is None:
        k = _first_int(_QWEN_SCOPE_K, parts)
        origin = "the folder name"
    if k is None:
        raise SAEFormatError(
            f"{weights}: Qwen-Scope files carry no config, so the TopK k is unknown: none of the folder names "
            f"{parts[:3]} has 'L0_<k>' (as the release names do, e.g. SAE-Res-Qwen3-8B-Base-W64K-L0_50). "
            f"Pass it explicitly: open_sae(path, 'qwen_scope', k=50)"
        )
    if not 0 < int(k) <= d_sae:
        raise SAEFormatError(f"{weights}: k={k} from {origin} is outside [1, {d_sae}] (d_sae={d_sae})")
    layer = _first_int(r"^layer(\d+)\.sae\.pt$", [weights.name])
    meta = {"layer": layer, "k": int(k), "k_from": origin}
    return Layout(d_in=d_in, d_sae=d_sae, activation="topk_raw", tensors=tensors,
                  transposed=frozenset({"W_enc", "W_dec"}), k=int(k), apply_b_dec_to_input=False, layer=layer,
                  meta=meta)  # fmt: skip


def _open_sparsify(weights: Path) -> Layout:
    """EleutherAI sparsify TopK: one folder per hookpoint (`layers.N`) with cfg.json + sae.safetensors.

    `encoder.weight` (F, d), `encoder.bias` (F), `W_dec` (F, d), `b_dec` (d);
    `f = relu((x - b_dec) @ encoder.weight.T + encoder.bias)`, keep the top k: rule "topk", apply_b_dec_to_input.
    F is cfg `num_latents`, or `expansion_factor * d_in` when that is 0 or absent.
    """
    cfg_path = weights.parent / "cfg.json"
    cfg = _read_json(cfg_path)
    _require(cfg, ["d_in", "k"], str(cfg_path))
    if cfg.get("skip_connection") or cfg.get("transcode"):
        raise SAEFormatError(f"{cfg_path}: skip_connection/transcode SAEs (transcoders) are not supported")
    if cfg.get("multi_topk"):
        raise SAEFormatError(f"{cfg_path}: multi_topk is not supported (its encode differs from plain TopK)")
    d_in = int(cfg["d_in"])
    d_sae = int(cfg.get("num_latents") or 0) or int(cfg.get("expansion_factor") or 0) * d_in
    if d_sae <= 0:
        raise SAEFormatError(
            f"{cfg_path}: needs 'num_latents' or 'expansion_factor' to size the SAE; found {sorted(cfg)}"
        )
    records = safetensors_header(weights)
    names = {"W_enc": "encoder.weight", "b_enc": "encoder.bias", "W_dec": "W_dec", "b_dec": "b_dec"}
    tensors = {c: _pick(records, n, c, weights) for c, n in names.items()}
    hookpoint = weights.parent.name
    match = re.fullmatch(r"layers\.(\d+)", hookpoint)
    layer = int(match.group(1)) if match else None
    meta = {"layer": layer, "hookpoint": hookpoint, "normalize_decoder": bool(cfg.get("normalize_decoder", True)),
            "hook_name": None if layer is None else f"blocks.{layer}.hook_resid_post"}  # fmt: skip
    return Layout(d_in=d_in, d_sae=d_sae, activation="topk", tensors=tensors, transposed=frozenset({"W_enc"}),
                  k=int(cfg["k"]), apply_b_dec_to_input=True, layer=layer, cfg=cfg, meta=meta)  # fmt: skip


def _open_goodfire(weights: Path) -> Layout:
    """Goodfire: a `.pth`/`.pt` state dict, ReLU encoder, no b_dec on the input, no config.

    `encoder_linear.weight` (F, d), `encoder_linear.bias` (F), `decoder_linear.weight` (d, F),
    `decoder_linear.bias` (d): `f = relu(x @ encoder_linear.weight.T + encoder_linear.bias)`,
    `decode = f @ decoder_linear.weight.T + decoder_linear.bias`. Canonical b_dec is the decoder bias, with
    apply_b_dec_to_input False. The layer is taken from a `-l{N}` / `layer{N}` in the file or folder name.
    """
    records = torch_header(weights)
    names = {"W_enc": "encoder_linear.weight", "b_enc": "encoder_linear.bias",
             "W_dec": "decoder_linear.weight", "b_dec": "decoder_linear.bias"}  # fmt: skip
    tensors = {c: _pick(records, n, c, weights) for c, n in names.items()}
    d_sae, d_in = _shape_2d(tensors["W_enc"], "encoder weight (d_sae, d_in)")
    layer = _first_int(r"(?:^|[-_.])(?:l|layer)_?(\d+)(?=$|[-_.])", [weights.stem, weights.parent.name])
    return Layout(d_in=d_in, d_sae=d_sae, activation="relu", tensors=tensors,
                  transposed=frozenset({"W_enc", "W_dec"}), apply_b_dec_to_input=False, layer=layer,
                  meta={"layer": layer})  # fmt: skip


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


FORMATS: dict[str, SAEFormat] = {
    "saelens": SAEFormat(weights=("sae_weights.safetensors",), config="cfg.json", open=_open_saelens),
    "dictionary_learning": SAEFormat(weights=("ae.pt",), config="config.json", open=_open_dictionary_learning),
    "gemma_scope": SAEFormat(weights=("params.safetensors", "params.npz"), open=_open_gemma_scope),
    "qwen_scope": SAEFormat(weights=("layer*.sae.pt",), open=_open_qwen_scope, options=("k",)),
    "sparsify": SAEFormat(weights=("sae.safetensors",), config="cfg.json", open=_open_sparsify),
    "goodfire": SAEFormat(weights=("*.pth", "*.pt"), exclude=("ae.pt", "*.sae.pt"), open=_open_goodfire, fallback=True),
}


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


# ---------------------------------------------------------------------------------------------------------
# Handle


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
        """(n, d_in) float32 raw decoder directions, reading only those features' bytes."""
        return self._features("W_dec", self._indices(indices))

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
    _check_shapes(layout)
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
    return open_sae(path, format, k=k, d_model=d_model).load(device=device, dtype=dtype)


# ---------------------------------------------------------------------------------------------------------
# Sources

_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_TOKEN_HELP = (
    "Provide a Hugging Face token: set the HF_TOKEN environment variable, or run `hf auth login` "
    "(older huggingface_hub: `huggingface-cli login`)"
)


def hub_error_message(exc: BaseException, source: str, subfolder: str | None, revision: str | None) -> str:
    """What went wrong fetching `source` from the Hub, and how to fix it, for a huggingface_hub exception."""
    from huggingface_hub import get_token
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    head = f"could not fetch SAE {source!r} (subfolder={subfolder!r}, revision={revision!r}) from the Hugging Face Hub"
    try:
        has_token = bool(get_token())
    except Exception:  # a failing token source (e.g. OIDC exchange) must not hide the original error
        has_token = False
    token = "a token is set but" if has_token else "no token is set, and"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, GatedRepoError):
        return (f"{head}: the repo is gated; {token} access was refused. Accept its conditions at "
                f"https://huggingface.co/{source}, then use a token of that account. {_TOKEN_HELP}")  # fmt: skip
    if isinstance(exc, RevisionNotFoundError):
        return f"{head}: revision {revision!r} does not exist in that repo. Fix sae.revision (a branch, tag or commit)"
    if isinstance(exc, RepositoryNotFoundError) or status in (401, 403):
        return (f"{head}: the repo does not exist or is private ({token} the Hub refused or hid it). Check the "
                f"repo id; if it is private or gated, use a token with access. {_TOKEN_HELP}")  # fmt: skip
    not_cached = (LocalEntryNotFoundError, OfflineModeIsEnabled)
    if isinstance(exc, not_cached) or type(exc).__name__ == "IncompleteSnapshotError":
        import huggingface_hub.constants as constants

        return (f"{head}: it is not (completely) in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and "
                f"the Hub cannot be reached (offline, HF_HUB_OFFLINE=1, or a connection error). Download it once "
                f"with network access (it is then used offline), or pass a local folder. Details: {exc}")  # fmt: skip
    if isinstance(exc, HfHubHTTPError):
        return f"{head}: the Hub answered HTTP {status}: {exc}"
    return f"{head}, and there is no local folder of that name: {type(exc).__name__}: {exc}"


def _is_connection_error(exc: BaseException) -> bool:
    from huggingface_hub.errors import OfflineModeIsEnabled

    names = {t.__name__ for t in type(exc).__mro__}
    return isinstance(exc, (OfflineModeIsEnabled, ConnectionError, TimeoutError)) or bool(
        names & {"ConnectError", "TimeoutException", "NetworkError", "ConnectionError", "Timeout"}
    )


def resolve_sae_folder(source: str, subfolder: str | None = None, revision: str | None = None) -> Path:
    """A local path for `source` + `subfolder`: a folder, or a weights file where `subfolder` names one.

    `source` is an existing local folder, else a Hub repo id 'owner/name'. From the Hub only `subfolder` is
    downloaded (`subfolder` and `subfolder/*`), into the Hugging Face cache (HF_HUB_CACHE), with
    huggingface_hub's own progress bars. Once cached it works offline: huggingface_hub falls back to the
    cached snapshot when the Hub cannot be reached (or HF_HUB_OFFLINE=1), and a connection error during the
    download itself is retried with `local_files_only=True`. Errors (gated or private repo without a token,
    missing revision, offline and not cached) are `SAEFormatError`s saying how to fix them.
    """
    local = Path(source).expanduser()
    if local.is_dir():
        folder = local / subfolder if subfolder else local
        if not folder.exists():
            raise SAEFormatError(f"{local}: no subfolder {subfolder!r}")
        return folder
    if not _REPO_ID.match(source):
        raise SAEFormatError(f"SAE source {source!r} is neither a local folder nor a Hub repo id 'owner/name'")
    from huggingface_hub import snapshot_download

    sub = subfolder.strip("/") if subfolder else None
    patterns = [sub, f"{sub}/*"] if sub else None
    kwargs = dict(repo_id=source, allow_patterns=patterns, revision=revision)
    try:
        try:
            root = Path(snapshot_download(**kwargs))
        except Exception as exc:
            if not _is_connection_error(exc):
                raise
            root = Path(snapshot_download(**kwargs, local_files_only=True))
    except Exception as exc:
        raise SAEFormatError(hub_error_message(exc, source, subfolder, revision)) from exc
    folder = root / sub if sub else root
    if not folder.exists():
        raise SAEFormatError(f"Hub repo {source!r} (revision={revision!r}) has no file or folder {subfolder!r}")
    return folder
