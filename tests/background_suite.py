"""tests/vllm as a background process of the main run: started when collection ends (under pytest-xdist, when
a worker has collected), read by tests/integration/test_vllm_suite.py at the end of the run.

The suite is a process of its own anyway (it needs .venv-vllm), so it runs beside the other tests, at a lower
priority and on one thread, so the timed tests of the other tiers (Stop within a second) come first. With
STEERING_VLLM_INSTALL=1 (.ci/run sets it) the process first runs tools/install_vllm.sh, so a clean clone's venv
is built beside the unit tier too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("VLLM_VENV", ROOT / ".venv-vllm"))
LOG = ROOT / "test-artifacts" / "vllm-suite.log"
STATE = LOG.with_suffix(".json")  # when it started and its process group, for the process that waits
CODE = LOG.with_suffix(".rc")  # its exit status, written as it ends
NODE = "tests/integration/test_vllm_suite.py::test_the_vllm_backend_suite_passes_in_its_venv"
TIMEOUT_S = 3600  # from the suite's start; it runs alone in about 300 s on two idle cores
SUITE = pytest.StashKey["BackgroundSuite"]()
# vLLM's own limits on a start and on a step (600 s and 300 s) assume a process that is never kept waiting; at nice 5
# beside two busy test workers it may be, for minutes. The suite's answers are checked, not its speed.
STARVED_LIMITS = {"VLLM_ENGINE_READY_TIMEOUT_S": "3600", "VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS": "3600"}
# One OpenMP thread, on core 0: vLLM binds a thread to every core by default, and a bound thread that waits for a
# core another process holds stalls the rest at each barrier.
ONE_CORE = {"VLLM_CPU_OMP_THREADS_BIND": "0"}


class BackgroundSuite:
    """The tests/vllm process, started once by the process that collects (or, under pytest-xdist, schedules)
    the run and killed with its children if the run ends first. It leaves its state in files, so the test
    that reads it may run in another process (an xdist worker)."""

    def __init__(self, python: Path, install: bool):
        LOG.parent.mkdir(exist_ok=True)
        # nice 5, a quarter of a test worker's weight: at nice 19 the suite got almost nothing beside two busy xdist
        # workers and ran for minutes after them; at nice 5 it ends inside their time, and the timed tests (Stop
        # within a second) still come first. The venv's build is mostly one thread of unpacking and runs at the
        # tests' own priority, or it alone would take half the run.
        command = ["nice", "-n", "5", str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/vllm"]
        if install:
            command = ["bash", "-c", 'bash tools/install_vllm.sh && exec "$@"', "install_vllm", *command]
        command = ["bash", "-c", f'"$@"; echo $? > "{CODE}.part" && mv "{CODE}.part" "{CODE}"', "vllm_suite", *command]
        env = dict(os.environ, STEERING_VLLM_SUITE="1", VLLM_CPU_KVCACHE_SPACE="1", PYTHONPATH=str(ROOT),
                   **STARVED_LIMITS, **ONE_CORE)
        with LOG.open("w") as log:
            self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        STATE.write_text(json.dumps({"started": time.time(), "pgid": self.proc.pid}))

    def stop(self) -> None:
        if self.proc.poll() is None:
            _kill(self.proc.pid)
            self.proc.wait()


def _kill(pgid: int) -> None:
    try:
        os.killpg(pgid, 9)
    except ProcessLookupError:
        pass


def forget_last_run() -> None:
    """Before a run: no state of an earlier run may be read as this one's."""
    for path in (STATE, CODE):
        path.unlink(missing_ok=True)


def started() -> bool:
    return STATE.exists()


def result(timeout_s: float) -> tuple[int, str]:
    """The exit status and the whole output, once the suite has ended (at most `timeout_s` after its start)."""
    state = json.loads(STATE.read_text())
    while not CODE.exists():
        if time.time() > state["started"] + timeout_s:
            _kill(state["pgid"])
            pytest.fail(f"tests/vllm ran past {timeout_s:.0f} s (its output so far: {LOG})")
        time.sleep(1.0)
    return int(CODE.read_text()), LOG.read_text()


def start_if_selected(config, nodeids) -> None:
    """Starts the suite in the background when its waiting test is among `nodeids` (once per run)."""
    python, install = VENV / "bin" / "python", os.environ.get("STEERING_VLLM_INSTALL") == "1"
    if config.option.collectonly or config.stash.get(SUITE, None) is not None or not (install or python.exists()):
        return
    if NODE in nodeids:
        config.stash[SUITE] = BackgroundSuite(python, install)


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
