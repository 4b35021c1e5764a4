"""Stored tensors: lazy reads touch only the requested rows, .npz members, and refused pickled code."""

from pathlib import Path

import numpy as np
import pytest
import torch

from steering.sae.names import SAEFormatError
from steering.sae.registry import open_sae
from steering.sae.storage import npz_header
from tests.unit.sae.writers import (
    D,
    F,
    dl_state,
    gemma_state,
    goodfire_state,
    qwen_state,
    saelens_state,
    write_dl,
    write_gemma,
    write_goodfire,
    write_qwen,
    write_saelens,
)


def bytes_read() -> int:
    """Bytes this process has passed through read()/pread() (`rchar`): exact, unlike RSS, which
    the allocator's reuse of freed memory and the page cache make unreliable."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise RuntimeError("no rchar in /proc/self/io")


BIG_D, BIG_F = 512, 131072  # 256 MiB per fp32 matrix
PICKS = [3, 777, 65536, 100003, BIG_F - 1]


def marked(*shape) -> torch.Tensor:
    """Zeros except a recognisable value at each picked feature along the last axis of length BIG_F."""
    t = torch.zeros(*shape)
    for i in PICKS:
        if shape[-1] == BIG_F:
            t[..., i] = torch.arange(BIG_D) + i
        else:
            t[i] = torch.arange(BIG_D) + i
    return t


def assert_reads_rows_only(folder: Path, matrix_bytes: int) -> None:
    before = bytes_read()
    handle = open_sae(folder)
    rows = handle.decoder_rows(PICKS)
    rules = handle.feature_rules(PICKS)
    read = bytes_read() - before
    expected = torch.stack([torch.arange(BIG_D) + i for i in PICKS]).float()
    assert torch.equal(rows, expected)
    assert all(torch.equal(r.w_enc, e) for r, e in zip(rules, expected))
    assert read < 0.01 * matrix_bytes, f"read {read / 2**20:.1f} MiB to get 5 features"


def test_extraction_reads_rows_not_the_matrix(tmp_path):
    matrix_bytes = BIG_D * BIG_F * 4
    big = {"encoder.weight": marked(BIG_F, BIG_D), "decoder.weight": marked(BIG_D, BIG_F)}
    state = dl_state(d=BIG_D, f=BIG_F) | big
    dl = write_dl(tmp_path / "dl", state, d=BIG_D, f=BIG_F)
    del state, big
    assert_reads_rows_only(dl, matrix_bytes)

    before = bytes_read()
    full = torch.load(dl / "ae.pt", weights_only=True)["decoder.weight"]
    assert bytes_read() - before > matrix_bytes, "a full load must show up in the measure, else the check above proves nothing"
    del full
    (dl / "ae.pt").unlink()

    state = saelens_state("standard", d=BIG_D, f=BIG_F) | {"W_enc": marked(BIG_D, BIG_F), "W_dec": marked(BIG_F, BIG_D)}
    st = write_saelens(tmp_path / "st", state, "standard", d=BIG_D, f=BIG_F)
    del state
    assert_reads_rows_only(st, matrix_bytes)
    (st / "sae_weights.safetensors").unlink()


_MARKER_WRITES = []


def write_marker(path: str) -> None:
    _MARKER_WRITES.append(path)
    Path(path).write_text("pwned")


class RunsCode:
    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return write_marker, (self.path,)


def test_pickled_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "marker"
    folder = write_dl(tmp_path / "dl", dl_state() | {"extra": RunsCode(marker)})
    assert not marker.exists()
    with pytest.raises(SAEFormatError, match="refused to load.*weights_only=True"):
        open_sae(folder)
    assert not marker.exists() and not _MARKER_WRITES


def test_npz_member_offsets_are_lazy_only_when_stored(tmp_path):
    state = gemma_state()
    stored = npz_header(write_gemma(tmp_path / "a", state, "npz") / "params.npz")
    assert all(r.zip_member is None and r.byte_offset > 0 for r in stored.values())
    compressed = npz_header(write_gemma(tmp_path / "b", state, "npz_compressed") / "params.npz")
    assert all(r.zip_member == f"{n}.npy" and r.byte_offset == -1 for n, r in compressed.items())
    assert stored["W_enc"].shape == compressed["W_enc"].shape == (D, F) and stored["W_enc"].dtype == torch.float32


def test_npz_fortran_order_and_other_dtypes_read_correctly(tmp_path, x):
    state = gemma_state()
    swapped = state["threshold"].astype(">f4" if np.little_endian else "<f4")  # foreign byte order: full-load path
    state = state | {"W_dec": np.asfortranarray(state["W_dec"]), "W_enc": state["W_enc"].astype(np.float16),
                     "threshold": swapped}  # fmt: skip
    folder = write_gemma(tmp_path, state, "npz")
    handle = open_sae(folder)
    assert handle.layout.tensors["threshold"].zip_member == "threshold.npy"
    np.testing.assert_array_equal(handle.decoder_rows([1, 50]).numpy(), state["W_dec"][[1, 50]])
    sae = handle.load()
    np.testing.assert_array_equal(sae.W_enc.numpy(), state["W_enc"].astype(np.float32))
    np.testing.assert_array_equal(sae.threshold.numpy(), state["threshold"].astype(np.float32))
    rules = handle.feature_rules([2, 9])
    assert [float(r.threshold) for r in rules] == [float(state["threshold"][2]), float(state["threshold"][9])]
    for rule in rules:
        torch.testing.assert_close(rule.activation(x), sae.encode(x)[..., rule.index])


BIG_D2, BIG_F2 = 256, 16384  # 16 MiB per fp32 matrix
PICKS2 = [3, 4100, 9000, 12000, BIG_F2 - 1]  # more than _MERGE_GAP apart


def test_new_formats_read_rows_not_the_matrix(tmp_path):
    """Lazy reads of a canonical (npz), a transposed (.sae.pt) and a .pth file: bytes read << the matrix."""
    marks = torch.zeros(BIG_F2, BIG_D2)  # (F, d)
    for i in PICKS2:
        marks[i] = torch.arange(BIG_D2) + i
    expected = marks[PICKS2]
    gemma = gemma_state(d=BIG_D2, f=BIG_F2) | {"W_dec": marks.numpy(), "W_enc": marks.T.contiguous().numpy()}
    qwen = qwen_state(d=BIG_D2, f=BIG_F2) | {"W_dec": marks.T.contiguous(), "W_enc": marks}
    goodfire = goodfire_state(d=BIG_D2, f=BIG_F2) | {"decoder_linear.weight": marks.T.contiguous(),
                                                     "encoder_linear.weight": marks}  # fmt: skip
    paths = [write_gemma(tmp_path / "g", gemma), write_qwen(tmp_path, qwen, repo="q-L0_64"),
             write_goodfire(tmp_path / "gf", goodfire)]  # fmt: skip
    del gemma, qwen, goodfire
    for path in paths:
        before = bytes_read()
        handle = open_sae(path)
        rows = handle.decoder_rows(PICKS2)
        rules = handle.feature_rules(PICKS2) if handle.activation != "topk_raw" else []
        read = bytes_read() - before
        assert torch.equal(rows, expected), path
        assert all(torch.equal(r.w_enc, e) for r, e in zip(rules, expected))
        assert read < 0.01 * BIG_D2 * BIG_F2 * 4, f"{handle.format}: read {read / 2**20:.1f} MiB to get 5 features"
