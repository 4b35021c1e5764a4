"""Tensors in SAE weight files, located from the file headers and read lazily, a few rows at a time.

Readers for .safetensors, torch.save zips (.pt/.pth) and numpy .npz return `StoredTensor`s: where each
tensor's bytes lie, read from the header only. Lazy reads use `os.pread` at those byte offsets (safetensors
JSON header, torch.save zip records, or the zip entry + .npy header of an uncompressed .npz member): only the
requested rows/columns are read, through the page cache, and nothing is mapped into the process. (A
memory-mapped `torch.load(mmap=True)` followed by column indexing maps whole pages and folios around every
element, which for a (d, F) decoder read by columns is the whole matrix.)

Longer than 300 lines: the three containers' header readers and the one pread path they share belong
together; each reader alone is short.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors import safe_open
from torch import Tensor

from steering.sae.names import SAEFormatError

_MERGE_GAP = 1024  # elements; nearby reads are merged into one pread

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
        flat = np.sort(offsets, axis=None)
        flat = flat[np.r_[True, flat[1:] != flat[:-1]]]  # unique; np.unique's first call imports numpy.ma (10 ms)
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

