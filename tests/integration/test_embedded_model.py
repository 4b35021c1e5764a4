"""The embedded default model on the real converted cache (the fake-builder checks: tests/unit/model/test_embedded.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from steering.model.embedded import (
    GGUF_SHA256,
    MARKER_NAME,
    WHEEL_SHA256,
    ensure_default_model,
    is_complete,
)
from tests.helpers import ROOT as REPO


def _no_build(out_dir: Path, work_dir: Path, progress: bool) -> None:
    raise AssertionError("the fast path must not build")


@pytest.fixture(scope="module")
def real_model_dir() -> Path:
    return ensure_default_model()


def test_real_conversion_loads(real_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert is_complete(real_model_dir)
    marker = json.loads((real_model_dir / MARKER_NAME).read_text())
    assert marker["gguf_sha256"] == GGUF_SHA256 and marker["wheel_sha256"] == WHEEL_SHA256
    assert "Apache License" in (real_model_dir / "LICENSE").read_text()
    assert "HuggingFaceTB" in (real_model_dir / "NOTICE").read_text()
    assert not list(real_model_dir.glob("*.gguf")) and not list(real_model_dir.glob("*.whl"))
    model = AutoModelForCausalLM.from_pretrained(real_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(real_model_dir)
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    assert model.dtype == torch.float32
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"


def test_real_marker_written_last(real_model_dir: Path) -> None:
    marker_time = (real_model_dir / MARKER_NAME).stat().st_mtime_ns
    assert all(p.stat().st_mtime_ns <= marker_time for p in real_model_dir.iterdir())


def test_second_call_reads_only_the_marker_and_skips_gguf(real_model_dir: Path, monkeypatch) -> None:
    """The cached fast path: no lock, no clean-up, no build, only the marker file read, gguf never imported.
    How long it takes is measured by benchmarks/default_model_cache.py."""
    import filelock

    from steering.model import embedded as dm

    def refuse(*args, **kwargs):
        raise AssertionError("the fast path must not lock, clean up or build")

    for name in ("_remove_leftovers", "_build_atomically"):
        monkeypatch.setattr(dm, name, refuse)
    monkeypatch.setattr(filelock, "FileLock", refuse)
    assert ensure_default_model(build=_no_build) == real_model_dir
    code = (
        "import json, os, sys; from steering.model.embedded import ensure_default_model as e, default_model_dir; "
        "cache = str(default_model_dir().parent); opened = []; "
        "sys.addaudithook(lambda event, args: opened.append(os.fsdecode(args[0])) "
        "if event == 'open' and isinstance(args[0], (str, bytes, os.PathLike)) else None); "
        "e(); print(json.dumps({'opened': [p for p in opened if p.startswith(cache)], 'gguf': 'gguf' in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"opened": [str(real_model_dir / MARKER_NAME)], "gguf": False}
