"""Three steering servers shared by the integration tests of `backend: remote`, keys and routers (one start for
all of them: each loads the model). A test that kills one starts it again before it ends."""

from __future__ import annotations

import secrets

import pytest

from tests.helpers import ROOT
from tests.integration.servers import ServerPool


@pytest.fixture(scope="session")
def server_pool(tmp_path_factory):
    pool = ServerPool(3, ROOT / "demo.yaml", key="sk-test-" + secrets.token_hex(12), log_dir=tmp_path_factory.mktemp("servers"))
    try:
        pool.start_all()
        yield pool
    finally:
        pool.stop_all()
