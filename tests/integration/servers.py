"""Steering server processes (`python -m steering.serve`) on loopback for the integration tests, started with an
API key (from STEERING_API_KEY, as an operator would) and each logging to its own file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.helpers import ROOT, free_port


class ServerPool:
    def __init__(self, n: int, config: Path, key: str, log_dir: Path, max_requests: int | None = None):
        self.config, self.key, self.log_dir, self.max_requests = config, key, log_dir, max_requests
        self.ports = [free_port() for _ in range(n)]
        self.urls = [f"http://127.0.0.1:{p}" for p in self.ports]
        self.procs: list[subprocess.Popen | None] = [None] * n
        self.starts = [0] * n

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def log_path(self, i: int) -> Path:
        return self.log_dir / f"server-{i}.log"

    def start(self, i: int) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), STEERING_API_KEY=self.key, PYTHONUNBUFFERED="1")
        argv = [sys.executable, "-m", "steering.serve", str(self.config), "--port", str(self.ports[i])]
        if self.max_requests is not None:
            argv += ["--max-requests", str(self.max_requests)]
        self.starts[i] += 1
        with open(self.log_path(i), "a") as log:
            self.procs[i] = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait_up(self, i: int, timeout_s: float = 900) -> None:
        deadline = time.time() + timeout_s
        while True:
            proc = self.procs[i]
            assert proc is not None and proc.poll() is None, self.log_path(i).read_text()[-3000:]
            try:
                if httpx.get(self.urls[i] + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, f"server {i} did not start:\n{self.log_path(i).read_text()[-3000:]}"
            time.sleep(0.5)

    def start_all(self) -> None:
        for i in range(len(self.urls)):
            self.start(i)
        for i in range(len(self.urls)):
            self.wait_up(i)

    def kill(self, i: int) -> None:
        """SIGKILL: no goodbye, as a crashed machine."""
        proc = self.procs[i]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    def info(self, i: int) -> dict:
        return httpx.get(self.urls[i] + "/v1/steering/info", headers=self.headers, timeout=10).json()

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            if proc is not None:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def remote_engine(pool: ServerPool, servers: list[str] | None = None, **overrides):
    """An engine with `backend: remote` on the pool's servers (or `servers`), on demo.yaml, holding the pool's key
    as an app does: read from STEERING_API_KEY when it is built (set only meanwhile, so no other test sees it)."""
    from dataclasses import replace

    import pytest

    from steering.config import load_config
    from steering.engine import Engine

    config = replace(load_config(pool.config), backend="remote", servers=tuple(servers or pool.urls), **overrides)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STEERING_API_KEY", pool.key)
        return Engine.from_config(config)
