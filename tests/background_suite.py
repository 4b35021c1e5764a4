"""tests/vllm as a background process of the main run: started when collection ends, read by
tests/integration/test_vllm_suite.py at the end of the run.

The suite is a process of its own anyway (it needs .venv-vllm), so it runs beside the other tiers at idle
priority: it takes only the cores they leave free (the app tier uses under one of two on average), and the
timed tests of the other tiers (Stop within a second) keep theirs. With STEERING_VLLM_INSTALL=1 (.ci/run sets
it) the process first runs tools/install_vllm.sh, so a clean clone's venv is built in that spare time too.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("VLLM_VENV", ROOT / ".venv-vllm"))
LOG = ROOT / "test-artifacts" / "vllm-suite.log"
NODE = "tests/integration/test_vllm_suite.py::test_the_vllm_backend_suite_passes_in_its_venv"
TIMEOUT_S = 3600  # from the suite's start; it runs alone in about 300 s on two idle cores
SUITE = pytest.StashKey["BackgroundSuite"]()
# vLLM's own limits on a start and on a step (600 s and 300 s) assume a process that is never kept waiting; at idle
# priority beside a busy tier it may be, for minutes. The suite's answers are checked, not its speed.
STARVED_LIMITS = {"VLLM_ENGINE_READY_TIMEOUT_S": "3600", "VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS": "3600"}


def _idle_priority() -> None:
    """Runs in the child before exec: the lowest priority (nice 19), which still gets a small share of a busy
    machine, where the scheduler's idle class may get none for minutes."""
    os.nice(19)


class BackgroundSuite:
    """The tests/vllm process: started once, read once, killed with its children if the run ends first."""

    def __init__(self, python: Path, install: bool):
        LOG.parent.mkdir(exist_ok=True)
        command = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/vllm"]
        if install:
            command = ["bash", "-c", 'bash tools/install_vllm.sh && exec "$@"', "install_vllm", *command]
        self.started = time.monotonic()
        env = dict(os.environ, STEERING_VLLM_SUITE="1", VLLM_CPU_KVCACHE_SPACE="1", PYTHONPATH=str(ROOT),
                   **STARVED_LIMITS)
        with LOG.open("w") as log:
            self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=_idle_priority, start_new_session=True)

    def result(self, timeout_s: float) -> tuple[int, str]:
        """The exit status and the whole output, once the suite has ended (at most `timeout_s` after its start)."""
        try:
            code = self.proc.wait(timeout=max(1.0, self.started + timeout_s - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"tests/vllm ran past {timeout_s:.0f} s (its output so far: {LOG})")
        return code, LOG.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()


def start_if_selected(session) -> None:
    """Called when collection ends: starts the suite in the background when this test is selected."""
    python, install = VENV / "bin" / "python", os.environ.get("STEERING_VLLM_INSTALL") == "1"
    if session.config.option.collectonly or not (install or python.exists()):
        return
    if any(item.nodeid == NODE for item in session.items):
        session.config.stash[SUITE] = BackgroundSuite(python, install)


def stop_if_started(config) -> None:
    suite = config.stash.get(SUITE, None)
    if suite is not None:
        suite.stop()


def summary(out: str) -> str:
    """pytest's closing line ("42 passed, 24 warnings in 693.35s"); vLLM may log after it while shutting down."""
    lines = [line for line in out.splitlines() if re.search(r"\d+ (passed|failed|errors?)\b.* in [\d.]+s", line)]
    return lines[-1] if lines else (out.strip().splitlines() or [""])[-1]


def failures(out: str, most: int = 80) -> str:
    """pytest's own failure lines (test headers, `E` lines, the summary), without vLLM's log lines, which
    otherwise fill the whole message and push the assertion out of it."""
    keep = [line for line in out.splitlines()
            if (line.startswith(("E ", "FAILED", "ERROR")) or line.startswith("____") or " Error" in line[:80])
            and " WARNING " not in line and " INFO " not in line and "(EngineCore" not in line
            and "(Worker" not in line and "(MainProcess" not in line]
    return "\n".join(keep[:most]) + "\n" + summary(out)
